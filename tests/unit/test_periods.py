"""Schedule periods: cron on a time zone's wall clock through daylight saving jumps, intervals
from their anchor, missed periods counted, and every bad timing refused with its reason."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from logline.engine.periods import MAX_COUNTED, Due, Timing
from logline.errors import InvalidInput

ANCHOR = datetime(2026, 1, 1, tzinfo=UTC)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def starts(timing: Timing, after: str, n: int) -> list[str]:
    moment, out = utc(after), []
    for _ in range(n):
        moment = timing.next_after(moment, ANCHOR)
        out.append(moment.strftime("%m-%d %H:%M"))
    return out


def test_cron_follows_the_wall_clock_across_daylight_saving() -> None:
    berlin = Timing.of(cron="0 9 * * *", timezone="Europe/Berlin")
    # CET (UTC+1) until 2026-03-29 01:00 UTC, then CEST (UTC+2); back on 2026-10-25.
    assert starts(berlin, "2026-03-27 12:00", 3) == ["03-28 08:00", "03-29 07:00", "03-30 07:00"]
    assert starts(berlin, "2026-10-23 12:00", 3) == ["10-24 07:00", "10-25 08:00", "10-26 08:00"]
    utc_cron = Timing.of(cron="0 9 * * *")
    assert starts(utc_cron, "2026-03-27 12:00", 2) == ["03-28 09:00", "03-29 09:00"]


def test_skipped_wall_times_run_at_the_jump_and_repeated_ones_once() -> None:
    daily = Timing.of(cron="30 2 * * *", timezone="Europe/Berlin")
    # 02:30 does not exist on 03-29 (02:00 → 03:00): it runs at the jump, 01:00 UTC.
    assert starts(daily, "2026-03-28 12:00", 2) == ["03-29 01:00", "03-30 00:30"]
    # 02:30 happens twice on 10-25: it runs at the first, 00:30 UTC (CEST).
    assert starts(daily, "2026-10-24 12:00", 2) == ["10-25 00:30", "10-26 01:30"]
    half_hourly = Timing.of(cron="*/30 * * * *", timezone="Europe/Berlin")
    assert starts(half_hourly, "2026-03-28 23:50", 6) == [
        "03-29 00:00", "03-29 00:30", "03-29 01:00", "03-29 01:30", "03-29 02:00", "03-29 02:30",
    ]  # fmt: skip
    # The hour shown twice (02:00-02:59) runs its wall times once: 00:00, 00:30 UTC.
    assert starts(half_hourly, "2026-10-24 23:50", 4) == [
        "10-25 00:00", "10-25 00:30", "10-25 02:00", "10-25 02:30",
    ]  # fmt: skip
    # From inside the repeated hour, nothing already run runs again.
    assert starts(half_hourly, "2026-10-25 01:10", 1) == ["10-25 02:00"]


def test_a_half_hour_jump() -> None:
    lord_howe = Timing.of(cron="15 2 * * *", timezone="Australia/Lord_Howe")
    # Clocks go from 02:00 to 02:30 on 2026-10-04 (UTC+10:30 → +11): 02:15 runs at 02:30.
    [first] = starts(lord_howe, "2026-10-03 00:00", 1)
    assert first == "10-03 15:30"


def test_intervals_count_from_their_anchor() -> None:
    every = Timing.of(interval_s=90)
    assert every.next_after(ANCHOR, ANCHOR) == ANCHOR + timedelta(seconds=90)
    assert every.next_after(ANCHOR + timedelta(seconds=100), ANCHOR) == ANCHOR + timedelta(
        seconds=180
    )
    assert every.next_after(ANCHOR - timedelta(days=1), ANCHOR) == ANCHOR + timedelta(seconds=90)
    fraction = Timing.of(interval_s=1.5, timezone="Asia/Tokyo")  # time zones do not matter
    assert fraction.next_after(ANCHOR + timedelta(seconds=3), ANCHOR) == ANCHOR + timedelta(
        seconds=4.5
    )


def test_due_runs_the_latest_period_and_counts_the_rest() -> None:
    every = Timing.of(interval_s=10)
    first = ANCHOR + timedelta(seconds=10)
    assert every.due(first, first, ANCHOR) == Due(first, 0, first + timedelta(seconds=10))
    assert every.due(first, ANCHOR + timedelta(seconds=65), ANCHOR) == Due(
        ANCHOR + timedelta(seconds=60), 5, ANCHOR + timedelta(seconds=70)
    )
    cron = Timing.of(cron="*/5 * * * *")
    assert cron.due(utc("2026-06-01 12:05"), utc("2026-06-01 13:01"), ANCHOR) == Due(
        utc("2026-06-01 13:00"), 11, utc("2026-06-01 13:05")
    )
    minutely = Timing.of(cron="* * * * *")
    # Too many to count one by one: the latest still runs, and the next is after now.
    assert minutely.due(utc("2026-06-01 00:00"), utc("2026-06-03 07:30:10"), ANCHOR) == Due(
        utc("2026-06-03 07:30"), MAX_COUNTED, utc("2026-06-03 07:31")
    )


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"cron": "* * * *"}, "5 fields"),
        ({"cron": "0 0 1 1 * 2030"}, "5 fields"),
        ({"cron": "*/0 * * * *"}, "not valid"),
        ({"cron": "1-100 * * * *"}, "not valid"),
        ({"cron": "0 0 * * funday"}, "not valid"),
        ({"cron": "0 0 30 2 *"}, "matches no date"),
        ({"cron": "x" * 201}, "at most 200"),
        ({"cron": 5}, "expression"),
        ({"cron": "* * * * *", "timezone": "Europe/Atlantis"}, "unknown time zone"),
        ({"cron": "* * * * *", "timezone": ""}, "IANA"),
        ({"cron": "* * * * *", "timezone": "/etc/localtime"}, "unknown time zone"),
        ({"interval_s": 0.999}, "between 1 and"),
        ({"interval_s": 400 * 86_400}, "between 1 and"),
        ({"interval_s": float("inf")}, "number of seconds"),
        ({"interval_s": "60"}, "number of seconds"),
        ({"interval_s": 60, "cron": "* * * * *"}, "not both"),
        ({}, "needs either"),
    ],
)
def test_bad_timings_are_refused_with_their_reason(fields: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        Timing.of(**fields)
