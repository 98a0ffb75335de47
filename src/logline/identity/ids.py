"""LogLine IDs (`logline-id://<kind>/<handle>`), span kinds, tags, tenant names and UUIDv7.

>>> LogLineId.parse("logline-id://person/alice").kind
'person'
>>> check_kind("payment.approved")
'payment.approved'
"""

from __future__ import annotations

import os
import re
import threading
import time
import uuid
from dataclasses import dataclass

from logline.errors import InvalidIdentifier

ID_KINDS = ("person", "service", "node", "agent", "org", "app", "ghost")
_HANDLE = re.compile(r"[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?")
_KIND = re.compile(r"[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)+")
_TAG = re.compile(r"[a-z0-9][a-z0-9:._/=-]{0,63}")
_TENANT = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,46}[a-z0-9])?")
_UUID7 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
MAX_KIND_LENGTH = 128
PREFIX = "logline-id://"


@dataclass(frozen=True, slots=True)
class LogLineId:
    kind: str
    handle: str

    @classmethod
    def parse(cls, text: str) -> LogLineId:
        if not isinstance(text, str) or not text.startswith(PREFIX):
            raise InvalidIdentifier(f"a LogLine ID starts with {PREFIX}, got {str(text)[:80]!r}")
        kind, sep, handle = text[len(PREFIX) :].partition("/")
        if not sep:
            raise InvalidIdentifier(f"a LogLine ID is {PREFIX}<kind>/<handle>, got {text[:80]!r}")
        return cls.of(kind, handle)

    @classmethod
    def of(cls, kind: str, handle: str) -> LogLineId:
        if kind not in ID_KINDS:
            raise InvalidIdentifier(
                f"identity kind must be one of {', '.join(ID_KINDS)}, got {kind!r}"
            )
        if not _HANDLE.fullmatch(handle):
            raise InvalidIdentifier(
                "handle must be 1-64 characters of a-z, 0-9, '.', '_', '-', starting and ending "
                f"with a letter or digit, got {handle[:80]!r}"
            )
        return cls(kind, handle)

    def __str__(self) -> str:
        return f"{PREFIX}{self.kind}/{self.handle}"


def check_kind(kind: str) -> str:
    """A span kind: two or more dot-separated lowercase segments, at most 128 characters."""
    if not isinstance(kind, str) or len(kind) > MAX_KIND_LENGTH or not _KIND.fullmatch(kind):
        raise InvalidIdentifier(
            "kind must be dotted lowercase segments like 'payment.approved' (each segment a "
            f"letter then letters, digits or '_'; at most {MAX_KIND_LENGTH} characters), "
            f"got {str(kind)[:80]!r}"
        )
    return kind


def check_tag(tag: str) -> str:
    if not isinstance(tag, str) or not _TAG.fullmatch(tag):
        raise InvalidIdentifier(
            "a tag is 1-64 characters of a-z, 0-9 and ':._/=-', starting with a letter or digit, "
            f"got {str(tag)[:80]!r}"
        )
    return tag


def check_tenant(name: str) -> str:
    if not isinstance(name, str) or not _TENANT.fullmatch(name):
        raise InvalidIdentifier(
            "a tenant name is 1-48 characters of a-z, 0-9 and '-', "
            "not starting or ending with '-', "
            f"got {str(name)[:80]!r}"
        )
    return name


def check_uuid7(text: str) -> str:
    if not isinstance(text, str) or not _UUID7.fullmatch(text):
        raise InvalidIdentifier(f"expected a lowercase UUIDv7, got {str(text)[:80]!r}")
    return text


_lock = threading.Lock()
_last = (0, 0)


def uuid7() -> str:
    """A UUIDv7 (RFC 9562 §5.7), monotonic within this process.

    The 12-bit `rand_a` field carries a counter within each millisecond (RFC 9562 §6.2, method 1);
    if it overflows, the timestamp is advanced by one millisecond.
    """
    global _last
    with _lock:
        ms = time.time_ns() // 1_000_000
        last_ms, counter = _last
        if ms <= last_ms:
            ms, counter = last_ms, counter + 1
            if counter > 0xFFF:
                ms, counter = ms + 1, 0
        else:
            counter = int.from_bytes(os.urandom(2), "big") & 0x3FF
        _last = (ms, counter)
    rand_b = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    value = (ms << 80) | (0x7 << 76) | (counter << 64) | (0b10 << 62) | rand_b
    return str(uuid.UUID(int=value))
