"""RFC 8785 (JCS) canonicalization and strict JSON parsing.

The vectors in tests/vectors/rfc8785/ are the cyberphone/json-canonicalization reference test data
and the examples of RFC 8785 itself (section 3.2.2-3.2.4 sample, section 3.2.3 sorting test,
Appendix B number table); see tests/vectors/generate.py for where each value comes from.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import load_vectors, vector_drift
from logline.canonical import (
    MAX_DEPTH,
    MAX_SAFE_INTEGER,
    canonicalize,
    canonicalize_simple,
    jcs,
    loads,
)
from logline.errors import InvalidInput, ParseError

Case = dict[str, Any]


def test_vector_files_match_the_generator() -> None:
    assert vector_drift("rfc8785") == [], "run .venv/bin/python tests/vectors/generate.py"


def double(bits: str) -> float:
    value: float = struct.unpack(">d", bytes.fromhex(bits))[0]
    return value


def simple_path_applies(value: Any) -> bool:
    """Whether `canonicalize_simple` is meant for `value`: an object, ASCII keys, no floats."""

    def ok(v: Any) -> bool:
        if isinstance(v, float):
            return False
        if isinstance(v, list):
            return all(ok(item) for item in v)
        if isinstance(v, dict):
            return all(k.isascii() and ok(item) for k, item in v.items())
        return True

    return isinstance(value, dict) and ok(value)


@pytest.mark.parametrize("case", load_vectors("rfc8785"))
def test_rfc8785_vector(case: Case) -> None:
    value: Any = double(case["ieee754"]) if "ieee754" in case else loads(case["input"])
    if not case["valid"]:
        with pytest.raises(InvalidInput):
            canonicalize(value)
        with pytest.raises(InvalidInput):
            canonicalize({"nested": [value]})
        return
    expected = case["expected"].encode("utf-8")
    # Number vectors test the serializer itself; LogLine's policy refuses some of them (below).
    encode = jcs if "ieee754" in case else canonicalize
    assert encode(value) == expected
    if "expected_hex" in case:
        assert expected.hex() == case["expected_hex"]
    if "expected_value_order" in case:
        assert list(loads(expected).values()) == case["expected_value_order"]
    if "ieee754" in case:
        # the shortest text that reads back as the same double, also inside structures
        assert float(loads(expected)) == value
        assert encode({"n": [value]}) == b'{"n":[' + expected + b"]}"
    else:
        assert canonicalize(loads(expected)) == expected, "canonical form is not a fixed point"
    if simple_path_applies(value):
        assert canonicalize_simple(value) == expected


# --- the fast path --------------------------------------------------------------------------------

ascii_keys = st.text(alphabet=st.characters(max_codepoint=0x7F), max_size=6)
any_text = st.text(max_size=12)  # every code point but surrogates, control characters included
safe_ints = st.integers(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER)
scalars = st.one_of(st.none(), st.booleans(), safe_ints, st.sampled_from([0, -1, 2**31]), any_text)


def json_values(keys: st.SearchStrategy[str], leaves: st.SearchStrategy[Any]) -> Any:
    return st.recursive(
        leaves,
        lambda children: st.one_of(
            st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=4)
        ),
        max_leaves=16,
    )


simple_objects = st.dictionaries(ascii_keys, json_values(ascii_keys, scalars), max_size=8)


@settings(max_examples=300, deadline=None)
@given(simple_objects)
def test_the_fast_path_emits_the_same_bytes_as_jcs(value: dict[str, Any]) -> None:
    assert simple_path_applies(value)
    assert canonicalize_simple(value) == canonicalize(value)


@settings(max_examples=100, deadline=None)
@given(simple_objects)
def test_canonical_json_reads_back_to_the_same_value(value: dict[str, Any]) -> None:
    assert loads(canonicalize(value)) == value


def test_the_fast_path_on_the_characters_that_need_escaping() -> None:
    tricky = "".join(chr(c) for c in range(0x20)) + '"\\/\x7f\x80\u2028\u2029\ufeff\U0001f600'
    value = {"b": tricky, "a": [tricky, None, True, False, -0, MAX_SAFE_INTEGER], "": {}}
    assert canonicalize_simple(value) == canonicalize(value)
    assert canonicalize(value).startswith(b'{"":{},"a":["\\u0000\\u0001')
    assert b"\\b\\t\\n\\u000b\\f\\r" in canonicalize(value)


# --- general JCS properties -----------------------------------------------------------------------

json_floats = st.floats(allow_nan=False, allow_infinity=False)


@settings(max_examples=300, deadline=None)
@given(json_floats)
def test_numbers_serialize_to_text_that_reads_back_as_the_same_double(x: float) -> None:
    text = jcs(x)
    assert float(loads(text)) == x
    assert jcs([x]) == b"[" + text + b"]"


@settings(max_examples=300, deadline=None)
@given(json_floats)
def test_canonicalize_accepts_only_numbers_that_read_back_as_themselves(x: float) -> None:
    if MAX_SAFE_INTEGER < abs(x) < 1e21:
        with pytest.raises(InvalidInput, match="beyond"):
            canonicalize({"n": x})
        return
    text = canonicalize({"n": x})
    assert canonicalize(loads(text)) == text


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(any_text, st.none(), max_size=8))
def test_properties_sort_by_utf16_code_units(value: dict[str, None]) -> None:
    keys = list(loads(canonicalize(value)))
    assert keys == sorted(value, key=lambda k: k.encode("utf-16-be"))


# --- refusals -------------------------------------------------------------------------------------

REFUSED: list[Any] = [
    pytest.param(math.nan, id="nan"),
    pytest.param(math.inf, id="infinity"),
    pytest.param(-math.inf, id="minus-infinity"),
    pytest.param([1.0, math.nan], id="nan-in-array"),
    pytest.param({"a": {"b": math.inf}}, id="infinity-in-object"),
    pytest.param(MAX_SAFE_INTEGER + 1, id="2**53"),
    pytest.param(-MAX_SAFE_INTEGER - 1, id="-(2**53)"),
    pytest.param(2**64, id="2**64"),
    pytest.param({"big": [2**63 - 1]}, id="int64-max-nested"),
    pytest.param("\ud800", id="lone-high-surrogate"),
    pytest.param("abc\udead", id="lone-low-surrogate"),
    pytest.param({"\udc00": 1}, id="lone-surrogate-key"),
    pytest.param(["ok", {"k": "\ud83d"}], id="lone-surrogate-nested"),
    pytest.param({1: "one"}, id="int-key"),
    pytest.param({None: 1}, id="none-key"),
    pytest.param({True: 1}, id="bool-key"),
    pytest.param({1.5: 1}, id="float-key"),
    pytest.param({"a": {(1, 2): 1}}, id="tuple-key-nested"),
    pytest.param(b"bytes", id="bytes"),
    pytest.param({1, 2}, id="set"),
    pytest.param(object(), id="object"),
]


@pytest.mark.parametrize("value", REFUSED)
def test_canonicalize_refuses_what_jcs_cannot_represent(value: Any) -> None:
    with pytest.raises(InvalidInput):
        canonicalize(value)


def test_the_safe_integer_range_is_inclusive() -> None:
    assert canonicalize([MAX_SAFE_INTEGER, -MAX_SAFE_INTEGER]) == (
        b"[9007199254740991,-9007199254740991]"
    )


def test_nesting_deeper_than_the_limit_is_refused() -> None:
    def nest(depth: int) -> Any:
        value: Any = 0
        for _ in range(depth):
            value = [value]
        return value

    assert canonicalize(nest(MAX_DEPTH)) == b"[" * MAX_DEPTH + b"0" + b"]" * MAX_DEPTH
    with pytest.raises(InvalidInput):
        canonicalize(nest(MAX_DEPTH + 1))


# --- strict parsing -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        pytest.param('{"a": 1, "a": 2}', id="duplicate-key"),
        pytest.param('{"a": 1, "a": 1}', id="duplicate-key-same-value"),
        pytest.param('[{"x": {"y": 1, "y": null}}]', id="duplicate-key-nested"),
        pytest.param('{"\\u0061": 1, "a": 2}', id="duplicate-key-escaped"),
        pytest.param("NaN", id="nan"),
        pytest.param('{"n": NaN}', id="nan-in-object"),
        pytest.param("[Infinity]", id="infinity"),
        pytest.param("-Infinity", id="minus-infinity"),
        pytest.param("", id="empty"),
        pytest.param("{", id="truncated"),
        pytest.param("[1,]", id="trailing-comma"),
        pytest.param("{'a': 1}", id="single-quotes"),
        pytest.param('{"a": 1} x', id="trailing-garbage"),
        pytest.param(b'"\xff"', id="invalid-utf8"),
        pytest.param("[" * 100_000 + "]" * 100_000, id="too-deep"),
    ],
)
def test_loads_refuses(text: str | bytes) -> None:
    with pytest.raises(ParseError):
        loads(text)


def test_loads_refuses_numbers_that_overflow_to_infinity() -> None:
    with pytest.raises(ParseError):
        loads("[1e400]")


def test_loads_accepts_strict_json() -> None:
    assert loads(b'{"a": [1, 2.5, "x", null, true], "b": {}}') == {
        "a": [1, 2.5, "x", None, True],
        "b": {},
    }
    assert loads('{"a": {"a": 1}}') == {"a": {"a": 1}}, "the same key at two levels is fine"
