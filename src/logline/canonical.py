"""Canonical JSON (RFC 8785, JCS) and the small encodings every format shares.

    >>> canonicalize({"b": [1, "x"], "a": None})
    b'{"a":null,"b":[1,"x"]}'
    >>> sha256_hex(b"")
    'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'

`canonicalize` accepts any JSON value. Values that JCS cannot represent faithfully are refused with
`InvalidInput`: integers outside the IEEE 754 safe range (|n| > 2**53 - 1) and doubles that JCS
would write as such integers (2**53 < |x| < 1e21), NaN and infinities, lone
surrogates, and non-string keys. The span body, whose fields are strings, nulls, a small integer
and a list of strings, takes a faster path that produces the same bytes (a test cross-checks them).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
from typing import Any

import rfc8785

from logline.errors import InvalidInput, ParseError

MAX_SAFE_INTEGER = 2**53 - 1
MAX_DEPTH = 32


def canonicalize(value: Any) -> bytes:
    """Return the RFC 8785 canonical UTF-8 bytes of a JSON value that reads back as itself."""
    if _check(value, 0):
        return canonicalize_simple(value)
    return jcs(value)


def jcs(value: Any) -> bytes:
    """Plain RFC 8785 serialization, without LogLine's round-trip checks (for test vectors)."""
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, ValueError, TypeError) as exc:
        raise InvalidInput(f"not canonicalizable JSON: {exc}") from exc


def canonicalize_simple(value: Any) -> bytes:
    """JCS bytes of a value whose object keys are ASCII and which holds no floats.

    For such values, sorted-key `json.dumps` without whitespace and without ASCII escaping emits
    exactly the JCS serialization (JCS sorts keys by UTF-16 code units, which for ASCII is the
    code point order Python uses), and it is several times faster than the general path.
    """
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _check(value: Any, depth: int) -> bool:
    """Refuse what JCS can't represent; return True if the simple path gives the JCS bytes."""
    if depth > MAX_DEPTH:
        raise InvalidInput(f"JSON nested deeper than {MAX_DEPTH} levels")
    kind = type(value)
    if kind is str:
        _check_str(value)
        return True
    if kind is int:
        if abs(value) > MAX_SAFE_INTEGER:
            raise InvalidInput(f"integer {value} is outside the JSON safe range ±(2**53-1)")
        return True
    if value is None or kind is bool:
        return True
    if kind is dict:
        simple = True
        for key, item in value.items():
            if type(key) is not str:
                raise InvalidInput(f"object key {key!r} is not a string")
            _check_str(key)
            simple = _check(item, depth + 1) and simple and key.isascii()
        return simple
    if kind is list or kind is tuple:
        simple = True
        for item in value:
            simple = _check(item, depth + 1) and simple
        return simple
    if kind is float:
        if not math.isfinite(value):
            raise InvalidInput("NaN and infinity are not JSON numbers")
        if MAX_SAFE_INTEGER < abs(value) < 1e21:
            # JCS writes these doubles with integer digits (2**60 → 1152921504606846976), which
            # a reader takes for an integer outside the safe range: they would not read back.
            raise InvalidInput(f"number {value!r} would be written as an integer beyond ±(2**53-1)")
        return False
    raise InvalidInput(f"{kind.__name__} is not a JSON value")


def _check_str(text: str) -> None:
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidInput("string holds a lone surrogate, which is not valid UTF-8") from exc


def loads(data: bytes | str) -> Any:
    """Parse JSON strictly: duplicate keys, NaN and infinities are refused."""

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, item in pairs:
            if key in result:
                raise ParseError(f"duplicate JSON key {key!r}")
            result[key] = item
        return result

    def no_constants(name: str) -> Any:
        raise ParseError(f"{name} is not valid JSON")

    def finite_float(text: str) -> float:
        value = float(text)
        if not math.isfinite(value):
            raise ParseError(f"number {text[:40]} is out of range")
        return value

    try:
        return json.loads(
            data,
            object_pairs_hook=no_duplicates,
            parse_constant=no_constants,
            parse_float=finite_float,
        )
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ParseError(f"invalid JSON: {exc}") from exc


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def b64encode(data: bytes) -> str:
    """Standard base64 with padding (RFC 4648 §4), as the signed-note format uses."""
    return base64.b64encode(data).decode("ascii")


def b64decode(text: str, *, what: str = "base64 value") -> bytes:
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError, AttributeError) as exc:
        raise ParseError(f"{what} is not valid base64") from exc
    # Refuse non-canonical encodings (stray padding bits), so that one value has one text form.
    if base64.b64encode(raw).decode("ascii") != text:
        raise ParseError(f"{what} is not canonical base64")
    return raw


def hex_decode(text: str, *, what: str = "hex value", size: int | None = None) -> bytes:
    try:
        raw = bytes.fromhex(text)
    except (ValueError, TypeError) as exc:
        raise ParseError(f"{what} is not valid hex") from exc
    if size is not None and len(raw) != size:
        raise ParseError(f"{what} must be {size} bytes, got {len(raw)}")
    if raw.hex() != text:
        raise ParseError(f"{what} must be lowercase hex")
    return raw
