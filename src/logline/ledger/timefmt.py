"""RFC 3339 UTC timestamps with exactly six fractional digits: `2026-11-22T00:33:31.123456Z`.

This one fixed-width form sorts lexicographically in time order, so it is stored as text.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from logline.errors import InvalidInput

_TS = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")


def format_ts(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise InvalidInput("timestamps must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def now_ts() -> str:
    return format_ts(datetime.now(UTC))


def parse_ts(text: str) -> datetime:
    """Parse the one accepted form; anything else is `InvalidInput`."""
    if not isinstance(text, str) or not _TS.fullmatch(text):
        raise InvalidInput(
            f"timestamp must be RFC 3339 UTC with microseconds, like 2026-11-22T00:33:31.123456Z, "
            f"got {str(text)[:40]!r}"
        )
    try:
        return datetime.fromisoformat(text)
    except ValueError as exc:
        raise InvalidInput(f"timestamp {text!r} is not a real date and time") from exc


def parse_duration(text: str) -> timedelta:
    """`90s`, `15m`, `12h`, `7d` → timedelta (for CLI options such as ghost expiry)."""
    match = re.fullmatch(r"(\d+)([smhd])", text.strip())
    if not match:
        raise InvalidInput(f"duration must look like 90s, 15m, 12h or 7d, got {text!r}")
    unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[match.group(2)]
    return timedelta(**{unit: int(match.group(1))})
