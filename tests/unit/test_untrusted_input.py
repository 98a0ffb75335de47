"""Untrusted input raises only `LogLineError` subclasses, never ValueError, TypeError & co.

Receipts, checkpoint notes, verifier keys and spans in wire form arrive from outside: a table of
hand-picked bad inputs pins the exact error class of each, and hypothesis feeds arbitrary JSON
values and text to the parsers. The valid receipt they start from is built directly (entries,
Merkle tree, signed checkpoint), so these tests need no database.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logline.canonical import b64encode
from logline.errors import (
    InvalidSpan,
    LogLineError,
    ParseError,
    SignatureError,
    VerificationError,
)
from logline.identity.documents import creation_span
from logline.identity.ids import LogLineId, uuid7
from logline.identity.keys import PrivateKey
from logline.ledger import merkle
from logline.ledger.checkpoint import (
    MAX_NOTE_BYTES,
    MAX_SIGNATURES,
    SIG_PREFIX,
    Checkpoint,
    NoteSigner,
    NoteVerifier,
    key_id,
    open_checkpoint,
    parse_checkpoint_body,
    sign_checkpoint,
    split_note,
)
from logline.ledger.entry import Entry
from logline.ledger.receipt import Receipt, verify_receipt
from logline.ledger.span import Span, new_span, parse_span, payload_digest, sign_body
from logline.ledger.timefmt import now_ts

INSTANCE = "untrusted.test"
TENANT = "acme"
ORIGIN = f"{INSTANCE}/{TENANT}"
# Fixed keys: the uppercase-hex cases need a key id with a letter in it (a random one is all
# digits about 2% of the time, and then upper-casing changes nothing).
LOG_KEY = PrivateKey.from_seed(hashlib.sha256(b"untrusted-input log key").digest())
SIGNER = NoteSigner(INSTANCE, LOG_KEY)
VERIFIER = SIGNER.verifier()
assert VERIFIER.key_id.hex() != VERIFIER.key_id.hex().upper()
ALICE_KEY = PrivateKey.from_seed(hashlib.sha256(b"untrusted-input alice").digest())
ALICE = LogLineId.of("person", "alice")
SURROGATE = "\ud800"
OTHER_ID = b"\xff\xff\xff\xff"
SMALL_ORDER_KEY = b64encode(b"\x01" + bytes(32))  # algorithm byte, then y = 0: small order


def _build() -> tuple[list[Span], list[Entry], str, list[list[bytes]]]:
    """Five spans, their entries, the signed checkpoint of size 5 and every inclusion proof."""
    spans = [creation_span(ALICE_KEY, TENANT, ALICE, "Alice")]
    spans += [
        new_span(ALICE_KEY, tenant=TENANT, author=str(ALICE), kind="test.event",
                 title=f"event {i}", payload={"i": i})
        for i in range(4)
    ]  # fmt: skip
    entries = [
        Entry(seq, span.id, span.hash, str(ALICE_KEY.public_key), span.signature, now_ts())
        for seq, span in enumerate(spans)
    ]
    leaves = [entry.leaf_hash() for entry in entries]
    nodes = {(level, i): h for level, i, h in merkle.append_nodes(0, {}, leaves)}
    size = len(leaves)
    note = sign_checkpoint(Checkpoint(ORIGIN, size, merkle.root_from_leaves(leaves)), SIGNER)
    proofs = [
        merkle.inclusion_path(i, size, lambda level, index: nodes[(level, index)])
        for i in range(size)
    ]
    return spans, entries, note, proofs


SPANS, ENTRIES, NOTE, PROOFS = _build()
RECEIPT = Receipt(ORIGIN, ENTRIES[3], NOTE, tuple(PROOFS[3]))
RECEIPT_JSON = RECEIPT.to_json()
NOTE_TEXT, _, NOTE_SIGS = NOTE.partition("\n\n")
NOTE_TEXT += "\n"


def receipt_with(**changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(RECEIPT_JSON)
    for name, value in changes.items():
        if value is _DELETE:
            del data[name]
        else:
            data[name] = value
    return data


def entry_with(**changes: Any) -> dict[str, Any]:
    entry = copy.deepcopy(RECEIPT_JSON["entry"])
    entry.update(changes)
    return receipt_with(entry=entry)


_DELETE = object()


def note_with_lines(*lines: str, text: str = NOTE_TEXT) -> str:
    return text + "\n" + "".join(line + "\n" for line in lines)


def our_line() -> str:
    return NOTE_SIGS.rstrip("\n")


def signed(body: str, signer: NoteSigner = SIGNER) -> str:
    """`body` as note text, signed by `signer`, even if it is no valid checkpoint."""
    return body + "\n" + signer.signature_line(body)


def test_the_valid_receipt_verifies() -> None:
    parsed = Receipt.from_json(RECEIPT_JSON)
    assert parsed == RECEIPT
    assert verify_receipt(parsed, VERIFIER, SPANS[3]).size == len(SPANS)
    assert parse_span(SPANS[3].to_json()).hash == SPANS[3].hash


# Each case: a thunk that parses one bad input, and the error class it must raise (exactly).
CASES: list[tuple[str, Callable[[], object], type[LogLineError]]] = [
    # --- signed notes -------------------------------------------------------------------------
    ("note not text", lambda: split_note(42), ParseError),  # type: ignore[arg-type]
    ("note is None", lambda: open_checkpoint(None, VERIFIER), ParseError),  # type: ignore[arg-type]
    ("note with lone surrogate", lambda: split_note(NOTE.replace("\n", SURROGATE + "\n", 1)),
     ParseError),
    ("note with lone surrogate, opened",
     lambda: open_checkpoint(NOTE_TEXT + SURROGATE + "\n\n" + NOTE_SIGS, VERIFIER), ParseError),
    ("note too large", lambda: split_note(NOTE + "x" * MAX_NOTE_BYTES), ParseError),
    ("note too large in UTF-8",
     lambda: split_note("é" * (MAX_NOTE_BYTES // 2) + "\n\n" + NOTE_SIGS), ParseError),
    ("note with NUL", lambda: split_note(NOTE.replace("\n", "\x00\n", 1)), ParseError),
    ("note with CR", lambda: split_note(NOTE.replace("\n", "\r\n")), ParseError),
    ("note without blank line", lambda: split_note(NOTE_TEXT + NOTE_SIGS), ParseError),
    ("note without signature line", lambda: split_note(NOTE_TEXT + "\n"), ParseError),
    ("note not ending in newline", lambda: split_note(NOTE.rstrip("\n")), ParseError),
    ("signature line without em dash", lambda: split_note(note_with_lines(our_line(), "- x y")),
     ParseError),
    ("empty signature line", lambda: split_note(NOTE + "\n"), ParseError),
    ("too many signature lines",
     lambda: split_note(note_with_lines(*[our_line()] * (MAX_SIGNATURES + 1))), ParseError),
    ("our line, bad base64", lambda: open_checkpoint(
        note_with_lines(f"{SIG_PREFIX}{INSTANCE} !!!!"), VERIFIER), ParseError),
    ("our line, non-canonical base64", lambda: open_checkpoint(
        note_with_lines(our_line()[:-2] + "B="), VERIFIER), ParseError),
    ("our line, too short", lambda: open_checkpoint(
        note_with_lines(f"{SIG_PREFIX}{INSTANCE} AAAA"), VERIFIER), ParseError),
    ("our line, no signature", lambda: open_checkpoint(
        note_with_lines(f"{SIG_PREFIX}{INSTANCE}"), VERIFIER), ParseError),
    ("our key, short signature", lambda: open_checkpoint(note_with_lines(
        f"{SIG_PREFIX}{INSTANCE} {b64encode(VERIFIER.key_id + bytes(10))}"), VERIFIER),
     SignatureError),
    ("our key, wrong signature", lambda: open_checkpoint(note_with_lines(
        f"{SIG_PREFIX}{INSTANCE} {b64encode(VERIFIER.key_id + bytes(64))}"), VERIFIER),
     SignatureError),
    ("our key, one good and one bad line", lambda: open_checkpoint(note_with_lines(
        our_line(), f"{SIG_PREFIX}{INSTANCE} {b64encode(VERIFIER.key_id + bytes(64))}"),
        VERIFIER), SignatureError),
    ("only other keys' lines", lambda: open_checkpoint(
        note_with_lines(f"{SIG_PREFIX}other.example {b64encode(bytes(68))}"), VERIFIER),
     SignatureError),
    ("signed by another key of our name", lambda: open_checkpoint(
        signed(NOTE_TEXT, NoteSigner(INSTANCE, PrivateKey.generate())), VERIFIER),
     SignatureError),
    ("origin differs", lambda: open_checkpoint(NOTE, VERIFIER, origin="other/acme"),
     VerificationError),
    # --- checkpoint bodies ----------------------------------------------------------------------
    ("body not text", lambda: parse_checkpoint_body(b"x\n1\n"), ParseError),  # type: ignore[arg-type]
    ("size of 21 digits", lambda: parse_checkpoint_body(f"o\n{'1' * 21}\n{b64encode(bytes(32))}\n"),
     ParseError),
    ("size of 5000 digits, signed", lambda: open_checkpoint(
        signed(f"{ORIGIN}\n{'9' * 5000}\n{b64encode(bytes(32))}\n"), VERIFIER), ParseError),
    ("size with leading zero", lambda: open_checkpoint(
        signed(f"{ORIGIN}\n05\n{b64encode(bytes(32))}\n"), VERIFIER), ParseError),
    ("size in other digits", lambda: open_checkpoint(
        signed(f"{ORIGIN}\n\u0665\n{b64encode(bytes(32))}\n"), VERIFIER), ParseError),
    ("root of 31 bytes", lambda: open_checkpoint(
        signed(f"{ORIGIN}\n5\n{b64encode(bytes(31))}\n"), VERIFIER), ParseError),
    ("two-line body", lambda: open_checkpoint(signed(f"{ORIGIN}\n5\n"), VERIFIER), ParseError),
    # --- verifier keys and key names -------------------------------------------------------------
    ("verifier key not text", lambda: NoteVerifier.parse(None), ParseError),  # type: ignore[arg-type]
    ("verifier key is bytes", lambda: NoteVerifier.parse(str(VERIFIER).encode()),  # type: ignore[arg-type]
     ParseError),
    ("verifier key name with surrogate",
     lambda: NoteVerifier.parse(f"a{SURROGATE}+{str(VERIFIER).split('+', 1)[1]}"), ParseError),
    ("verifier key name with control character",
     lambda: NoteVerifier.parse(f"a\x01b+{str(VERIFIER).split('+', 1)[1]}"), ParseError),
    ("verifier key with surrogate in base64",
     lambda: NoteVerifier.parse(str(VERIFIER) + SURROGATE), ParseError),
    ("verifier key id mismatch",
     lambda: NoteVerifier.parse(f"other+{str(VERIFIER).split('+', 1)[1]}"), ParseError),
    ("verifier key id in uppercase", lambda: NoteVerifier.parse(
        f"{INSTANCE}+{VERIFIER.key_id.hex().upper()}+{str(VERIFIER).split('+')[2]}"), ParseError),
    ("verifier key small order", lambda: NoteVerifier.parse(
        f"x+00000000+{SMALL_ORDER_KEY}"), ParseError),
    ("verifier with surrogate name", lambda: NoteVerifier(SURROGATE, VERIFIER.key), ParseError),
    ("verifier with spaced name", lambda: NoteVerifier("a b", VERIFIER.key), ParseError),
    ("key id of surrogate name", lambda: key_id("n" + SURROGATE, VERIFIER.key), ParseError),
    ("key id of non-text name", lambda: key_id(7, VERIFIER.key), ParseError),  # type: ignore[arg-type]
    ("signer with surrogate name", lambda: NoteSigner("n" + SURROGATE, LOG_KEY), ParseError),
    ("signer with non-text name", lambda: NoteSigner(None, LOG_KEY), ParseError),  # type: ignore[arg-type]
    ("signer with plus in name", lambda: NoteSigner("a+b", LOG_KEY), ParseError),
    ("signer with empty name", lambda: NoteSigner("", LOG_KEY), ParseError),
    ("signer with NBSP in name", lambda: NoteSigner("a\u00a0b", LOG_KEY), ParseError),
    ("signing surrogate text", lambda: SIGNER.signature_line(SURROGATE + "\n"), ParseError),
    # --- receipts -----------------------------------------------------------------------------
    ("receipt not an object", lambda: Receipt.from_json([RECEIPT_JSON]), ParseError),
    ("receipt is None", lambda: Receipt.from_json(None), ParseError),
    ("receipt v true", lambda: Receipt.from_json(receipt_with(v=True)), ParseError),
    ("receipt v 1.0", lambda: Receipt.from_json(receipt_with(v=1.0)), ParseError),
    ("receipt v '1'", lambda: Receipt.from_json(receipt_with(v="1")), ParseError),
    ("receipt v 2", lambda: Receipt.from_json(receipt_with(v=2)), ParseError),
    ("receipt without v", lambda: Receipt.from_json(receipt_with(v=_DELETE)), ParseError),
    ("receipt status a list", lambda: Receipt.from_json(receipt_with(status=["x"])), ParseError),
    ("receipt status unknown", lambda: Receipt.from_json(receipt_with(status="done")), ParseError),
    ("sequenced receipt with proof",
     lambda: Receipt.from_json(receipt_with(status="sequenced")), ParseError),
    ("receipt with extra member", lambda: Receipt.from_json(receipt_with(extra=1)), ParseError),
    ("receipt origin a number", lambda: Receipt.from_json(receipt_with(origin=5)), ParseError),
    ("receipt origin null", lambda: Receipt.from_json(receipt_with(origin=None)), ParseError),
    ("receipt entry a string", lambda: Receipt.from_json(receipt_with(entry="{}")), ParseError),
    ("receipt entry seq true", lambda: Receipt.from_json(entry_with(seq=True)), ParseError),
    ("receipt entry v 1.0", lambda: Receipt.from_json(entry_with(v=1.0)), ParseError),
    ("receipt entry bad key", lambda: Receipt.from_json(entry_with(key="ed25519:" + SURROGATE)),
     ParseError),
    ("receipt entry uppercase hash",
     lambda: Receipt.from_json(entry_with(span_hash=SPANS[3].hash.hex().upper())), ParseError),
    ("receipt checkpoint a number", lambda: Receipt.from_json(receipt_with(checkpoint=1)),
     ParseError),
    ("receipt inclusion a string",
     lambda: Receipt.from_json(receipt_with(inclusion=b64encode(bytes(32)))), ParseError),
    ("receipt inclusion hash a number", lambda: Receipt.from_json(receipt_with(inclusion=[1])),
     ParseError),
    ("receipt inclusion hash of 31 bytes",
     lambda: Receipt.from_json(receipt_with(inclusion=[b64encode(bytes(31))])), ParseError),
    ("receipt inclusion hash of 33 bytes",
     lambda: Receipt.from_json(receipt_with(inclusion=[b64encode(bytes(33))])), ParseError),
    ("receipt inclusion hash empty", lambda: Receipt.from_json(receipt_with(inclusion=[""])),
     ParseError),
    ("receipt inclusion hash not canonical base64", lambda: Receipt.from_json(
        receipt_with(inclusion=[b64encode(bytes(32))[:-2] + "B="])), ParseError),
    ("receipt inclusion hash with surrogate",
     lambda: Receipt.from_json(receipt_with(inclusion=[SURROGATE])), ParseError),
    ("receipt inclusion of 65 hashes",
     lambda: Receipt.from_json(receipt_with(inclusion=[b64encode(bytes(32))] * 65)), ParseError),
    ("receipt checkpoint size of 5000 digits", lambda: verify_receipt(Receipt.from_json(
        receipt_with(checkpoint=signed(f"{ORIGIN}\n{'9' * 5000}\n{b64encode(bytes(32))}\n"))),
        VERIFIER), ParseError),
    ("receipt of another origin", lambda: verify_receipt(Receipt.from_json(
        receipt_with(origin="other/acme")), VERIFIER), VerificationError),
    ("receipt with a wrong proof", lambda: verify_receipt(Receipt.from_json(
        receipt_with(inclusion=[b64encode(bytes(32))] * 3)), VERIFIER), VerificationError),
    ("receipt for another span", lambda: verify_receipt(RECEIPT, VERIFIER, SPANS[2]),
     VerificationError),
    # --- spans --------------------------------------------------------------------------------
    ("span payload null, no digest",
     lambda: parse_span({**SPANS[0].to_json(include_payload=False),
                         "body": {**SPANS[0].body, "payload_digest": None}, "payload": None}),
     InvalidSpan),
    ("span payload null, digest of null", lambda: parse_span(_span_with_null_payload()),
     InvalidSpan),
    ("span not an object", lambda: parse_span([SPANS[3].to_json()]), InvalidSpan),
    ("span signature a number", lambda: parse_span({**SPANS[3].to_json(), "signature": 5}),
     InvalidSpan),
    ("span signature with surrogate",
     lambda: parse_span({**SPANS[3].to_json(), "signature": SURROGATE}), InvalidSpan),
    ("span title with surrogate", lambda: parse_span(
        {**SPANS[3].to_json(), "body": {**SPANS[3].body, "title": SURROGATE}}), InvalidSpan),
    ("span payload wrong", lambda: parse_span({**SPANS[3].to_json(), "payload": {"i": 99}}),
     InvalidSpan),
]  # fmt: skip


def _span_with_null_payload() -> dict[str, Any]:
    """A validly signed span whose body commits to the JSON value null, sent with `"payload": null`.

    Before null payloads were refused, this one verified: its digest matches JCS(null).
    """
    body = {**SPANS[3].body, "id": uuid7(), "payload_digest": payload_digest(None)}
    span = sign_body(ALICE_KEY, body)
    return {**span.to_json(), "payload": None}


@pytest.mark.parametrize(("thunk", "error"), [pytest.param(t, e, id=name) for name, t, e in CASES])
def test_untrusted_input_raises_the_expected_error(
    thunk: Callable[[], object], error: type[LogLineError]
) -> None:
    with pytest.raises(LogLineError) as info:
        thunk()
    assert type(info.value) is error, f"{type(info.value).__name__}: {info.value}"


def test_case_names_are_unique() -> None:
    names = [name for name, _, _ in CASES]
    assert len(names) == len(set(names))


# --- C2SP signed-note: lines of other keys are ignored, however malformed ---------------------


IGNORED_LINES = [
    f"{SIG_PREFIX}other.example !!!not base64!!!",
    f"{SIG_PREFIX}other.example {b64encode(bytes(4))}",  # key id only, no signature
    f"{SIG_PREFIX}other.example",
    f"{SIG_PREFIX}other.example {b64encode(bytes(70))[:-2]}B=",  # non-canonical base64
    f"{SIG_PREFIX}bad+name {b64encode(bytes(68))}",
    f"{SIG_PREFIX} {b64encode(bytes(68))}",  # empty name
    f"{SIG_PREFIX}{SIG_PREFIX}x y",
    f"{SIG_PREFIX}other.example {b64encode(VERIFIER.key_id + bytes(64))}",  # our id, other name
    f"{SIG_PREFIX}{INSTANCE} {b64encode(OTHER_ID + bytes(64))}",  # our name, other id
]


@pytest.mark.parametrize("line", IGNORED_LINES)
@pytest.mark.parametrize("first", [True, False], ids=["before", "after"])
def test_lines_of_other_keys_are_ignored(line: str, first: bool) -> None:
    if VERIFIER.key_id == OTHER_ID:  # pragma: no cover - 1 in 2**32
        pytest.skip("the log key's id happens to be ffffffff")
    lines = [line, our_line()] if first else [our_line(), line]
    assert open_checkpoint(note_with_lines(*lines), VERIFIER, origin=ORIGIN).size == len(SPANS)


def test_at_most_max_signatures_lines_are_accepted() -> None:
    others = [f"{SIG_PREFIX}w{i}.example {b64encode(bytes(68))}" for i in range(MAX_SIGNATURES - 1)]
    note = note_with_lines(*others, our_line())
    assert open_checkpoint(note, VERIFIER).size == len(SPANS)
    text, signatures = split_note(note, strict_name=INSTANCE)
    assert text == NOTE_TEXT and len(signatures) == MAX_SIGNATURES


def test_split_note_keeps_only_well_formed_lines() -> None:
    text, signatures = split_note(note_with_lines(IGNORED_LINES[0], our_line()))
    assert text == NOTE_TEXT
    assert [name for name, _, _ in signatures] == [INSTANCE]
    with pytest.raises(ParseError):
        split_note(note_with_lines(f"{SIG_PREFIX}{INSTANCE} !!", our_line()), strict_name=INSTANCE)


def test_a_null_payload_is_no_payload_when_building() -> None:
    span = new_span(ALICE_KEY, tenant=TENANT, author=str(ALICE), kind="test.event", title="t")
    assert span.body["payload_digest"] is None and span.payload_bytes is None
    assert "payload" not in span.to_json()
    assert parse_span(span.to_json()).hash == span.hash


# --- hypothesis: nothing but LogLineError, whatever comes in -----------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
RECEIPT_PATHS: list[tuple[str, ...]] = [
    *[(name,) for name in RECEIPT_JSON],
    *[("entry", name) for name in RECEIPT_JSON["entry"]],
    ("inclusion", "0"),
    ("extra",),
]


def _mutated(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    data = copy.deepcopy(RECEIPT_JSON)
    target: Any = data
    for step in path[:-1]:
        target = target[step]
    if isinstance(target, list):
        target[int(path[-1])] = value
    else:
        target[path[-1]] = value
    return data


def _parse_and_verify_receipt(data: Any) -> None:
    try:
        receipt = Receipt.from_json(data)
        if receipt.checkpoint is not None:
            verify_receipt(receipt, VERIFIER, SPANS[3])
    except LogLineError:
        pass


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_receipt_from_json_raises_only_logline_errors(data: Any) -> None:
    _parse_and_verify_receipt(data)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(RECEIPT_PATHS), json_values)
def test_mutated_receipts_raise_only_logline_errors(path: tuple[str, ...], value: Any) -> None:
    _parse_and_verify_receipt(_mutated(path, value))


def _open_note(note: Any) -> None:
    try:
        split_note(note)
    except LogLineError:
        pass
    try:
        open_checkpoint(note, VERIFIER, origin=ORIGIN)
    except LogLineError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.text() | json_values)
def test_arbitrary_notes_raise_only_logline_errors(note: Any) -> None:
    _open_note(note)


note_pieces = st.sampled_from(
    [
        *["\n", "\n\n", SIG_PREFIX, " ", "+", INSTANCE, ORIGIN, "=", "\u2014", "\r", SURROGATE],
        *["9" * 30, our_line(), *IGNORED_LINES],
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(NOTE)), st.integers(0, 8), st.lists(note_pieces | st.text(max_size=8)))
def test_mutated_notes_raise_only_logline_errors(at: int, cut: int, pieces: list[str]) -> None:
    _open_note(NOTE[:at] + "".join(pieces) + NOTE[at + cut :])


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40) | json_values)
def test_verifier_keys_and_names_raise_only_logline_errors(text: Any) -> None:
    for parse in (NoteVerifier.parse, lambda t: NoteSigner(t, LOG_KEY), parse_checkpoint_body):
        try:
            parse(text)
        except LogLineError:
            pass


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["body", "signature", "payload", "extra"]), json_values)
def test_mutated_spans_raise_only_invalid_span(member: str, value: Any) -> None:
    wire = {**SPANS[3].to_json(), member: value}
    try:
        parse_span(wire)
    except InvalidSpan:
        pass


def test_digest_helper_matches_the_body() -> None:
    # The table above relies on payload_digest being what new_span writes.
    assert SPANS[3].body["payload_digest"] == payload_digest({"i": 2})
    assert payload_digest(None) == "sha256:" + hashlib.sha256(b"null").hexdigest()
