"""`logline onboard`: a new identity and tenant on a LogLine server, one step at a time.

    logline onboard --server http://127.0.0.1:8470 --tenant acme --handle alice --token "$T"

Each step is printed as it completes:

1. identity — an Ed25519 key made here and kept in the local keystore (`<home>/keystore.json`,
   created if missing; passphrase from `LOGLINE_PASSPHRASE` or a prompt); only its public key and
   a signature leave this machine;
2. tenant and 3. membership — `POST /v1/onboard` with the identity's signed `identity.created`
   span: the server creates the tenant and makes the identity its owner. Sign-up is for instance
   administrators (`--token`, or `LOGLINE_TOKEN`) unless the server allows open sign-up;
4. token — a key-challenge login as the new identity;
5. first span — signed here, appended, and its checkpointed receipt verified against the log key
   (pinned with `--log-key`, else trusted on first use).

Running it again after a failure is safe: the key already in the keystore is reused, and a tenant
that a previous run created is picked up if the identity can log in to it. Options left out are
asked for; with all of them given (and `LOGLINE_PASSPHRASE` set) nothing is asked.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from logline.cli.common import settings
from logline.cli.output import out
from logline.client import ApiConflict, ApiUnauthenticated, Client, Signer
from logline.config import KEYSTORE_FILE
from logline.errors import InvalidInput, LogLineError
from logline.identity.ids import ID_KINDS, LogLineId, check_tenant
from logline.identity.keys import PrivateKey
from logline.identity.keystore import Keystore, passphrase_from_env_or_prompt

FIRST_KIND = "onboarding.completed"


def _step(label: str, value: object, note: str | None = None) -> None:
    line = Text.assemble(("✓ ", "green"), (label.ljust(12), "bold"), str(value))
    if note:
        line.append(f"  ({note})", "dim")
    out.print(line, soft_wrap=True)


def _keystore(home: Path) -> Keystore:
    path = home / KEYSTORE_FILE
    if path.exists():
        return Keystore.open(path, passphrase_from_env_or_prompt())
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    return Keystore.create(path, passphrase_from_env_or_prompt(confirm=True))


def _signer(keystore: Keystore, identity: str) -> tuple[Signer, bool]:
    """The identity's key from the keystore, made and stored first if it has none; and whether
    it was made now. Stored before anything is sent, so a failed run can be retried."""
    if identity in keystore:
        return Signer(identity, keystore.get(identity)), False
    key = PrivateKey.generate()
    keystore.add(identity, key)
    return Signer(identity, key), True


def onboard(
    ctx: typer.Context,
    server: Annotated[
        str,
        typer.Option("--server", envvar="LOGLINE_SERVER", prompt="Server URL",
                     help="The server's base URL, e.g. http://127.0.0.1:8470."),
    ],
    tenant: Annotated[
        str, typer.Option("--tenant", prompt="New tenant", help="Name of the tenant to create.")
    ],
    handle: Annotated[
        str, typer.Option("--handle", prompt="Your handle", help="Handle of the new identity.")
    ],
    kind: Annotated[
        str, typer.Option("--kind", help=f"Identity kind: {', '.join(ID_KINDS)}.")
    ] = "person",
    name: Annotated[str | None, typer.Option("--name", help="Your display name.")] = None,
    tenant_name: Annotated[
        str | None, typer.Option("--tenant-name", help="The tenant's display name.")
    ] = None,
    token: Annotated[
        str | None,
        typer.Option("--token", envvar="LOGLINE_TOKEN",
                     help="An instance administrator's token (not needed with open sign-up)."),
    ] = None,
    title: Annotated[
        str | None, typer.Option("--title", help="Title of the first span.")
    ] = None,
    log_key: Annotated[
        str | None,
        typer.Option("--log-key", help="The log's verifier key to pin (default: trust on first "
                     "use)."),
    ] = None,
    show_token: Annotated[
        bool, typer.Option("--show-token", help="Print LOGLINE_TOKEN=<access token> at the end.")
    ] = False,
) -> None:  # fmt: skip
    """Create an identity (key kept here) and a tenant it owns on a server, log in, first span."""
    identity = str(LogLineId.of(kind, handle))
    if kind == "ghost":
        raise InvalidInput("a ghost cannot onboard; ghosts are made by members of a tenant")
    check_tenant(tenant)
    if not server.startswith(("http://", "https://")):
        raise InvalidInput(f"--server must be an http:// or https:// URL, got {server!r}")
    home = settings(ctx).home
    keystore = _keystore(home)
    signer, made = _signer(keystore, identity)
    _step("identity", identity, f"{'new' if made else 'existing'} key {signer.key.public_key}, "
          f"kept in {home / KEYSTORE_FILE}")  # fmt: skip

    with Client(server.rstrip("/"), tenant, token=token, log_key=log_key) as client:
        try:
            onboarded = client.onboard(signer.identity_span(tenant, name), tenant_name)
        except ApiConflict as conflict:
            # A previous run may have got this far: then the identity can log in to the tenant.
            try:
                tokens = client.login_with_key(identity, signer.key, [tenant])
            except ApiUnauthenticated:
                raise conflict from None
            _step("tenant", tenant, "created by an earlier run")
        else:
            _step("tenant", onboarded.tenant, f"identity document {onboarded.spans[0]}")
            _step("membership", f"{onboarded.identity} is {onboarded.role}")
            tokens = client.login_with_key(identity, signer.key, [tenant])
        _step("token", f"logged in as {tokens.identity}", f"key challenge; access token for "
              f"{tokens.expires_in} s, refresh token rotates")  # fmt: skip

        payload = {"identity": identity, "tenant": tenant}
        appended = client.sign_and_append(
            signer, FIRST_KIND, title or f"{handle} onboarded {tenant}", payload,
            wait="checkpointed",
        )  # fmt: skip
        checkpoint = client.verify_receipt(appended.receipt)
        _step("first span", appended.span_id, f"seq {appended.seq}, receipt verified against "
              f"{client.api.log_key} at size {checkpoint.size}")  # fmt: skip
    if show_token:
        sys.stdout.write(f"LOGLINE_TOKEN={tokens.access_token}\n")


def _main() -> None:
    """`python -m logline.cli.onboard --home H onboard ...`, as `logline onboard` would run."""
    from logline.cli.main import options
    from logline.cli.output import one_line

    app = typer.Typer(add_completion=False, pretty_exceptions_show_locals=False)
    app.callback()(options)
    app.command("onboard")(onboard)
    try:
        app(prog_name="logline")
    except LogLineError as exc:
        sys.stderr.write(f"error: {one_line(str(exc))}\n")
        sys.exit(1)


if __name__ == "__main__":
    _main()
