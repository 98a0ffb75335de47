"""Log entries: the hand-written leaf encoding is exactly RFC 8785, and parsing is strict."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from logline.canonical import canonicalize
from logline.errors import ParseError
from logline.identity.ids import uuid7
from logline.identity.keys import PrivateKey
from logline.ledger.entry import Entry

KEY = str(PrivateKey.generate().public_key)
decisions = st.fixed_dictionaries(
    {"outcome": st.sampled_from(["allow", "simulate", "hold"])},
    optional={
        "tags": st.lists(st.text(max_size=8), max_size=3),
        "metadata": st.dictionaries(st.text(max_size=6), st.integers(-(2**53) + 1, 2**53 - 1)
                                    | st.floats(-1e15, 1e15) | st.text(max_size=6), max_size=3),
    },
)  # fmt: skip


@given(
    seq=st.integers(min_value=0, max_value=2**53 - 1),
    span_hash=st.binary(min_size=32, max_size=32),
    signature=st.binary(min_size=64, max_size=64),
    decision=decisions,
)
def test_leaf_data_is_the_canonical_json_of_the_entry(
    seq: int, span_hash: bytes, signature: bytes, decision: dict[str, Any]
) -> None:
    entry = Entry(seq, uuid7(), span_hash, KEY, signature, "2026-11-22T00:33:31.123456Z", decision)
    assert entry.leaf_data() == canonicalize(entry.to_json())
    assert Entry.from_leaf_data(entry.leaf_data()) == entry


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("span_id", 'x", "v": 2'),
        ("span_id", "not-a-uuid"),
        ("key", "ed25519:short"),
        ("received", "2026-11-22 00:33:31"),
        ("seq", -1),
        ("seq", True),
        ("decision", {"no": "outcome"}),
        ("v", 2),
    ],
)
def test_from_json_refuses_bad_members(field: str, value: Any) -> None:
    entry = Entry(0, uuid7(), bytes(32), KEY, bytes(64), "2026-11-22T00:33:31.123456Z")
    data = entry.to_json()
    data[field] = value
    with pytest.raises(ParseError):
        Entry.from_json(data)
