"""Schedules, the same on SQLite and PostgreSQL: interval and cron periods in a time zone,
coalesced missed periods, pause and resume, changes as signed spans, validation, and exactly one
job per period however many schedulers fire at once."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from helpers import INSTANCE, OTHER_TENANT, TENANT, Clock, make_identity
from logline.engine.jobs import PRIORITIES, Job
from logline.engine.queue import JobQueue
from logline.engine.schedules import Schedules
from logline.errors import Conflict, InvalidInput, NotFound
from logline.identity.keys import PrivateKey
from logline.ledger.log import Log
from logline.ledger.timefmt import format_ts, parse_ts
from logline.store import open_store
from logline.store.interface import Query, Store

OPERATOR = "logline-id://person/operator"
NODE = "logline-id://node/worker-1"
JOB = {"type": "report.render", "payload": {"month": "current"}}
Engine = tuple[str, PrivateKey]


@pytest.fixture
def engine(clocked_log: Log) -> Engine:
    author, key = make_identity(clocked_log, TENANT, "engine", kind="service")
    return author, key


@pytest.fixture
def queue(clocked_log: Log, clock: Clock, engine: Engine) -> JobQueue:
    author, key = engine
    return JobQueue(clocked_log, author=author, key=key, clock=clock, rng=random.Random(7))


@pytest.fixture
def schedules(queue: JobQueue) -> Schedules:
    return Schedules(queue)


def _spans(store: Store, **filters: Any) -> list[Any]:
    return [s.span for s in store.query(Query(TENANT, limit=1000, **filters)).items]


def _queued(store: Store, schedule_id: str) -> list[dict[str, Any]]:
    """The payloads of the `job.queued` spans of a schedule's jobs, in log order."""
    spans = _spans(store, kind="job.queued")
    return [s.payload for s in spans if s.payload.get("schedule") == schedule_id]


def _at(clock: Clock, when: datetime) -> None:
    clock.now = when


def test_an_interval_queues_one_job_per_period(
    schedules: Schedules, queue: JobQueue, store: Store, clock: Clock
) -> None:
    t0 = clock()
    woken: list[int] = []
    queue.listeners.append(lambda: woken.append(1))
    job = {**JOB, "priority": "high", "tags": ["b", "a"]}
    made = schedules.create(TENANT, "tick", interval_s=60, job=job, by=OPERATOR)
    assert made.next_run_at == format_ts(t0 + timedelta(seconds=60))
    assert made.job["tags"] == ["a", "b"] and made.job["max_attempts"] == 3  # filled in
    assert schedules.fire_due() == []
    clock.advance(59.999)
    assert schedules.fire_due() == [] and woken == []
    clock.advance(0.001)
    [fired] = schedules.fire_due()
    period = format_ts(t0 + timedelta(seconds=60))
    assert (fired.type, fired.payload, fired.priority, fired.tags) == (
        "report.render",
        {"month": "current"},
        PRIORITIES["high"],
        ("a", "b"),
    )
    assert fired.dedupe_key == f"schedule:{made.id}:{period}" and woken == [1]
    assert schedules.fire_due() == []  # the period has run
    now = schedules.get(TENANT, "tick")
    assert (now.next_run_at, now.last_run_at, now.last_job_id) == (
        format_ts(t0 + timedelta(seconds=120)),
        clock.ts(),
        fired.id,
    )
    [queued] = _spans(store, flow_id=fired.id)
    assert queued.kind == "job.queued" and queued.body["caused_by"] == made.span_id
    assert {k: queued.payload[k] for k in ("schedule", "period", "missed")} == {
        "schedule": made.id,
        "period": period,
        "missed": 0,
    }
    clock.advance(60)
    [second] = schedules.fire_due()
    assert second.dedupe_key == f"schedule:{made.id}:{format_ts(t0 + timedelta(seconds=120))}"
    # The jobs are ordinary jobs.
    assert [j.id for j in queue.claim(NODE, ["default"], limit=5)] == [fired.id, second.id]


def test_cron_is_read_on_the_schedules_wall_clock(
    schedules: Schedules, store: Store, clock: Clock
) -> None:
    # Friday 2026-03-27, 12:00 UTC. Berlin moves from UTC+1 to UTC+2 on Sunday at 01:00 UTC;
    # New York is on UTC-4 already.
    _at(clock, datetime(2026, 3, 27, 12, tzinfo=UTC))
    berlin = schedules.create(
        TENANT, "berlin", cron="0 9 * * *", timezone="Europe/Berlin", job=JOB, by=OPERATOR
    )
    new_york = schedules.create(
        TENANT, "new-york", cron="0 9 * * *", timezone="America/New_York", job=JOB, by=OPERATOR
    )
    assert new_york.next_run_at == "2026-03-27T13:00:00.000000Z"
    assert berlin.next_run_at == "2026-03-28T08:00:00.000000Z"
    ran: list[str] = []
    for moment in ("2026-03-27T13:00:00.000000Z", "2026-03-28T08:00:00.000000Z",
                   "2026-03-28T13:00:00.000000Z", "2026-03-29T07:00:00.000000Z"):  # fmt: skip
        _at(clock, parse_ts(moment))
        [job] = schedules.fire_due()
        ran.append(str(job.dedupe_key).split(":")[1])  # schedule:<id>:<period>
    assert ran == [new_york.id, berlin.id, new_york.id, berlin.id]
    assert schedules.get(TENANT, "berlin").next_run_at == "2026-03-30T07:00:00.000000Z"
    # A wall time the clock skips runs at the jump; one it shows twice runs once.
    _at(clock, datetime(2026, 3, 28, 12, tzinfo=UTC))
    skipped = schedules.create(
        TENANT, "skipped", cron="30 2 * * *", timezone="Europe/Berlin", job=JOB, by=OPERATOR
    )
    assert skipped.next_run_at == "2026-03-29T01:00:00.000000Z"  # 03:00 CEST, the jump
    _at(clock, datetime(2026, 10, 24, 12, tzinfo=UTC))
    twice = schedules.update(TENANT, "skipped", cron="30 2 * * *", timezone="UTC", by=OPERATOR)
    assert twice.next_run_at == "2026-10-25T02:30:00.000000Z"
    twice = schedules.update(TENANT, "skipped", timezone="Europe/Berlin", by=OPERATOR)
    assert twice.next_run_at == "2026-10-25T00:30:00.000000Z"  # 02:30 CEST, the first
    _at(clock, parse_ts(twice.next_run_at))
    schedules.fire_due()
    assert schedules.get(TENANT, "skipped").next_run_at == "2026-10-26T01:30:00.000000Z"


def test_missed_periods_coalesce_into_one_run(
    schedules: Schedules, store: Store, clock: Clock
) -> None:
    t0 = clock()
    every = schedules.create(TENANT, "every-10s", interval_s=10, job=JOB, by=OPERATOR)
    clock.advance(65)  # periods at 10, 20, ... 60 s: the scheduler was down for all six
    [job] = schedules.fire_due()
    assert job.dedupe_key == f"schedule:{every.id}:{format_ts(t0 + timedelta(seconds=60))}"
    assert _queued(store, every.id)[0]["missed"] == 5
    assert schedules.get(TENANT, every.id).next_run_at == format_ts(t0 + timedelta(seconds=70))
    assert schedules.fire_due() == []
    _at(clock, datetime(2026, 6, 1, 12, 2, 30, tzinfo=UTC))
    cron = schedules.create(TENANT, "five-minutes", cron="*/5 * * * *", job=JOB, by=OPERATOR)
    assert cron.next_run_at == "2026-06-01T12:05:00.000000Z"
    _at(clock, datetime(2026, 6, 1, 13, 1, tzinfo=UTC))
    [job] = [j for j in schedules.fire_due() if j.dedupe_key and cron.id in j.dedupe_key]
    [payload] = _queued(store, cron.id)
    assert (payload["period"], payload["missed"]) == ("2026-06-01T13:00:00.000000Z", 11)
    assert schedules.get(TENANT, cron.id).next_run_at == "2026-06-01T13:05:00.000000Z"


def test_paused_schedules_skip_their_periods(
    schedules: Schedules, store: Store, clock: Clock
) -> None:
    t0 = clock()
    made = schedules.create(TENANT, "report", interval_s=60, job=JOB, by=OPERATOR)
    paused = schedules.update(TENANT, "report", enabled=False, by=OPERATOR)
    assert not paused.enabled
    clock.advance(300)
    assert schedules.fire_due() == []
    resumed = schedules.update(TENANT, made.id, enabled=True, by=OPERATOR)
    # The next period after now, on the grid anchored at creation; none is made up for.
    assert resumed.next_run_at == format_ts(t0 + timedelta(seconds=360))
    assert schedules.fire_due() == []
    size = store.log_head(TENANT)
    assert schedules.update(TENANT, "report", enabled=True, by=OPERATOR) == resumed  # no change
    assert store.log_head(TENANT) == size
    clock.advance(60)
    [job] = schedules.fire_due()
    history = _spans(store, flow_id=made.id)
    assert [s.kind for s in history] == ["schedule.created", "schedule.paused", "schedule.resumed"]
    assert [s.body["caused_by"] for s in history] == [None, history[0].id, history[1].id]
    assert history[1].payload == {
        "schedule": made.id,
        "enabled": False,
        "next_run_at": made.next_run_at,
        "by": OPERATOR,
    }
    [queued] = _spans(store, flow_id=job.id)
    assert queued.body["caused_by"] == resumed.span_id == history[2].id


def test_changes_are_signed_spans_and_delete_keeps_jobs(
    schedules: Schedules, queue: JobQueue, store: Store, clock: Clock
) -> None:
    t0 = clock()
    made = schedules.create(TENANT, "hourly", cron="0 * * * *", job=JOB, by=OPERATOR)
    created = _spans(store, flow_id=made.id)[0]
    assert created.author == queue.author and created.body["tags"] == ["schedule"]
    assert created.payload == {
        "schedule": made.id, "name": "hourly", "cron": "0 * * * *", "interval_s": None,
        "timezone": "UTC", "job": made.job, "enabled": True, "next_run_at": made.next_run_at,
        "by": OPERATOR,
    }  # fmt: skip
    clock.advance(15)
    retimed = schedules.update(TENANT, "hourly", interval_s=30, by=OPERATOR)
    assert (retimed.cron, retimed.interval_s) == (None, 30.0)
    assert retimed.next_run_at == format_ts(t0 + timedelta(seconds=30))  # anchored at creation
    rejobbed = schedules.update(TENANT, "hourly", job={"type": "other.task"}, by=OPERATOR)
    assert rejobbed.next_run_at == retimed.next_run_at and rejobbed.job["type"] == "other.task"
    kinds = [(s.kind, s.payload.get("changed")) for s in _spans(store, flow_id=made.id)]
    assert kinds == [
        ("schedule.created", None),
        ("schedule.updated", ["cron", "interval_s"]),
        ("schedule.updated", ["job"]),
    ]
    clock.advance(15)
    [job] = schedules.fire_due()
    assert job.type == "other.task"
    deleted = schedules.delete(TENANT, "hourly", by=OPERATOR)
    assert deleted.id == made.id
    with pytest.raises(NotFound):
        schedules.get(TENANT, made.id)
    with pytest.raises(NotFound):
        schedules.delete(TENANT, "hourly", by=OPERATOR)
    clock.advance(3600)
    assert schedules.fire_due() == []
    assert queue.get(TENANT, job.id).state == "queued"  # its jobs stay
    last = _spans(store, flow_id=made.id)[-1]
    assert (last.kind, last.payload) == (
        "schedule.deleted",
        {"schedule": made.id, "name": "hourly", "by": OPERATOR},
    )


def test_listing_and_names(schedules: Schedules) -> None:
    for name in ("c-report", "a-report", "b-report"):
        schedules.create(TENANT, name, interval_s=3600, job=JOB, by=OPERATOR)
    schedules.create(OTHER_TENANT, "z-report", interval_s=3600, job=JOB, by=OPERATOR)
    assert [s.name for s in schedules.list(TENANT)] == ["a-report", "b-report", "c-report"]
    assert [s.name for s in schedules.list(TENANT, limit=2, after="a-report")] == [
        "b-report",
        "c-report",
    ]
    with pytest.raises(NotFound):
        schedules.get(TENANT, "z-report")
    with pytest.raises(Conflict, match="already has a schedule named a-report"):
        schedules.create(TENANT, "a-report", interval_s=60, job=JOB, by=OPERATOR)
    with pytest.raises(InvalidInput):
        schedules.list(TENANT, limit=0)


BAD_CREATES: list[tuple[dict[str, Any], str]] = [
    ({"cron": "* * * *"}, "5 fields"),
    ({"cron": "* * * * * *"}, "5 fields"),
    ({"cron": "61 * * * *"}, "not valid"),
    ({"cron": "0 0 31 2 *"}, "matches no date"),
    ({"cron": "@reboot"}, "not valid"),
    ({"cron": "* * * * *", "timezone": "Mars/Olympus_Mons"}, "unknown time zone"),
    ({"cron": "* * * * *", "timezone": "../../etc/passwd"}, "unknown time zone"),
    ({"interval_s": 0.5}, "between 1"),
    ({"interval_s": float("nan")}, "number of seconds"),
    ({"interval_s": True}, "number of seconds"),
    ({"interval_s": 60, "cron": "* * * * *"}, "not both"),
    ({}, "either a cron expression or an interval"),
    ({"interval_s": 60, "name": "Bad Name"}, "schedule name"),
    ({"interval_s": 60, "name": "0192b5a4-7e2c-7cc1-9a3c-4b1d2e3f4a5b"}, "look like"),
    ({"interval_s": 60, "job": []}, "must be an object"),
    ({"interval_s": 60, "job": {"payload": 1}}, "type is required"),
    ({"interval_s": 60, "job": {"type": "Bad Type"}}, "job: kind"),
    ({"interval_s": 60, "job": {**JOB, "colour": "red"}}, "unknown field"),
    ({"interval_s": 60, "job": {**JOB, "run_at": "2026-01-01T00:00:00Z"}}, "run_at"),
    ({"interval_s": 60, "job": {**JOB, "dedupe_key": "k"}}, "dedupe_key"),
    ({"interval_s": 60, "job": {**JOB, "max_attempts": "3"}}, "max_attempts must be an integer"),
    ({"interval_s": 60, "job": {**JOB, "timeout_s": True}}, "timeout_s must be"),
    ({"interval_s": 60, "job": {**JOB, "queue": "UPPER"}}, "job: queue"),
    ({"interval_s": 60, "job": {**JOB, "tags": ["Bad Tag"]}}, "job: a tag"),
    ({"interval_s": 60, "job": {**JOB, "payload": "x" * 70_000}}, "job: payload"),
    ({"interval_s": 60, "job": {"type": "typed.job", "payload": {"n": "one"}}}, "schema"),
]


@pytest.mark.parametrize(("fields", "message"), BAD_CREATES, ids=[m for _, m in BAD_CREATES])
def test_bad_schedules_change_nothing(
    schedules: Schedules, queue: JobQueue, store: Store, fields: dict[str, Any], message: str
) -> None:
    queue.register_type(TENANT, "typed.job", {"properties": {"n": {"type": "integer"}}}, "op")
    size = store.log_head(TENANT)
    args: dict[str, Any] = {"name": "bad", "job": JOB, **fields}
    with pytest.raises(InvalidInput, match=message):
        schedules.create(TENANT, args.pop("name"), by=OPERATOR, **args)
    assert store.log_head(TENANT) == size and schedules.list(TENANT) == []


BAD_UPDATES: list[tuple[dict[str, Any], str]] = [
    ({"cron": "nonsense"}, "5 fields"),
    ({"cron": "0 0 30 2 *"}, "matches no date"),
    ({"interval_s": 0}, "between 1"),
    ({"cron": "* * * * *", "interval_s": 60}, "not both"),
    ({"timezone": "Nowhere/Special"}, "unknown time zone"),
    ({"job": {"type": "a.b", "run_at": None}}, "run_at"),
]


@pytest.mark.parametrize(("fields", "message"), BAD_UPDATES, ids=[m for _, m in BAD_UPDATES])
def test_bad_changes_change_nothing(
    schedules: Schedules, store: Store, fields: dict[str, Any], message: str
) -> None:
    made = schedules.create(TENANT, "steady", interval_s=60, job=JOB, by=OPERATOR)
    size = store.log_head(TENANT)
    with pytest.raises(InvalidInput, match=message):
        schedules.update(TENANT, "steady", by=OPERATOR, **fields)
    with pytest.raises(NotFound):
        schedules.update(TENANT, "missing", enabled=False, by=OPERATOR)
    assert store.log_head(TENANT) == size and schedules.get(TENANT, "steady") == made


# --- exactly once ---------------------------------------------------------------------------------

THREADS = 6
ROUNDS = 15


def _check_each_period_once(
    store: Store, jobs: list[Job], made: dict[str, Any], t0: datetime, rounds: list[datetime]
) -> None:
    """One job per round in which a period started, for the latest such period, with the ones
    before it since the previous run counted as missed; no dedupe key twice."""
    keys = [job.dedupe_key for job in jobs]
    assert len(keys) == len(set(keys))
    for schedule in made.values():
        step = timedelta(seconds=schedule.interval_s)
        expected = []
        ran = 0  # periods accounted for
        for moment in rounds:
            started = (moment - t0) // step
            if started > ran:
                expected.append((format_ts(t0 + started * step), started - ran - 1))
                ran = started
        got = [(p["period"], p["missed"]) for p in _queued(store, schedule.id)]
        assert got == expected, schedule.name


def _fire_concurrently(
    fire: Sequence[Callable[[], list[Job]]], clock: Clock
) -> tuple[list[Job], list[datetime]]:
    """Rounds in which every scheduler fires at once, the clock moved on between rounds."""
    rng = random.Random(11)
    jobs: list[Job] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    rounds = []

    def run(fire_due: Callable[[], list[Job]], barrier: threading.Barrier) -> None:
        try:
            barrier.wait()
            got = fire_due()
            with lock:
                jobs.extend(got)
        except BaseException as exc:  # reported in the test's thread
            errors.append(exc)

    for _ in range(ROUNDS):
        clock.advance(rng.uniform(0.2, 4.0))
        rounds.append(clock())
        barrier = threading.Barrier(len(fire))
        threads = [threading.Thread(target=run, args=(f, barrier)) for f in fire]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
    return jobs, rounds


def _make(schedules: Schedules) -> dict[str, Any]:
    return {
        name: schedules.create(TENANT, name, interval_s=interval, job=JOB, by=OPERATOR)
        for name, interval in (("one-second", 1), ("two-and-a-half", 2.5), ("seven", 7))
    }


def test_threads_firing_at_once_queue_each_period_once(
    schedules: Schedules, store: Store, clock: Clock
) -> None:
    t0 = clock()
    made = _make(schedules)
    jobs, rounds = _fire_concurrently([schedules.fire_due] * THREADS, clock)
    _check_each_period_once(store, jobs, made, t0, rounds)
    assert len(schedules.queue.jobs(TENANT, limit=1000)) == len(jobs) > ROUNDS


@pytest.fixture
def other_schedulers(
    backend: str, clock: Clock, engine: Engine, schedules: Schedules
) -> Iterator[list[Schedules]]:
    """More schedulers on the same database, each with its own store, log and queue: what
    several server processes are."""
    author, key = engine
    opened = []
    try:
        for _ in range(3):
            store = open_store(backend)
            log = Log(store, instance=INSTANCE, key=PrivateKey.generate(), clock=clock)
            opened.append((store, log))
        yield [Schedules(JobQueue(log, author=author, key=key, clock=clock)) for _, log in opened]
    finally:
        for store, log in opened:
            log.close()
            store.close()


def test_schedulers_on_one_database_queue_each_period_once(
    schedules: Schedules, other_schedulers: list[Schedules], store: Store, clock: Clock
) -> None:
    t0 = clock()
    made = _make(schedules)
    everyone = [schedules, *other_schedulers]
    fire = [s.fire_due for s in everyone for _ in range(2)]
    jobs, rounds = _fire_concurrently(fire, clock)
    _check_each_period_once(store, jobs, made, t0, rounds)
    assert len(schedules.queue.jobs(TENANT, limit=1000)) == len(jobs) > ROUNDS
