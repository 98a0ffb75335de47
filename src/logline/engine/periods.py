"""When a schedule's periods start: a cron expression read on a time zone's wall clock, or a
fixed interval from an anchor. Pure functions of their arguments.

    timing = Timing.of(cron="0 9 * * mon-fri", timezone="Europe/Berlin")
    timing.next_after(moment, anchor)        # the first period that starts after `moment`
    timing.due(first, now, anchor)           # → Due(period, missed, next)

Cron has five fields (minute, hour, day of month, month, day of week; `@hourly`, `@daily`, ... too)
read on the wall clock of `timezone`, an IANA name. Where daylight saving time moves that clock, a
wall time that occurs twice starts a period once, at its first occurrence, and a wall time the
clock skips starts one at the moment of the jump: `30 2 * * *` in Europe/Berlin runs at 03:00 CEST
on the day the clocks go from 02:00 to 03:00. An interval ignores wall clocks: its periods start
at `anchor + k * interval_s`, k = 1, 2, ...

`due` folds every period that started since `first` into one run, of the latest of them; the
others are counted as `missed`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter

from logline.errors import InvalidInput

MIN_INTERVAL_S = 1.0
MAX_INTERVAL_S = 366 * 86_400.0
MAX_CRON_CHARS = 200
MAX_TIMEZONE_CHARS = 64
MAX_COUNTED = 1000  # missed cron periods are counted up to this many (a short hold of the log lock)
_SHIFT = timedelta(hours=3)  # longer than any daylight saving jump
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class Due:
    period: datetime  # the period that runs now: the latest that has started
    missed: int  # earlier periods folded into this run
    next: datetime  # the first period that starts after now


@dataclass(frozen=True, slots=True)
class Timing:
    """A cron expression in a time zone, or an interval; build it with `of`, which validates."""

    cron: str | None
    interval_s: float | None
    timezone: str

    @classmethod
    def of(
        cls, *, cron: object = None, interval_s: object = None, timezone: object = "UTC"
    ) -> Timing:
        if (cron is None) == (interval_s is None):
            raise InvalidInput("a schedule needs either a cron expression or an interval, not both")
        zone(timezone)
        if cron is not None:
            timing = cls(check_cron(cron), None, str(timezone))
            timing.next_after(datetime.now(UTC), _EPOCH)  # refuses expressions no date matches
            return timing
        return cls(None, check_interval(interval_s), str(timezone))

    def next_after(self, moment: datetime, anchor: datetime) -> datetime:
        """The start of the first period after `moment` (intervals count from `anchor`)."""
        if self.cron is None:
            step, start = self._step_us(), _us(anchor)
            k = max(1, (_us(moment) - start) // step + 1)
            return _at(start + k * step)
        return next(self._instants(moment))

    def due(self, first: datetime, now: datetime, anchor: datetime) -> Due:
        """The run at `now` of a schedule whose next period was `first` (at or before `now`)."""
        if self.cron is None:
            step, start = self._step_us(), _us(anchor)
            last = (_us(now) - start) // step
            earliest = -((start - _us(first)) // step)  # ceil((first - anchor) / step)
            latest = start + last * step
            return Due(_at(latest), max(0, last - earliest), _at(latest + step))
        period, missed = first, -1
        for moment in self._instants(first - _US):
            if moment > now:
                return Due(period, max(0, missed), moment)
            period, missed = moment, missed + 1
            if missed >= MAX_COUNTED:
                break
        period = self._latest(now)  # too many to count one by one
        return Due(period, missed, self.next_after(period, anchor))

    def describe(self) -> str:
        if self.cron is None:
            return f"every {self.interval_s:g} s"
        return f"cron {self.cron!r} in {self.timezone}"

    def _step_us(self) -> int:
        assert self.interval_s is not None
        return max(1, round(self.interval_s * 1_000_000))

    def _instants(self, after: datetime) -> Iterator[datetime]:
        """Period starts after `after`, in order. The walk starts a few hours early on the wall
        clock, where a clock set back shows earlier times than before, and skips what is past."""
        assert self.cron is not None
        tz = zone(self.timezone)
        walk = _cron(self.cron, _wall(after, tz) - _SHIFT)
        last = after
        while True:
            moment = _instant(_step(walk, self.cron, forward=True), tz)
            if moment > last:
                last = moment
                yield moment

    def _latest(self, now: datetime) -> datetime:
        """The start of the latest period at or before `now`."""
        assert self.cron is not None
        tz = zone(self.timezone)
        walk = _cron(self.cron, _wall(now, tz) + _SHIFT)
        while True:
            moment = _instant(_step(walk, self.cron, forward=False), tz)
            if moment <= now:
                return moment


def check_cron(cron: object) -> str:
    if not isinstance(cron, str) or not cron.strip():
        raise InvalidInput("cron must be an expression like '*/5 * * * *'")
    cron = " ".join(cron.split())
    if len(cron) > MAX_CRON_CHARS:
        raise InvalidInput(f"cron must be at most {MAX_CRON_CHARS} characters")
    fields = len(cron.split())
    if not cron.startswith("@") and fields != 5:
        raise InvalidInput(
            "cron must have 5 fields (minute hour day-of-month month day-of-week), "
            f"got {fields} in {cron!r}"
        )
    _cron(cron, datetime(2000, 1, 1))
    return cron


def check_interval(interval_s: object) -> float:
    if (
        isinstance(interval_s, bool)
        or not isinstance(interval_s, int | float)
        or not math.isfinite(interval_s)
    ):
        raise InvalidInput(f"interval_s must be a number of seconds, got {interval_s!r}")
    if not MIN_INTERVAL_S <= interval_s <= MAX_INTERVAL_S:
        raise InvalidInput(
            f"interval_s must be between {MIN_INTERVAL_S:g} and {MAX_INTERVAL_S:g} seconds "
            f"(366 days), got {interval_s:g}"
        )
    return float(interval_s)


def zone(name: object) -> ZoneInfo:
    """The IANA time zone `name`, or InvalidInput."""
    if not isinstance(name, str) or not 1 <= len(name) <= MAX_TIMEZONE_CHARS:
        raise InvalidInput(
            f"timezone must be an IANA time zone name like Europe/Berlin, not {name!r}"
        )
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(
            f"unknown time zone {name!r}: give an IANA name like Europe/Berlin or UTC"
        ) from None


def _cron(cron: str, start: datetime) -> croniter[datetime]:
    try:
        return croniter(cron, start, ret_type=datetime)
    except CroniterError as exc:
        raise InvalidInput(f"cron {cron!r} is not valid: {exc}") from None


def _step(walk: croniter[datetime], cron: str, *, forward: bool) -> datetime:
    try:
        return walk.get_next() if forward else walk.get_prev()
    except CroniterError:
        raise InvalidInput(f"cron {cron!r} matches no date") from None


def _wall(moment: datetime, tz: ZoneInfo) -> datetime:
    return moment.astimezone(tz).replace(tzinfo=None)


def _instant(wall: datetime, tz: ZoneInfo) -> datetime:
    """When the wall clock of `tz` shows `wall`: the first time if it does twice; if the clock
    skips it, the moment of the jump."""
    moment = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if _wall(moment, tz) == wall:
        return moment
    # Skipped. With fold=1 the offset after the jump applies, which puts `wall` before it; with
    # fold=0 the one before, which puts it after. The jump lies between: find its second.
    before = int(wall.replace(tzinfo=tz, fold=1).timestamp())
    after = int(moment.timestamp())
    while after - before > 1:
        middle = (before + after) // 2
        if _wall(datetime.fromtimestamp(middle, UTC), tz) < wall:
            before = middle
        else:
            after = middle
    return datetime.fromtimestamp(after, UTC)


def _us(moment: datetime) -> int:
    return (moment - _EPOCH) // _US


def _at(us: int) -> datetime:
    return _EPOCH + us * _US
