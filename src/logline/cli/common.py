"""What the commands share: the data directory, the keystore, signing keys, files and times."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import IO, Annotated, Any

import typer

from logline.canonical import loads
from logline.config import default_home
from logline.errors import (
    Conflict,
    InvalidInput,
    KeystoreError,
    ParseError,
    UnknownAuthor,
)
from logline.identity.ids import LogLineId, check_tenant
from logline.identity.keys import PrivateKey
from logline.identity.keystore import Keystore, passphrase_from_env_or_prompt
from logline.instance import Instance
from logline.ledger.log import Wait
from logline.ledger.receipt import Receipt
from logline.ledger.span import Span
from logline.ledger.timefmt import format_ts, parse_duration, parse_ts
from logline.store.interface import IdentityRecord


class WaitFor(StrEnum):
    sequenced = "sequenced"
    checkpointed = "checkpointed"


TenantOption = Annotated[
    str | None, typer.Option("--tenant", help="Tenant whose log to use (default: from config).")
]
AsOption = Annotated[
    str, typer.Option("--as", help="Identity that signs, e.g. logline-id://person/alice.")
]
WaitOption = Annotated[
    WaitFor, typer.Option("--wait", help="Return once sequenced, or once a checkpoint covers it.")
]


@dataclass(frozen=True, slots=True)
class Settings:
    """The global options, resolved lazily: commands that need no data directory never touch one."""

    home_option: Path | None

    @property
    def home(self) -> Path:
        return self.home_option if self.home_option is not None else default_home()


def settings(ctx: typer.Context) -> Settings:
    found = ctx.find_object(Settings)
    assert found is not None, "the app callback sets it before any command runs"
    return found


def instance(ctx: typer.Context) -> Instance:
    """The instance at `--home`; use it as a context manager so its store is closed."""
    return Instance.open(settings(ctx).home)


def tenant_of(opened: Instance, option: str | None) -> str:
    return check_tenant(option if option is not None else opened.config.default_tenant)


def open_keystore(opened: Instance) -> Keystore:
    path = opened.config.keystore_path
    if not path.exists():
        # Checked before asking for a passphrase that could not be used anyway.
        raise KeystoreError(f"no keystore at {path}; `logline init` creates one")
    return Keystore.open(path, passphrase_from_env_or_prompt())


def check_author(opened: Instance, identity: str) -> IdentityRecord:
    """The identity's record if it may sign, checked before any passphrase is asked for."""
    identity = str(LogLineId.parse(identity))
    record = opened.store.identity(identity)
    if record is None:
        raise UnknownAuthor(
            f"{identity} is not a registered identity; `logline id new` creates one"
        )
    if record.status != "active":
        raise UnknownAuthor(f"{identity} was claimed by {record.claimed_by} and can no longer sign")
    return record


def signing_keys(opened: Instance, *identities: str) -> tuple[Keystore, list[PrivateKey]]:
    """The keystore and the current private key of each identity, checked against the log."""
    records = [check_author(opened, identity) for identity in identities]
    keystore = open_keystore(opened)
    keys = []
    for record in records:
        key = keystore.get(record.id)
        if str(key.public_key) != record.public_key:
            raise Conflict(
                f"the keystore's key for {record.id} is not its current key on the "
                "log (was it rotated with another keystore?)"
            )
        keys.append(key)
    return keystore, keys


def append(opened: Instance, span: Span, wait: WaitFor = WaitFor.checkpointed) -> Receipt:
    mode: Wait = "sequenced" if wait is WaitFor.sequenced else "checkpointed"
    return opened.log.append(span, wait=mode)


def read_bytes(target: str, what: str) -> bytes:
    """A file's bytes, `-` for stdin; unreadable files are bad input, not tracebacks."""
    if target == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(target).read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read {what} {target}: {exc.strerror}") from exc


def read_json(target: str, what: str) -> Any:
    try:
        return loads(read_bytes(target, what))
    except ParseError as exc:
        raise ParseError(f"{what} {target}: {exc}") from exc


@contextmanager
def input_lines(target: str, what: str) -> Iterator[Iterator[str]]:
    """The lines of a text file (`-` for stdin), read lazily; bad UTF-8 is a `ParseError`."""
    if target == "-":
        yield _decoded(sys.stdin.buffer, what)
        return
    try:
        handle = Path(target).open("rb")
    except OSError as exc:
        raise InvalidInput(f"cannot read {what} {target}: {exc.strerror}") from exc
    with handle:
        yield _decoded(handle, what)


def _decoded(handle: IO[bytes], what: str) -> Iterator[str]:
    for number, raw in enumerate(handle, 1):
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ParseError(f"{what} line {number} is not UTF-8 text") from None


@contextmanager
def output_file(target: str, what: str) -> Iterator[IO[str]]:
    """Write to `target` (`-` for stdout) through a temporary file renamed into place at the end,
    so a failed export never leaves a truncated file that looks complete."""
    if target == "-":
        yield sys.stdout
        sys.stdout.flush()
        return
    path = Path(target)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        handle = tmp.open("w", encoding="utf-8", newline="\n")
    except OSError as exc:
        raise InvalidInput(f"cannot write {what} {target}: {exc.strerror}") from exc
    try:
        with handle:
            yield handle
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(target: str, text: str, what: str) -> None:
    with output_file(target, what) as handle:
        handle.write(text)


def parse_when(text: str, now: datetime | None = None) -> str:
    """A time bound for filters: a duration back from now (`90m`, `7d`), or an ISO 8601 date or
    time (UTC unless it says otherwise), as the log's timestamp form."""
    text = text.strip()
    if text[-1:] in ("s", "m", "h", "d") and text[:-1].isdigit():
        return format_ts((now or datetime.now(UTC)) - parse_duration(text))
    try:
        return format_ts(parse_ts(text))
    except InvalidInput:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(
            f"a time is a duration like 90m or 7d, or an ISO 8601 date or time, got {text!r}"
        ) from None
    return format_ts(moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC))
