"""`python -m logline.demo` (what `make run` runs): LogLine end to end, in a few seconds.

Everything happens in `./demo-data` on the embedded SQLite store, recreated on every run, with a
fixed demo passphrase and no prompts: identities, spans with a cause chain, a key rotation, a
ghost claim, a revert, a replay and a redaction, two checkpoints, an offline receipt and
consistency proof, a bundle verified without any database, a tampered copy caught, and finally a
verification of the whole stored log.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from logline.cli.output import one_line
from logline.config import CONFIG_FILE
from logline.errors import ConfigError, LogLineError, VerificationError
from logline.identity.documents import claim_span, creation_span, rotation_span
from logline.identity.ids import LogLineId
from logline.identity.keys import PrivateKey
from logline.identity.keystore import Keystore
from logline.instance import Instance
from logline.ledger.bundle import export_bundle, verify_bundle
from logline.ledger.checkpoint import NoteVerifier, open_checkpoint
from logline.ledger.edits import redaction_span, replay_span, revert_span
from logline.ledger.merkle import verify_consistency
from logline.ledger.receipt import Receipt, verify_receipt
from logline.ledger.span import Span, new_span, parse_span
from logline.ledger.verify import Summary, verify_store
from logline.store.interface import CheckpointRecord

HOME = Path("demo-data")
PASSPHRASE = "demo"  # a demo keystore: its passphrase is meant to be public
INSTANCE = "demo.local"
TENANT = "acme"
BANK_REF = "TX-99812"  # the byte the tampering step changes


@dataclass(frozen=True, slots=True)
class Result:
    verified: Summary
    settled: str
    bundle: Path
    receipt: Path
    tampered_seq: int


def say(text: str = "") -> None:
    print(text, flush=True)


def step(number: int, title: str) -> None:
    say(f"\n{number}. {title}")


def root(note: str, demo: Demo) -> str:
    return open_checkpoint(note, demo.verifier).root.hex()[:12] + "…"


def reset(home: Path) -> None:
    """Recreate the demo directory, refusing to delete anything that is not a LogLine one."""
    if home.exists():
        if any(home.iterdir()) and not (home / CONFIG_FILE).exists():
            raise ConfigError(f"{home} exists and is not a LogLine data directory; not deleting it")
        shutil.rmtree(home)


class Demo:
    def __init__(self, instance: Instance, keystore: Keystore) -> None:
        self.instance = instance
        self.log = instance.log
        self.keystore = keystore
        self.key_text = str(self.log.verifier())
        self.verifier = NoteVerifier.parse(self.key_text)  # as a third party would hold it

    def append(self, span: Span) -> int:
        return self.log.append(span, wait="sequenced").seq

    def identity(self, kind: str, handle: str, name: str | None = None,
                 expires: timedelta | None = None) -> tuple[str, int]:  # fmt: skip
        identity = LogLineId.of(kind, handle)
        key = PrivateKey.generate()
        self.keystore.add(str(identity), key)
        expires_at = None if expires is None else datetime.now(UTC) + expires
        return str(identity), self.append(creation_span(key, TENANT, identity, name, expires_at))

    def span(self, author: str, kind: str, title: str, payload: Any, **fields: Any) -> Span:
        span = new_span(self.keystore.get(author), tenant=TENANT, author=author, kind=kind,
                        title=title, payload=payload, **fields)  # fmt: skip
        seq = self.append(span)
        say(f"   seq {seq:>2}  {kind:<22} {title}")
        return span

    def run(self) -> Result:
        step(1, f"Created instance {INSTANCE} in {HOME}/ (SQLite), default tenant {TENANT}")
        say(f"   log verifier key: {self.key_text}")
        alice, billing, ghost = self.identities()
        spans = self.write(alice, billing, ghost)
        first = self.log.checkpoint(TENANT)
        step(4, f"Published checkpoint 1: tree size {first.size}, root {root(first.note, self)}")
        self.change(alice, billing, ghost, spans)
        second = self.log.checkpoint(TENANT)
        step(7, f"Published checkpoint 2: tree size {second.size}, root {root(second.note, self)}")
        receipt = self.prove(spans["settled"], first, second)
        bundle, tampered_seq = self.bundles(spans["settled"])
        checked = verify_store(self.instance.store, TENANT, self.log.origin(TENANT),
                               self.log.verifier())  # fmt: skip
        step(12, f"Verified the stored log: {checked.size} entries; every signature, key, "
                 f"payload digest, Merkle node and checkpoint checks out")  # fmt: skip
        return Result(checked, spans["settled"].id, bundle, receipt, tampered_seq)

    def identities(self) -> tuple[str, str, str]:
        step(2, "Created three identities; each key is kept encrypted in the keystore")
        alice, seq = self.identity("person", "alice", "Alice Martin")
        say(f"   seq {seq:>2}  {alice} (a person)")
        billing, seq = self.identity("service", "billing", "Billing service")
        say(f"   seq {seq:>2}  {billing} (a service)")
        ghost, seq = self.identity("ghost", "visitor-7", expires=timedelta(days=7))
        say(f"   seq {seq:>2}  {ghost} (a ghost: an anonymous identity, expiring in 7 days)")
        return alice, billing, ghost

    def write(self, alice: str, billing: str, ghost: str) -> dict[str, Span]:
        step(3, "Wrote spans, signed by their authors; the payment chain is linked by caused_by")
        flow: dict[str, Any] = {"tags": ["finance"], "workflow_id": "invoice-2041"}
        invoice = self.span(alice, "invoice.created", "Invoice 2041 for Globex",
                            {"invoice": 2041, "amount": 1250, "currency": "EUR"},
                            **flow)  # fmt: skip
        approved = self.span(billing, "payment.approved", "Payment of invoice 2041 approved",
                             {"invoice": 2041, "approved_by": alice}, caused_by=invoice.id,
                             **flow)  # fmt: skip
        settled = self.span(billing, "payment.settled", "Invoice 2041 settled",
                            {"invoice": 2041, "bank_ref": BANK_REF}, caused_by=approved.id,
                            **flow)  # fmt: skip
        ticket = self.span(ghost, "support.ticket_opened", "Visitor asked about pricing",
                           {"email": "visitor@example.com", "message": "Team plan?"})  # fmt: skip
        price = self.span(alice, "price.changed", "Plan Pro now costs 59 EUR",
                          {"plan": "pro", "price": 59})  # fmt: skip
        run = self.span(billing, "billing.run", "Nightly billing run", {"invoices": 12})
        return {"settled": settled, "ticket": ticket, "price": price, "run": run}  # fmt: skip

    def change(self, alice: str, billing: str, ghost: str, spans: dict[str, Span]) -> None:
        step(5, "Rotated Alice's key (the old key signs the rotation); then claimed the ghost")
        old, new = self.keystore.get(alice), PrivateKey.generate()
        seq = self.append(rotation_span(old, new.public_key, TENANT, alice))
        self.keystore.replace(alice, new)  # only once the rotation is logged
        say(f"   seq {seq:>2}  {str(old.public_key)[:20]}… → {str(new.public_key)[:20]}…")
        claim = claim_span(new, alice, self.keystore.get(ghost), ghost, TENANT)
        say(f"   seq {self.append(claim):>2}  {ghost} claimed by {alice}; both keys consented")

        step(6, "Reverted the price change, replayed the billing run, redacted the visitor's email")
        stored = self.log.get(TENANT, spans["price"].id)
        seq = self.append(revert_span(new, alice, stored, "wrong plan"))
        say(f"   seq {seq:>2}  revert of seq {stored.seq} (status reverted, caused_by it)")
        stored = self.log.get(TENANT, spans["run"].id)
        seq = self.append(replay_span(self.keystore.get(billing), billing, stored))
        say(f"   seq {seq:>2}  replay of seq {stored.seq} (replay_of it)")
        stored = self.log.get(TENANT, spans["ticket"].id)
        seq = self.append(redaction_span(new, alice, stored, "GDPR erasure request"))
        if self.log.get(TENANT, stored.span.id).payload is not None:
            raise VerificationError("redacted payload", expected="deleted", found="still stored")
        say(f"   seq {seq:>2}  redaction of seq {stored.seq}: payload deleted, its digest "
            "stays in the signed body")  # fmt: skip

    def prove(self, settled: Span, first: CheckpointRecord, second: CheckpointRecord) -> Path:
        receipt = self.log.receipt(TENANT, settled.id)
        receipt_file = HOME / "receipt.json"
        receipt_file.write_text(json.dumps(receipt.to_json(), indent=2) + "\n")
        # Offline, as a third party: the receipt file, the span as its author kept it, the key.
        parsed = Receipt.from_json(json.loads(receipt_file.read_text()))
        checked = verify_receipt(parsed, self.verifier, parse_span(settled.to_json()))
        step(8, f"Receipt for seq {receipt.seq} (payment.settled) verified offline with the log "
                f"key alone: included in the tree of size {checked.size} "
                f"({len(receipt.inclusion)} proof hashes); saved as {receipt_file}")  # fmt: skip

        proof = self.log.consistency_proof(TENANT, first.size, second.size)
        old = open_checkpoint(first.note, self.verifier)
        new = open_checkpoint(second.note, self.verifier)
        verify_consistency(old.size, new.size, proof, old.root, new.root)
        step(9, f"Consistency: tree {old.size} is a prefix of tree {new.size} "
                f"({len(proof)} proof hashes): nothing logged was changed or dropped")  # fmt: skip
        return receipt_file

    def bundles(self, settled: Span) -> tuple[Path, int]:
        bundle = HOME / f"{TENANT}.ndjson"
        with bundle.open("w") as out:
            exported = export_bundle(self.log, TENANT, out)
        with bundle.open() as source:
            summary = verify_bundle(source, trusted_key=self.verifier)
        step(10, f"Exported {exported} entries to {bundle} ({bundle.stat().st_size:,} bytes) and "
                 f"verified it offline, no database: root {summary.root.hex()[:12]}…, "
                 f"{summary.redacted} redacted payload")  # fmt: skip

        tampered_seq = self.log.get(TENANT, settled.id).seq
        tampered = HOME / f"{TENANT}-tampered.ndjson"
        text = bundle.read_text()
        assert text.count(BANK_REF) == 1
        tampered.write_text(text.replace(BANK_REF, BANK_REF[:-1] + "3"))  # one byte
        try:
            with tampered.open() as source:
                verify_bundle(source, trusted_key=self.verifier)
        except VerificationError as exc:
            caught = exc
        else:
            raise VerificationError("the tampered bundle", expected="rejected", found="accepted")
        if caught.seq != tampered_seq:
            raise VerificationError("tampered entry", expected=tampered_seq, found=caught.seq)
        step(11, f"Changed one byte of the bank reference in a copy ({tampered}); verification "
                 f"refuses it:\n   {caught}")  # fmt: skip
        return bundle, tampered_seq


def main() -> int:
    started = time.perf_counter()
    say("LogLine demo: a verifiable timeline on embedded SQLite")
    try:
        reset(HOME)
        with Instance.init(HOME, name=INSTANCE, tenant=TENANT) as instance:
            keystore = Keystore.create(instance.config.keystore_path, PASSPHRASE)
            demo = Demo(instance, keystore)
            result = demo.run()
    except LogLineError as exc:
        print(f"error: {one_line(str(exc))}", file=sys.stderr)
        return 1
    verified = result.verified
    say(f"\nSummary: {verified.size} entries in the log of {TENANT}, "
        f"{len(verified.checkpoints)} checkpoints, root {verified.root.hex()[:16]}…; receipt, "
        f"consistency proof and bundle verified offline; tampering caught at entry "
        f"{result.tampered_seq}. Took {time.perf_counter() - started:.1f} s.")  # fmt: skip
    say(f"\nNext, try (the demo keystore's passphrase is {PASSPHRASE!r}):")
    cli = _cli_path()
    for command in (
        f"{cli} --home {HOME} span list",
        f"{cli} --home {HOME} span show {result.settled}",
        f"{cli} --home {HOME} span list --workflow-id invoice-2041",
        f"{cli} --home {HOME} log verify",
        f"LOGLINE_PASSPHRASE={PASSPHRASE} {cli} --home {HOME} id list",
        f"{cli} verify {result.bundle} --key {demo.key_text}",
        f"{cli} verify-receipt {result.receipt} --key {demo.key_text}",
    ):
        say(f"  {command}")
    return 0


def _cli_path() -> str:
    """How to call the CLI from here: `make run` installs it in .venv, not on PATH."""
    script = Path(sys.executable).parent / "logline"
    if shutil.which("logline") == str(script) or not script.exists():
        return "logline"
    try:
        return str(script.relative_to(Path.cwd()))
    except ValueError:
        return str(script)


if __name__ == "__main__":
    sys.exit(main())
