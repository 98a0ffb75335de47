"""Bundles: a tenant's log, or a range of it, as NDJSON that verifies offline.

    with open("acme.ndjson", "w") as out:
        export_bundle(log, "acme", out)
    with open("acme.ndjson") as source:
        summary = verify_bundle(source)                   # no database needed
    with open("acme.ndjson") as source:
        import_bundle(other_log, source)                  # verifies everything, then stores

Lines, in this order (docs/PROTOCOL.md §7): one `header`; one `key` per key of every author in the
range; one `left` with the hashes of the perfect subtrees covering [0, start) if start > 0; one
`entry` per entry in [start, end); one `consistency` with the proof from end to the checkpoint's
size if they differ; one `checkpoint` with the signed note. The verifier recomputes the tree of size
`end` from `left` and the entries, and proves it consistent with the signed checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

from logline.canonical import b64decode, b64encode, canonicalize, loads
from logline.errors import Conflict, LogLineError, NotFound, ParseError, VerificationError
from logline.identity import documents
from logline.identity.ids import LogLineId, check_tenant
from logline.identity.keys import PublicKey
from logline.ledger import merkle
from logline.ledger.admission import FOREIGN, REDACTION, SYSTEM_KINDS, Admission, Prepared
from logline.ledger.checkpoint import NoteVerifier
from logline.ledger.entry import Entry
from logline.ledger.log import Log
from logline.ledger.span import parse_span
from logline.ledger.timefmt import now_ts, parse_ts
from logline.ledger.verify import Item, LogVerifier, Summary
from logline.store.interface import IdentityRecord, KeyRecord, NewEntry, Tx

BUNDLE_TYPE = "logline.bundle"
BUNDLE_VERSION = 1
Progress = Callable[[int, int], None]


def export_bundle(
    log: Log,
    tenant: str,
    out: IO[str],
    *,
    start: int = 0,
    end: int | None = None,
    progress: Progress | None = None,
) -> int:
    """Write the bundle of entries [start, end) under the latest checkpoint.

    Returns the number of entries written.
    """
    record = log.checkpoint(tenant)
    head = log.head(tenant)
    size = record.size
    end = size if end is None else end
    if not 0 <= start < end <= size:
        raise NotFound(f"range [{start}, {end}) is not within the checkpointed log of size {size}")

    def line(obj: dict[str, Any]) -> None:
        out.write(canonicalize(obj).decode() + "\n")

    line({"type": BUNDLE_TYPE, "v": BUNDLE_VERSION, "origin": log.origin(tenant), "tenant": tenant,
          "log_key": str(log.verifier()), "start": start, "end": end, "tree_size": size,
          "exported_at": now_ts()})  # fmt: skip
    authors = log.store.authors(tenant, start, end)
    for author in authors:
        for key in log.store.keys(author):
            line({"type": "key", "identity": key.identity, "public_key": key.public_key,
                  "valid_from": key.valid_from, "valid_until": key.valid_until,
                  "span_id": key.span_id})  # fmt: skip
    if start:
        ids = merkle.range_nodes(0, start)
        nodes = log.store.nodes(head.log_id, ids)
        line({"type": "left", "hashes": [b64encode(nodes[n]) for n in ids]})
    written = 0
    for stored in log.store.spans(tenant, start, end):
        span = stored.span
        obj: dict[str, Any] = {
            "type": "entry",
            "seq": stored.seq,
            "entry": loads(stored.leaf),
            "span": span.to_json(),
        }
        if stored.redacted_by is not None:
            obj["redacted_by"] = stored.redacted_by
        line(obj)
        written += 1
        if progress is not None:
            progress(written, end - start)
    if end < size:
        proof = log.consistency_proof(tenant, end, size)
        line(
            {
                "type": "consistency",
                "size1": end,
                "size2": size,
                "hashes": [b64encode(h) for h in proof],
            }
        )
    line({"type": "checkpoint", "note": record.note})
    return written


def _lines(source: Iterable[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, text in enumerate(source, 1):
        if not text.strip():
            continue
        try:
            obj = loads(text)
        except ParseError as exc:
            raise ParseError(f"bundle line {number}: {exc}") from exc
        if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
            raise ParseError(f"bundle line {number}: not an object with a type")
        yield number, obj


def _fields(number: int, obj: dict[str, Any], *names: str, optional: tuple[str, ...] = ()) -> None:
    missing = [n for n in names if n not in obj]
    extra = sorted(set(obj) - {"type", *names, *optional})
    if missing or extra:
        raise ParseError(
            f"bundle line {number} ({obj['type']}): missing {missing or 'nothing'}, "
            f"unknown {extra or 'nothing'}"
        )


def _int(number: int, obj: dict[str, Any], name: str) -> int:
    value = obj[name]
    if type(value) is not int or value < 0:
        raise ParseError(f"bundle line {number}: {name} must be a non-negative integer")
    return value


def _str(number: int, obj: dict[str, Any], name: str, *, nullable: bool = False) -> Any:
    value = obj[name]
    if not (isinstance(value, str) or (nullable and value is None)):
        raise ParseError(f"bundle line {number}: {name} must be a string")
    return value


def _hashes(number: int, obj: dict[str, Any]) -> list[bytes]:
    hashes = obj["hashes"]
    if not isinstance(hashes, list) or not all(isinstance(h, str) for h in hashes):
        raise ParseError(f"bundle line {number}: hashes must be a list of base64 strings")
    decoded = [b64decode(h, what=f"bundle line {number} hash") for h in hashes]
    if any(len(h) != merkle.HASH_SIZE for h in decoded):
        raise ParseError(f"bundle line {number}: every hash is {merkle.HASH_SIZE} bytes")
    return decoded


def _key_line(number: int, obj: dict[str, Any]) -> KeyRecord:
    _fields(number, obj, "identity", "public_key", "valid_from", "valid_until", "span_id")
    record = KeyRecord(
        _str(number, obj, "identity"),
        _str(number, obj, "public_key"),
        _str(number, obj, "valid_from"),
        _str(number, obj, "valid_until", nullable=True),
        _str(number, obj, "span_id"),
    )
    try:
        LogLineId.parse(record.identity)
        PublicKey.parse(record.public_key)
        for ts in (record.valid_from, record.valid_until):
            if ts is not None:
                parse_ts(ts)
    except LogLineError as exc:
        raise ParseError(f"bundle line {number}: {exc}") from exc
    return record


def _header(number: int, header: dict[str, Any]) -> tuple[int, int, int]:
    if header.get("type") != BUNDLE_TYPE:
        raise ParseError(f"not a LogLine bundle: first line has type {header.get('type')!r}")
    _fields(number, header, "v", "origin", "tenant", "log_key", "start", "end", "tree_size",
            "exported_at")  # fmt: skip
    if type(header["v"]) is not int or header["v"] != BUNDLE_VERSION:
        raise ParseError(f"unsupported bundle version {header['v']!r}")
    start, end, size = (_int(number, header, n) for n in ("start", "end", "tree_size"))
    if not start < end <= size:
        raise ParseError(f"bundle range [{start}, {end}) of tree size {size} is not valid")
    for name in ("origin", "tenant", "log_key", "exported_at"):
        _str(number, header, name)
    try:
        check_tenant(header["tenant"])
        parse_ts(header["exported_at"])
    except LogLineError as exc:
        raise ParseError(f"bundle header: {exc}") from exc
    return start, end, size


def read_bundle(
    source: Iterable[str],
    *,
    trusted_key: NoteVerifier | None = None,
    progress: Progress | None = None,
    on_entry: Callable[[Item, dict[str, Any]], None] | None = None,
) -> Summary:
    """Verify a bundle line by line. `trusted_key` pins the log key (else the header's is used)."""
    lines = _lines(source)
    number, header = next(lines, (0, {"type": "<empty>"}))
    start, end, size = _header(number, header)
    log_key = NoteVerifier.parse(header["log_key"])
    if trusted_key is not None and str(trusted_key) != str(log_key):
        raise VerificationError("log key", expected=str(trusted_key), found=str(log_key))
    if header["origin"] != f"{log_key.name}/{header['tenant']}":
        raise VerificationError(
            "bundle origin", expected=f"{log_key.name}/{header['tenant']}", found=header["origin"]
        )
    keys: list[KeyRecord] = []
    left: list[bytes] | None = None
    verifier: LogVerifier | None = None
    consistency: list[bytes] | None = None
    for number, obj in lines:
        kind = obj["type"]
        if kind == "key" and verifier is None and left is None:
            keys.append(_key_line(number, obj))
        elif kind == "left" and verifier is None and left is None and start > 0:
            _fields(number, obj, "hashes")
            left = _hashes(number, obj)
        elif kind == "entry" and consistency is None:
            if verifier is None:
                verifier = LogVerifier(header["origin"], log_key, keys, start=start,
                                       left=left or [])  # fmt: skip
            _fields(number, obj, "seq", "entry", "span", optional=("redacted_by",))
            if not isinstance(obj["entry"], dict):
                raise ParseError(f"bundle line {number}: entry must be an object")
            redacted_by = _str(number, obj, "redacted_by") if "redacted_by" in obj else None
            item = Item(_int(number, obj, "seq"), canonicalize(obj["entry"]), obj["span"],
                        redacted_by)  # fmt: skip
            verifier.add(item)
            if on_entry is not None:
                on_entry(item, obj)
            if progress is not None:
                progress(verifier.size - start, end - start)
        elif kind == "consistency" and verifier is not None and consistency is None and end < size:
            _fields(number, obj, "size1", "size2", "hashes")
            if (_int(number, obj, "size1"), _int(number, obj, "size2")) != (end, size):
                raise ParseError(f"bundle line {number}: the consistency proof must run from "
                                 f"{end} to {size}")  # fmt: skip
            consistency = _hashes(number, obj)
        elif kind == "checkpoint" and verifier is not None:
            _fields(number, obj, "note")
            note = _str(number, obj, "note")
            if verifier.size != end:
                raise VerificationError(
                    "bundle entries", expected=end - start, found=verifier.size - start
                )
            if end < size and consistency is None:
                raise ParseError(f"bundle line {number}: a consistency line must come first")
            checkpoint = (
                verifier.check_checkpoint(note) if consistency is None
                else verifier.check_consistency_to(note, consistency)
            )  # fmt: skip
            if checkpoint.size != size:
                raise VerificationError("checkpoint size", expected=size, found=checkpoint.size)
            if next(lines, None) is not None:
                raise ParseError("bundle has lines after its checkpoint")
            return verifier.finish(reaches_end=end == size)
        else:
            raise ParseError(f"bundle line {number}: unexpected {kind!r} line here")
    raise VerificationError("bundle", expected="a checkpoint line at the end", found="none")


def verify_bundle(
    source: Iterable[str],
    *,
    trusted_key: NoteVerifier | None = None,
    progress: Progress | None = None,
) -> Summary:
    return read_bundle(source, trusted_key=trusted_key, progress=progress)


def import_bundle(
    log: Log,
    source: Iterable[str],
    *,
    trusted_key: NoteVerifier | None = None,
    progress: Progress | None = None,
) -> Summary:
    """Verify a bundle completely, then store its entries as a replica of its log.

    Nothing is stored unless the whole bundle verifies. The local log of the tenant must hold
    exactly the bundle's first `start` entries (none, for a bundle from the start), with the same
    tree. Identities registered in the bundle, and key records of authors registered elsewhere,
    are stored too, so the replica verifies on its own.
    """
    rows: list[NewEntry] = []
    redacted: dict[str, str] = {}

    def collect(item: Item, obj: dict[str, Any]) -> None:
        span = parse_span(obj["span"])
        rows.append(NewEntry(span, Entry.from_leaf_data(item.leaf), item.leaf))
        if item.redacted_by is not None:
            redacted[span.id] = item.redacted_by

    summary = read_bundle(source, trusted_key=trusted_key, progress=progress, on_entry=collect)
    _store_replica(log, summary, rows, redacted)
    return summary


def _store_replica(
    log: Log, summary: Summary, rows: list[NewEntry], redacted: dict[str, str]
) -> None:
    tenant = summary.origin.rpartition("/")[2]
    with log.store.write() as tx:
        head = tx.lock_log(tenant, now_ts())
        if head.size != summary.start:
            raise Conflict(
                f"the local log of {tenant} has {head.size} entries; this bundle "
                f"starts at {summary.start}"
            )
        ids = merkle.range_nodes(0, head.size)
        stored = tx.nodes(head.log_id, ids)
        frontier = {level: stored[(level, index)] for level, index in ids}
        nodes = merkle.append_nodes(
            head.size, frontier, [merkle.leaf_hash(row.leaf) for row in rows]
        )
        # `append_nodes` advanced `frontier` to the new size: folding it gives the new root.
        root = merkle.fold_right([frontier[lv] for lv in sorted(frontier, reverse=True)])
        if root != summary.root:
            raise Conflict(
                "the local log's tree differs from the tree this bundle extends",
            )
        tx.insert_entries(head.log_id, rows)
        tx.insert_nodes(head.log_id, nodes)
        tx.set_size(head.log_id, summary.size)
        for span_id, by in redacted.items():
            tx.mark_span(head.log_id, span_id, redacted_by=by)
        _insert_foreign_authors(tx, tenant, rows, summary.keys)
        # Replay the effects of identity documents, reverts and redactions in log order, each at
        # its entry's own received time, exactly as admission applied them at the source.
        for row in rows:
            if row.span.kind not in SYSTEM_KINDS and row.span.body["status"] != "reverted":
                continue
            if row.span.kind == REDACTION:
                continue  # its target arrived without payload, marked by `redacted` above
            admission = Admission(
                tx, head.log_id, tenant, row.entry.received, set(), replaying=True
            )
            try:
                admission.admit([Prepared(row.span, row.entry.key)])
            except LogLineError as exc:
                raise VerificationError(
                    f"replaying {row.span.kind}: {exc}", seq=row.entry.seq
                ) from exc
            admission.apply()


def _insert_foreign_authors(
    tx: Tx, tenant: str, rows: list[NewEntry], key_lines: list[KeyRecord]
) -> None:
    """Record the authors that were registered on another log as `foreign` identities.

    Key lines are the exporter's unauthenticated claims, so they never make an identity that can
    sign here: a foreign identity only lets the replica verify on its own, with exactly the keys
    its entries were signed with. Importing the identity's own log later replaces it.
    """
    created = {row.span.author for row in rows if row.span.kind == documents.CREATED}
    used: dict[str, set[str]] = {}
    for row in rows:
        if row.span.author not in created:
            used.setdefault(row.span.author, set()).add(row.entry.key)
    for author, keys in used.items():
        if tx.identity(author) is not None:
            continue
        records = sorted(
            (r for r in key_lines if r.identity == author and r.public_key in keys),
            key=lambda r: r.valid_from,
        )
        if not records:  # the verifier already refused entries whose key no line vouched for
            raise VerificationError(f"keys of {author}", expected="key lines", found="none")
        current = records[-1]
        tx.insert_identity(IdentityRecord(
            author, LogLineId.parse(author).kind, current.public_key, FOREIGN, tenant,
            records[0].valid_from, records[0].span_id,
        ))  # fmt: skip
        for record in records:
            tx.insert_key(record)
