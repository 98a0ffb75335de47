"""The job queue's behaviour, the same on SQLite and PostgreSQL: states, retries, leases,
dead letters, dedupe, priorities, fairness, and a signed span for every transition."""

from __future__ import annotations

import random
import threading
from datetime import timedelta
from typing import Any

import pytest

from helpers import OTHER_TENANT, TENANT, Clock, make_identity
from logline.engine.jobs import Job, JobRequest, Report
from logline.engine.queue import JobQueue
from logline.errors import Conflict, InvalidInput, NotFound
from logline.ledger.log import Log
from logline.store.interface import Query, Store

NODE = "logline-id://node/worker-1"
OTHER_NODE = "logline-id://node/worker-2"


@pytest.fixture
def queue(clocked_log: Log, clock: Clock) -> JobQueue:
    author, key = make_identity(clocked_log, TENANT, "engine", kind="service")
    return JobQueue(clocked_log, author=author, key=key, clock=clock, rng=random.Random(7))


def _history(store: Store, tenant: str, job_id: str) -> list[tuple[str, str | None, str]]:
    spans = store.query(Query(tenant, flow_id=job_id, limit=100)).items
    return [(s.span.kind, s.span.body["caused_by"], s.span.id) for s in spans]


def test_a_job_runs_and_every_step_is_on_the_log(queue: JobQueue, store: Store) -> None:
    job = queue.submit(TENANT, JobRequest(type="report.render", payload={"month": "2026-10"}))
    assert (job.state, job.attempts) == ("queued", 0)
    [claimed] = queue.claim(NODE, ["default"], lease_s=30)
    assert (claimed.id, claimed.state, claimed.attempts, claimed.node) == (
        job.id,
        "running",
        1,
        NODE,
    )
    done = queue.complete(TENANT, job.id, NODE, 1, {"pages": 12})
    assert (done.state, done.result) == ("succeeded", {"pages": 12})
    history = _history(store, TENANT, job.id)
    assert [kind for kind, _, _ in history] == ["job.queued", "job.started", "job.succeeded"]
    assert history[0][1] is None
    assert [cause for _, cause, _ in history[1:]] == [span for _, _, span in history[:-1]]
    got = queue.get(TENANT, job.id)
    assert [(a.attempt, a.node, a.outcome) for a in got.history] == [(1, NODE, "succeeded")]
    assert got.span_id == history[-1][2]
    with pytest.raises(NotFound):
        queue.get(OTHER_TENANT, job.id)


def test_bad_requests_change_nothing(queue: JobQueue, store: Store) -> None:
    size = store.log_head(TENANT)
    bad: list[dict[str, Any]] = [
        {"type": "Not A Kind"},
        {"type": "a.b", "queue": "UPPER"},
        {"type": "a.b", "priority": "x"},
        {"type": "a.b", "max_attempts": 0},
        {"type": "a.b", "backoff_base_s": 0},
        {"type": "a.b", "timeout_s": -1},
        {"type": "a.b", "payload": "x" * 70_000},
        {"type": "a.b", "tags": ("Bad Tag",)},
    ]
    for fields in bad:
        with pytest.raises(InvalidInput):
            queue.submit(TENANT, JobRequest(**fields))
    schema = {
        "type": "object",
        "required": ["month"],
        "properties": {"month": {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}$"}},
    }
    queue.register_type(TENANT, "report.render", schema, by="tester")
    with pytest.raises(InvalidInput, match="month"):
        queue.submit(TENANT, JobRequest(type="report.render", payload={"month": "October"}))
    with pytest.raises(InvalidInput, match="schema"):
        queue.register_type(TENANT, "x.y", {"type": "nonsense"}, by="tester")
    assert store.log_head(TENANT) == size
    queue.submit(TENANT, JobRequest(type="report.render", payload={"month": "2026-10"}))
    queue.submit(OTHER_TENANT, JobRequest(type="report.render", payload={"month": "October"}))


def test_dedupe_key_returns_the_first_job(queue: JobQueue) -> None:
    first = queue.submit(TENANT, JobRequest(type="mail.send", dedupe_key="welcome-42"))
    again = queue.submit(
        TENANT, JobRequest(type="mail.send", dedupe_key="welcome-42", payload={"different": True})
    )
    assert again.id == first.id and again.payload is None
    elsewhere = queue.submit(OTHER_TENANT, JobRequest(type="mail.send", dedupe_key="welcome-42"))
    assert elsewhere.id != first.id


def test_priorities_run_at_and_queues(queue: JobQueue, clock: Clock) -> None:
    low = queue.submit(TENANT, JobRequest(type="a.b", priority="low"))
    later = queue.submit(
        TENANT, JobRequest(type="a.b", priority="critical", run_at=clock() + timedelta(minutes=5))
    )
    critical = queue.submit(TENANT, JobRequest(type="a.b", priority="critical"))
    other_queue = queue.submit(TENANT, JobRequest(type="a.b", queue="mail"))
    ids = [j.id for j in queue.claim(NODE, ["default"], limit=10)]
    assert ids == [critical.id, low.id]
    clock.advance(301)
    assert [j.id for j in queue.claim(NODE, ["default", "mail"], limit=10)] == [
        later.id,
        other_queue.id,
    ]


def test_failures_retry_with_backoff_then_die(queue: JobQueue, clock: Clock) -> None:
    job = queue.submit(
        TENANT, JobRequest(type="flaky.task", max_attempts=3, backoff_base_s=10, backoff_cap_s=25)
    )
    delays = []
    for attempt in (1, 2):
        [claimed] = queue.claim(NODE, ["default"])
        assert claimed.attempts == attempt
        failed = queue.fail(TENANT, job.id, NODE, attempt, f"boom {attempt}")
        assert failed.state == "retrying"
        assert queue.claim(NODE, ["default"]) == []  # not before run_at
        wait = (_parse(failed.run_at) - clock()).total_seconds()
        delays.append(wait)
        clock.advance(wait + 0.001)
    assert 5 <= delays[0] <= 10 and 10 <= delays[1] <= 20  # base 10, doubled, halved jitter
    [claimed] = queue.claim(NODE, ["default"])
    dead = queue.fail(TENANT, job.id, NODE, 3, "boom 3")
    assert (dead.state, dead.attempts, dead.error) == ("dead", 3, "boom 3")
    assert queue.claim(NODE, ["default"]) == []  # a poison job never loops
    history = queue.get(TENANT, job.id).history
    assert [(a.attempt, a.outcome, a.error) for a in history] == [
        (1, "failed", "boom 1"),
        (2, "failed", "boom 2"),
        (3, "failed", "boom 3"),
    ]
    permanent = queue.submit(TENANT, JobRequest(type="bad.input"))
    queue.claim(NODE, ["default"])
    assert queue.fail(TENANT, permanent.id, NODE, 1, "no", retryable=False).state == "failed"


def test_only_the_lease_holder_reports(queue: JobQueue, clock: Clock) -> None:
    job = queue.submit(TENANT, JobRequest(type="a.b"))
    queue.claim(NODE, ["default"], lease_s=30)
    for node, attempt in ((OTHER_NODE, 1), (NODE, 2)):
        with pytest.raises(Conflict):
            queue.complete(TENANT, job.id, node, attempt, None)
        with pytest.raises(Conflict):
            queue.renew(TENANT, job.id, node, attempt, 30)
    assert queue.renew(TENANT, job.id, NODE, 1, 30) is False
    with pytest.raises(InvalidInput):
        queue.complete(TENANT, job.id, NODE, 1, "x" * 70_000)


def test_an_expired_lease_is_a_failed_attempt(queue: JobQueue, clock: Clock, store: Store) -> None:
    job = queue.submit(TENANT, JobRequest(type="a.b", max_attempts=2, backoff_base_s=1))
    queue.claim(NODE, ["default"], lease_s=30)
    clock.advance(20)
    queue.renew(TENANT, job.id, NODE, 1, 30)
    clock.advance(20)
    assert queue.expire_leases() == []  # renewed: still within its lease
    clock.advance(11)
    [expired] = queue.expire_leases()
    assert expired.state == "retrying" and "lease expired" in str(expired.error)
    with pytest.raises(Conflict):  # the node that lost it comes back too late
        queue.complete(TENANT, job.id, NODE, 1, None)
    clock.advance(5)
    [again] = queue.claim(OTHER_NODE, ["default"])
    assert again.attempts == 2
    queue.complete(TENANT, job.id, OTHER_NODE, 2, "ok")
    history = queue.get(TENANT, job.id).history
    assert [(a.node, a.outcome) for a in history] == [
        (NODE, "lease_expired"),
        (OTHER_NODE, "succeeded"),
    ]
    kinds = [kind for kind, _, _ in _history(store, TENANT, job.id)]
    assert kinds == ["job.queued", "job.started", "job.retrying", "job.started", "job.succeeded"]


def test_cancel_retry_now_requeue_and_purge(queue: JobQueue, store: Store) -> None:
    queued = queue.submit(TENANT, JobRequest(type="a.b"))
    assert queue.cancel(TENANT, queued.id, by="op").state == "cancelled"
    with pytest.raises(Conflict):
        queue.cancel(TENANT, queued.id, by="op")
    running = queue.submit(TENANT, JobRequest(type="a.b"))
    queue.claim(NODE, ["default"])
    assert queue.cancel(TENANT, running.id, by="op").cancel_requested
    assert queue.renew(TENANT, running.id, NODE, 1, 30) is True  # the handler is told
    assert queue.fail(TENANT, running.id, NODE, 1, "stopped", cancelled=True).state == "cancelled"
    dead = queue.submit(TENANT, JobRequest(type="a.b", max_attempts=1))
    queue.claim(NODE, ["default"])
    queue.fail(TENANT, dead.id, NODE, 1, "boom")
    requeued = queue.retry_now(TENANT, dead.id, by="op")
    assert (requeued.state, requeued.max_attempts, requeued.error) == ("queued", 2, None)
    [again] = queue.claim(NODE, ["default"])
    assert again.attempts == 2
    assert queue.fail(TENANT, dead.id, NODE, 2, "boom again").state == "dead"
    with pytest.raises(Conflict):
        queue.purge(TENANT, running.id, by="op")
    queue.purge(TENANT, dead.id, by="op")
    with pytest.raises(NotFound):
        queue.get(TENANT, dead.id)
    kinds = [kind for kind, _, _ in _history(store, TENANT, dead.id)]
    assert kinds[-3:] == ["job.started", "job.dead", "job.purged"]


def test_tenants_share_the_workers_fairly(queue: JobQueue) -> None:
    for i in range(30):
        queue.submit(TENANT, JobRequest(type="flood.job", payload=i))
    for i in range(3):
        queue.submit(OTHER_TENANT, JobRequest(type="small.job", payload=i))
    first = queue.claim(NODE, ["default"], limit=6)
    assert {j.tenant for j in first} == {TENANT, OTHER_TENANT}
    assert sum(j.tenant == OTHER_TENANT for j in first) == 3


def test_concurrent_claims_never_share_a_job(queue: JobQueue) -> None:
    for i in range(40):
        queue.submit(TENANT, JobRequest(type="a.b", payload=i))
    got: list[str] = []
    lock = threading.Lock()

    def worker(node: str) -> None:
        while True:
            jobs = queue.claim(node, ["default"], limit=3)
            if not jobs:
                return
            with lock:
                got.extend(j.id for j in jobs)

    threads = [threading.Thread(target=worker, args=(f"logline-id://node/w{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(got) == 40 and len(set(got)) == 40


def _parse(text: str) -> Any:
    from logline.ledger.timefmt import parse_ts

    return parse_ts(text)


def test_a_batch_is_atomic_and_dedupes_within_itself(queue: JobQueue, store: Store) -> None:
    size = store.log_head(TENANT)
    with pytest.raises(InvalidInput):
        queue.submit_many(TENANT, [JobRequest(type="a.b"), JobRequest(type="Bad Type")])
    assert store.log_head(TENANT) == size and queue.jobs(TENANT) == []
    results = queue.submit_many(
        TENANT,
        [
            JobRequest(type="a.b", dedupe_key="k"),
            JobRequest(type="a.c"),
            JobRequest(type="a.b", dedupe_key="k"),
        ],
    )
    assert [new for _, new in results] == [True, True, False]
    assert results[2][0].id == results[0][0].id
    assert len(queue.jobs(TENANT)) == 2


def test_listing_and_bulk_dead_letters(queue: JobQueue) -> None:
    jobs = [queue.submit(TENANT, JobRequest(type=t, max_attempts=1)) for t in ("x.a", "x.b", "x.a")]
    for _ in jobs:
        [claimed] = queue.claim(NODE, ["default"])
        queue.fail(TENANT, claimed.id, NODE, 1, "boom")
    assert [j.id for j in queue.jobs(TENANT)] == [j.id for j in reversed(jobs)]  # newest first
    page = queue.jobs(TENANT, limit=2)
    assert [j.id for j in queue.jobs(TENANT, before=page[-1].id)] == [jobs[0].id]
    assert {j.id for j in queue.jobs(TENANT, states=("dead",), type_="x.a")} == {
        jobs[0].id,
        jobs[2].id,
    }
    with pytest.raises(InvalidInput):
        queue.jobs(TENANT, states=("nonsense",))
    requeued = queue.requeue_dead(TENANT, "op", type_="x.a")
    assert {j.id for j in requeued} == {jobs[0].id, jobs[2].id}
    assert {j.state for j in requeued} == {"queued"}
    assert queue.purge_dead(TENANT, "op") == [jobs[1].id]
    assert queue.purge_dead(TENANT, "op") == []


def test_claims_can_be_limited_to_tenants(queue: JobQueue) -> None:
    mine = queue.submit(TENANT, JobRequest(type="a.b"))
    queue.submit(OTHER_TENANT, JobRequest(type="a.b"))
    woken: list[int] = []
    queue.listeners.append(lambda: woken.append(1))
    queue.submit(TENANT, JobRequest(type="a.c"))
    assert woken == [1]
    got = queue.claim(NODE, ["default"], limit=10, tenants=[TENANT])
    assert {j.tenant for j in got} == {TENANT} and mine.id in {j.id for j in got}
    assert [j.tenant for j in queue.claim(NODE, ["default"], limit=10)] == [OTHER_TENANT]


def test_a_node_claims_only_types_it_handles(queue: JobQueue) -> None:
    mail = queue.submit(TENANT, JobRequest(type="mail.send"))
    report = queue.submit(TENANT, JobRequest(type="report.render"))
    assert [j.id for j in queue.claim(NODE, ["default"], limit=5, types=["report.render"])] == [
        report.id
    ]
    assert [j.id for j in queue.claim(NODE, ["default"], limit=5, types=["other.type"])] == []
    assert [j.id for j in queue.claim(NODE, ["default"], limit=5)] == [mail.id]


def test_a_batch_of_reports_ends_each_attempt_on_its_own(queue: JobQueue, store: Store) -> None:
    ok = queue.submit(TENANT, JobRequest(type="job.ok"))
    bad = queue.submit(TENANT, JobRequest(type="job.bad", max_attempts=1))
    other = queue.submit(OTHER_TENANT, JobRequest(type="job.ok"))
    stolen = queue.submit(TENANT, JobRequest(type="job.ok"))
    queue.claim(NODE, ["default"], limit=4)
    queue.cancel(TENANT, stolen.id, "logline-id://person/op")  # the node is asked to stop
    queue.fail(TENANT, stolen.id, NODE, 1, "stopped", cancelled=True)
    sizes = {t: store.log_head(t).size for t in (TENANT, OTHER_TENANT)}  # type: ignore[union-attr]
    results = queue.report(
        NODE,
        [
            Report(TENANT, ok.id, 1, "succeeded", result={"n": 1}),
            Report(TENANT, stolen.id, 1, "succeeded"),  # already ended: refused alone
            Report(OTHER_TENANT, other.id, 1, "succeeded"),
            Report(TENANT, bad.id, 1, "failed", error="boom"),
            Report(TENANT, "no-such-job", 1, "succeeded"),
        ],
    )
    assert [r.state if isinstance(r, Job) else type(r).__name__ for r in results] == [
        "succeeded", "Conflict", "succeeded", "dead", "NotFound",
    ]  # fmt: skip
    assert store.log_head(TENANT).size == sizes[TENANT] + 2  # type: ignore[union-attr]
    assert store.log_head(OTHER_TENANT).size == sizes[OTHER_TENANT] + 1  # type: ignore[union-attr]
    for report in (
        Report(TENANT, ok.id, 1, "failed"),  # no error
        Report(TENANT, ok.id, 1, "exploded", error="x"),
        Report(TENANT, ok.id, 1, "succeeded", result="x" * 70_000),
    ):
        with pytest.raises(InvalidInput):
            queue.report(NODE, [report])
    with pytest.raises(InvalidInput):
        queue.report(NODE, [])
