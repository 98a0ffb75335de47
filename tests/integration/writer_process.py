"""A real writer process for the crash and multi-process tests, and the parent's side of it.

Run as a script (`python writer_process.py --url ... --seed ...`), it opens the store, optionally
registers its identity (key from `--seed`, so the parent can check signatures), and appends signed
spans: single `append`s and small `append_batch`es, all `wait="sequenced"`, with an occasional
`log.checkpoint`. Every acknowledgement is printed as one JSON line on stdout and flushed only
after the call returned, so a line the parent reads is a promise the store must keep:

    {"event": "ready", "author": ..., "sizes": {tenant: size}}
    {"event": "ack", "tenant": ..., "spans": [[span_id, seq, span_hash_hex, leaf_hex], ...]}
    {"event": "checkpoint", "tenant": ..., "size": ..., "root": hex}
    {"event": "done"}

With `--count 0` it appends until it is killed. Imported, the module gives the parent `Writer`
(spawn, read, SIGKILL, clean up) and `check_log` (the assertions on a log after the fact).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from logline.identity.documents import creation_span
from logline.identity.ids import LogLineId
from logline.identity.keys import PrivateKey
from logline.ledger.checkpoint import NoteSigner, NoteVerifier
from logline.ledger.log import Log
from logline.ledger.receipt import Receipt
from logline.ledger.span import new_span
from logline.store import open_store
from logline.store.interface import Store

SCRIPT = Path(__file__).resolve()
SPAN_KIND = "test.writer"


def key_from_seed(seed_hex: str) -> PrivateKey:
    return PrivateKey.from_seed(bytes.fromhex(seed_hex))


def seed_for(label: str) -> str:
    """A fixed 32-byte seed (hex) for `label`: the parent and the writer derive the same key."""
    return hashlib.sha256(b"logline-test-writer\x00" + label.encode()).hexdigest()


def note_verifier(instance: str, instance_seed: str) -> NoteVerifier:
    return NoteSigner(instance, key_from_seed(instance_seed)).verifier()


def author_id(handle: str) -> str:
    return str(LogLineId.of("service", handle))


# --- the writer (child side) --------------------------------------------------------------------


def _emit(event: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(event, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def _ack(tenant: str, receipts: list[Receipt]) -> None:
    _emit(
        {
            "event": "ack",
            "tenant": tenant,
            "spans": [
                [r.entry.span_id, r.seq, r.entry.span_hash.hex(), r.entry.leaf_data().hex()]
                for r in receipts
            ],
        }
    )


def _checkpoint(log: Log, tenant: str) -> None:
    record = log.checkpoint(tenant)
    _emit({"event": "checkpoint", "tenant": tenant, "size": record.size, "root": record.root.hex()})


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--url", required=True)
    parser.add_argument("--instance", required=True)
    parser.add_argument("--instance-seed", required=True, help="hex seed of the log's key")
    parser.add_argument("--seed", required=True, help="hex seed of the writer identity's key")
    parser.add_argument("--handle", required=True, help="identity logline-id://service/<handle>")
    parser.add_argument("--tenants", required=True, help="comma-separated tenants to write to")
    parser.add_argument("--count", type=int, default=0, help="spans to append; 0 = until killed")
    parser.add_argument("--max-batch", type=int, default=5)
    parser.add_argument("--checkpoint-prob", type=float, default=0.05)
    parser.add_argument("--rng-seed", type=int, default=0)
    parser.add_argument(
        "--register",
        action="store_true",
        help="register the identity in the first tenant unless it exists",
    )
    parser.add_argument(
        "--wait-go", action="store_true", help="after 'ready', wait for a stdin line"
    )
    parser.add_argument(
        "--final-checkpoint", action="store_true", help="checkpoint every tenant once done"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    tenants: list[str] = args.tenants.split(",")
    rng = random.Random(args.rng_seed)
    key = key_from_seed(args.seed)
    author = author_id(args.handle)
    store = open_store(args.url)
    log = Log(store, instance=args.instance, key=key_from_seed(args.instance_seed))
    try:
        if args.register and store.identity(author) is None:
            identity = LogLineId.parse(author)
            receipt = log.append(
                creation_span(key, tenants[0], identity, args.handle), wait="sequenced"
            )
            _ack(tenants[0], [receipt])
        sizes = {}
        for tenant in tenants:
            head = store.log_head(tenant)
            sizes[tenant] = 0 if head is None else head.size
        _emit({"event": "ready", "author": author, "sizes": sizes})
        if args.wait_go:
            sys.stdin.readline()
        written, n = 0, 0
        while args.count == 0 or written < args.count:
            tenant = rng.choice(tenants)
            if rng.random() < args.checkpoint_prob:
                _checkpoint(log, tenant)
                continue
            size = 1 if rng.random() < 0.5 else rng.randint(2, args.max_batch)
            if args.count:
                size = min(size, args.count - written)
            spans = []
            for _ in range(size):
                n += 1
                fields: dict[str, Any] = {"tags": [args.handle]}
                if n % 2:
                    fields["payload"] = {"writer": args.handle, "n": n}
                spans.append(
                    new_span(
                        key,
                        tenant=tenant,
                        author=author,
                        kind=SPAN_KIND,
                        title=f"{args.handle} span {n}",
                        **fields,
                    )
                )
            if size == 1:
                receipts = [log.append(spans[0], wait="sequenced")]
            else:
                receipts = log.append_batch(spans, wait="sequenced")
            _ack(tenant, receipts)
            written += size
        if args.final_checkpoint:
            for tenant in tenants:
                _checkpoint(log, tenant)
        _emit({"event": "done"})
    finally:
        log.close()
        store.close()
    return 0


# --- the parent side ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Ack:
    tenant: str
    span_id: str
    seq: int
    span_hash: str
    leaf: str
    writer: str


class Writer:
    """One writer subprocess: its JSON events as they arrive, SIGKILL, and cleanup on exit."""

    def __init__(self, name: str, args: list[str], stderr_path: Path) -> None:
        self.name = name
        self.stderr_path = stderr_path
        self.events: list[dict[str, Any]] = []
        self.eof = False
        self._cond = threading.Condition()
        with open(stderr_path, "wb") as stderr:
            self.proc = subprocess.Popen(
                [sys.executable, str(SCRIPT), *args],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
            )
        self._reader = threading.Thread(target=self._read, name=f"read-{name}", daemon=True)
        self._reader.start()

    def __enter__(self) -> Writer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.kill()

    def _read(self) -> None:
        stdout: IO[bytes] | None = self.proc.stdout
        assert stdout is not None
        try:
            for raw in stdout:
                if not raw.endswith(b"\n"):
                    break  # cut short by the kill: never acknowledged
                event = json.loads(raw)
                with self._cond:
                    self.events.append(event)
                    self._cond.notify_all()
        finally:
            with self._cond:
                self.eof = True
                self._cond.notify_all()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def wait_event(self, name: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for event in self.events:
                    if event["event"] == name:
                        return event
                left = deadline - time.monotonic()
                if self.eof or left <= 0:
                    raise AssertionError(
                        f"writer {self.name} sent no {name!r} event (exit code "
                        f"{self.proc.poll()}); stderr:\n{self.stderr()}"
                    )
                self._cond.wait(left)

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"go\n")
        self.proc.stdin.flush()

    def kill(self) -> None:
        """SIGKILL (if still running), reap, and read what it printed up to its death."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self._close()

    def finish(self, timeout: float) -> None:
        """Wait for a normal exit; kill and fail if it does not come in time or is not clean."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"writer {self.name} still running after {timeout} s") from None
        self._close()
        if code != 0:
            raise AssertionError(f"writer {self.name} exited with {code}; stderr:\n{self.stderr()}")

    def _close(self) -> None:
        self._reader.join(10)
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except BrokenPipeError:
                pass
        if self.proc.stdout is not None and not self._reader.is_alive():
            self.proc.stdout.close()

    def acks(self) -> list[Ack]:
        with self._cond:
            events = list(self.events)
        return [
            Ack(e["tenant"], span_id, seq, span_hash, leaf, self.name)
            for e in events
            if e["event"] == "ack"
            for span_id, seq, span_hash, leaf in e["spans"]
        ]

    def checkpoints(self) -> list[tuple[str, int, str]]:
        with self._cond:
            events = list(self.events)
        return [(e["tenant"], e["size"], e["root"]) for e in events if e["event"] == "checkpoint"]


def writer_args(
    url: str,
    *,
    instance: str,
    instance_seed: str,
    handle: str,
    tenants: list[str],
    count: int = 0,
    rng_seed: int = 0,
    checkpoint_prob: float = 0.05,
    max_batch: int = 5,
    register: bool = False,
    wait_go: bool = False,
    final_checkpoint: bool = False,
) -> list[str]:
    args = [
        "--url",
        url,
        "--instance",
        instance,
        "--instance-seed",
        instance_seed,
        "--seed",
        seed_for(handle),
        "--handle",
        handle,
        "--tenants",
        ",".join(tenants),
        "--count",
        str(count),
        "--rng-seed",
        str(rng_seed),
        "--checkpoint-prob",
        str(checkpoint_prob),
        "--max-batch",
        str(max_batch),
    ]
    if register:
        args.append("--register")
    if wait_go:
        args.append("--wait-go")
    if final_checkpoint:
        args.append("--final-checkpoint")
    return args


def check_log(store: Store, tenant: str, acks: list[Ack]) -> int:
    """The log of `tenant` is gapless and holds every acknowledged span where it was acknowledged.

    Returns the log's size.
    """
    head = store.log_head(tenant)
    mine = [a for a in acks if a.tenant == tenant]
    assert head is not None or not mine, f"{tenant}: {len(mine)} spans acknowledged, but no log"
    if head is None:
        return 0
    stored = list(store.spans(tenant, 0, head.size + 10))
    seqs = [s.seq for s in stored]
    assert seqs == list(range(head.size)), (
        f"{tenant}: stored seqs are not exactly 0..{head.size - 1}: "
        f"{len(seqs)} rows, first gap/extra at "
        f"{next((i for i, q in enumerate(seqs) if q != i), len(seqs))}"
    )
    assert [s.entry.seq for s in stored] == seqs, f"{tenant}: a leaf's seq differs from its row"
    assert head.size >= len(mine), f"{tenant}: size {head.size} < {len(mine)} acknowledged"
    by_seq = {s.seq: s for s in stored}
    seen: dict[str, int] = {}
    for ack in mine:
        assert ack.span_id not in seen, f"{ack.span_id} acknowledged twice"
        seen[ack.span_id] = ack.seq
        row = by_seq.get(ack.seq)
        assert row is not None, f"{tenant}: acknowledged {ack.span_id} at seq {ack.seq} is missing"
        entry = row.entry
        assert entry.span_id == ack.span_id, (
            f"{tenant}: seq {ack.seq} holds {entry.span_id}, acknowledged {ack.span_id} "
            f"(writer {ack.writer})"
        )
        assert entry.span_hash.hex() == ack.span_hash, f"{tenant}: hash of {ack.span_id} differs"
        assert row.leaf.hex() == ack.leaf, f"{tenant}: leaf of {ack.span_id} differs"
        found = store.span(tenant, ack.span_id)
        assert found is not None and found.seq == ack.seq, f"{tenant}: {ack.span_id} not by id"
    return head.size


def check_checkpoints(store: Store, reported: list[tuple[str, int, str]]) -> None:
    """Every checkpoint a writer reported is stored, at its size, with its root."""
    for tenant, size, root in reported:
        head = store.log_head(tenant)
        assert head is not None, f"{tenant}: checkpoint reported but no log"
        record = store.checkpoint(head.log_id, size)
        assert record is not None, f"{tenant}: reported checkpoint of size {size} is not stored"
        assert record.root.hex() == root, f"{tenant}: checkpoint of size {size} has another root"


if __name__ == "__main__":
    sys.exit(main())
