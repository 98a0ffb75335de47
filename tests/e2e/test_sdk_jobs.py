"""The SDK's job methods against real `logline up` servers, on SQLite and on PostgreSQL.

Submitting one job and atomic batches, dedupe keys, payload schemas, listing page by page,
cancelling, dead letters made by a real worker node (requeued, purged), the stats read model, and
the same through `AsyncClient`. The servers run no embedded node; jobs stay queued unless a test
starts a worker for its own queue.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import anyio
import pytest

from logline.client import (
    ApiConflict,
    ApiInvalidInput,
    ApiNotFound,
    AsyncClient,
    Client,
    Job,
    JobSpec,
    Signer,
)
from logline.ledger.timefmt import parse_ts
from servers import RunningServer, logline_command, running_server, scratch_postgres, server_env

pytestmark = pytest.mark.e2e

ACME = "acme"
ALICE = Signer.generate("logline-id://person/alice")
GENEROUS = {"LOGLINE_RATE_LIMITS": '{"auth": "6000/minute", "read": "6000/minute"}'}
BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]
REPORT_SCHEMA = {
    "type": "object",
    "required": ["month"],
    "properties": {"month": {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}$"}},
}


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module", params=BACKENDS)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    with ExitStack() as stack:
        home = tmp_path_factory.mktemp(f"sdk-jobs-{request.param}") / "home"
        database_url = (
            stack.enter_context(scratch_postgres()) if request.param == "postgres" else None
        )
        yield stack.enter_context(running_server(home, database_url=database_url, env=GENEROUS))


@pytest.fixture(scope="module")
def owner(server: RunningServer) -> Iterator[Client]:
    """ALICE, onboarded by the instance administrator as the owner of ACME, logged in."""
    with Client(server.url) as admin:
        admin.login("admin", server.password)
        with Client(server.url, ACME, token=admin.api.access_token) as onboarding:
            onboarding.onboard(ALICE.identity_span(ACME, "Alice"), "Acme Corp")
    with Client(server.url, ACME) as client:
        client.login_with_key(ALICE.identity, ALICE.key)
        yield client


def wait_state(client: Client, job_id: str, state: str, attempts: int = 1) -> Job:
    """The job once it is in `state` after `attempts` attempts (a worker is running it)."""
    deadline = time.monotonic() + 30
    while True:
        job = client.get_job(job_id)
        if (job.state, job.attempts) == (state, attempts):
            return job
        assert time.monotonic() < deadline, f"still {job.state} after {job.attempts} attempts"
        time.sleep(0.1)


# --- submitting -----------------------------------------------------------------------------------


def test_submit_one_job_and_read_it_back(owner: Client) -> None:
    run_at = datetime.now(timezone(timedelta(hours=-5))) + timedelta(hours=1)
    job = owner.submit_job("sdk.one", {"n": 1}, queue="sdk-one", priority="high", run_at=run_at,
                           max_attempts=5, timeout_s=30, tags=["sdk", "e2e"])  # fmt: skip
    assert (job.tenant, job.type, job.queue, job.state, job.priority) == (
        ACME, "sdk.one", "sdk-one", "queued", "high")  # fmt: skip
    assert (job.payload, job.tags, job.max_attempts, job.timeout_s) == ({"n": 1}, ("e2e", "sdk"),
                                                                        5, 30.0)  # fmt: skip
    assert parse_ts(job.run_at) == run_at.astimezone(UTC) and not job.deduplicated
    got = owner.get_job(job.id)
    assert got.id == job.id and got.span_id and got.history == ()
    # The job's transitions are spans of its flow on the tenant's log.
    [queued] = owner.query(flow_id=job.id).items
    assert queued.span.id == job.span_id and queued.span.body["kind"] == "job.queued"
    with pytest.raises(ApiNotFound):
        owner.get_job("01890000-0000-7000-8000-000000000000")
    with pytest.raises(ApiInvalidInput):  # the server's own checks: a bad queue name
        owner.submit_job("sdk.one", queue="Not A Queue")


def test_a_dedupe_key_returns_the_first_job(owner: Client) -> None:
    first = owner.submit_job("sdk.dedupe", {"try": 1}, dedupe_key="invoice-42")
    again = owner.submit_job("sdk.dedupe", {"try": 2}, dedupe_key="invoice-42")
    assert (again.id, again.payload, again.deduplicated) == (first.id, {"try": 1}, True)
    batch = owner.submit_jobs([
        JobSpec("sdk.dedupe", dedupe_key="invoice-42"),
        {"type": "sdk.dedupe", "payload": {"try": 3}, "dedupe_key": "invoice-43"},
        {"type": "sdk.dedupe", "payload": {"try": 4}, "dedupe_key": "invoice-43"},
    ])  # fmt: skip
    assert [j.deduplicated for j in batch] == [True, False, True]
    assert batch[0].id == first.id and batch[1].id == batch[2].id != first.id
    assert len(owner.jobs(type="sdk.dedupe").jobs) == 2


def test_payload_schemas_and_atomic_batches(owner: Client) -> None:
    owner.register_job_type("sdk.report", REPORT_SCHEMA)
    ok = owner.submit_job("sdk.report", {"month": "2026-10"})
    with pytest.raises(ApiInvalidInput, match=r"does not match the schema of sdk\.report at month"):
        owner.submit_job("sdk.report", {"month": 10})
    # One invalid job refuses the whole batch: nothing of it is queued.
    with pytest.raises(ApiInvalidInput, match=r"schema of sdk\.report"):
        owner.submit_jobs([{"type": "sdk.report", "payload": {"month": "2026-11"}},
                           {"type": "sdk.report", "payload": {}}])  # fmt: skip
    assert [j.id for j in owner.jobs(type="sdk.report").jobs] == [ok.id]
    made = owner.submit_jobs([JobSpec("sdk.report", {"month": f"2026-0{n}"}) for n in (1, 2)])
    assert [j.payload["month"] for j in made] == ["2026-01", "2026-02"]
    with pytest.raises(ApiInvalidInput, match="not a valid JSON Schema"):
        owner.register_job_type("sdk.report", {"type": "no such type"})


# --- reading and acting ---------------------------------------------------------------------------


def test_list_page_by_page_filter_by_state_and_cancel(owner: Client) -> None:
    made = owner.submit_jobs([JobSpec("sdk.page", {"n": n}, queue="sdk-page") for n in range(5)])
    seen: list[str] = []
    before: str | None = None
    pages = 0
    while True:
        page = owner.jobs(type="sdk.page", limit=2, before=before)
        seen += [job.id for job in page.jobs]
        pages += 1
        if page.next_before is None:
            break
        before = page.next_before
    assert seen == [job.id for job in reversed(made)] and pages == 3  # newest first
    cancelled = owner.cancel_job(made[0].id)
    assert cancelled.state == "cancelled" and cancelled.finished_at is not None
    with pytest.raises(ApiConflict, match="cannot be cancelled"):
        owner.cancel_job(made[0].id)
    with pytest.raises(ApiConflict):
        owner.retry_job(made[1].id)  # queued: nothing to retry
    assert [j.id for j in owner.jobs(type="sdk.page", state="cancelled").jobs] == [made[0].id]
    both = owner.jobs(type="sdk.page", state=["queued", "cancelled"], queue="sdk-page")
    assert len(both.jobs) == 5
    assert owner.jobs(type="sdk.page", queue="elsewhere").jobs == ()


def test_stats_count_the_submitted_jobs(owner: Client) -> None:
    owner.submit_jobs([JobSpec("sdk.stats", queue="sdk-stats") for _ in range(3)])
    later = owner.submit_job("sdk.stats", queue="sdk-stats")
    owner.cancel_job(later.id)
    stats = owner.job_stats(windows=["5m", "1h"], type="sdk.stats")
    assert stats.tenant == ACME and stats.windows == ("5m", "1h")
    total = stats.total
    assert (total.totals["submitted"], total.totals["cancelled"]) == (4, 1)
    assert (total.states["queued"], total.states["cancelled"], total.queue_depth) == (3, 1, 3)
    assert total.windows["5m"].counts["submitted"] == 4 and total.oldest_ready_age_s is not None
    group = stats.group("sdk.stats", "sdk-stats")
    assert group is not None and group.totals == total.totals and len(stats.groups) == 1
    points = owner.job_stats_series(minutes=5, type="sdk.stats", queue="sdk-stats")
    assert len(points) == 5 and sum(p.stats.counts["submitted"] for p in points) == 4
    assert owner.job_stats(queue="sdk-nothing").total.totals["submitted"] == 0
    with pytest.raises(ApiInvalidInput):
        owner.job_stats(windows=["2d"])


# --- dead letters, made by a real worker ----------------------------------------------------------


@pytest.fixture
def worker(server: RunningServer, tmp_path: Path) -> Iterator[Callable[[str], None]]:
    """Starts `logline worker` for a queue with a node key of `system` (it serves every tenant)."""
    started: list[subprocess.Popen[str]] = []

    def start(queue: str) -> None:
        with Client(server.url, "system") as system:
            system.login("admin", server.password, ["system"])
            key = system.create_api_key(f"sdk-node-{queue}", "node").key
        log = tmp_path / f"worker-{queue}.log"
        with log.open("w") as sink:
            process = subprocess.Popen(
                [*logline_command(), "worker", "--server", server.url, "--queue", queue,
                 "--lease-s", "2", "--wait-s", "1", "--log-level", "info"],
                stdout=sink, stderr=subprocess.STDOUT, text=True,
                env=server_env(LOGLINE_API_KEY=key),
            )  # fmt: skip
        started.append(process)
        deadline = time.monotonic() + 30
        while "worker started" not in log.read_text():
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)

    yield start
    for process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def test_dead_letters_are_listed_requeued_and_purged(
    owner: Client, worker: Callable[[str], None]
) -> None:
    queue = "sdk-dead"
    dead = owner.submit_job("logline.fail", {"message": "boom"}, queue=queue, max_attempts=1)
    final = owner.submit_job("logline.fail", {"message": "no", "retryable": False}, queue=queue,
                             max_attempts=3)  # fmt: skip
    worker(queue)
    dead, final = wait_state(owner, dead.id, "dead"), wait_state(owner, final.id, "failed")
    assert (dead.attempts, dead.error, [a.outcome for a in dead.history]) == (1, "boom", ["failed"])
    assert (final.attempts, final.error) == (1, "no")
    assert dead.history[0].node.startswith("logline-id://") and dead.history[0].ended_at
    letters = owner.dead_letters(queue=queue)
    assert [j.id for j in letters.jobs] == [final.id, dead.id] and letters.next_before is None
    assert [j.id for j in owner.dead_letters(queue=queue, limit=1).jobs] == [final.id]

    [requeued] = owner.requeue_dead_letters(queue=queue, ids=[dead.id])
    assert (requeued.id, requeued.state, requeued.max_attempts) == (dead.id, "queued", 2)
    # The worker runs it again: a second attempt, dead again.
    again = wait_state(owner, dead.id, "dead", attempts=2)
    assert [a.attempt for a in again.history] == [1, 2]
    assert owner.retry_job(final.id).state == "queued"
    wait_state(owner, final.id, "failed", attempts=2)

    assert sorted(owner.purge_dead_letters(queue=queue)) == sorted([dead.id, final.id])
    assert owner.dead_letters(queue=queue).jobs == ()
    with pytest.raises(ApiNotFound):
        owner.get_job(dead.id)
    assert owner.purge_dead_letters(queue=queue) == []
    stats = owner.job_stats(type="logline.fail", queue=queue)
    assert stats.total.totals["dead"] >= 2 and stats.total.totals["submitted"] == 2


# --- the async client -----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_the_async_client_runs_the_same_job_methods(
    server: RunningServer, owner: Client
) -> None:
    with anyio.fail_after(60):
        async with AsyncClient(server.url, ACME, token=owner.api.access_token) as client:
            await client.register_job_type("sdk.async", REPORT_SCHEMA)
            with pytest.raises(ApiInvalidInput, match=r"schema of sdk\.async"):
                await client.submit_job("sdk.async", {"month": "October"})
            job = await client.submit_job("sdk.async", {"month": "2026-10"}, dedupe_key="a-10")
            again = await client.submit_job("sdk.async", {"month": "2026-10"}, dedupe_key="a-10")
            assert again.deduplicated and again.id == job.id
            batch = await client.submit_jobs([{"type": "sdk.async", "payload": {"month": m}}
                                              for m in ("2026-11", "2026-12")])  # fmt: skip
            assert (await client.get_job(batch[0].id)).payload == {"month": "2026-11"}
            page = await client.jobs(type="sdk.async", state="queued", limit=2)
            assert [j.id for j in page.jobs] == [batch[1].id, batch[0].id] and page.next_before
            rest = await client.jobs(type="sdk.async", before=page.next_before)
            assert [j.id for j in rest.jobs] == [job.id]
            assert (await client.cancel_job(job.id)).state == "cancelled"
            with pytest.raises(ApiConflict):
                await client.retry_job(job.id)
            assert (await client.dead_letters(type="sdk.async")).jobs == ()
            assert await client.requeue_dead_letters(type="sdk.async") == []
            assert await client.purge_dead_letters(type="sdk.async") == []
            stats = await client.job_stats(type="sdk.async")
            assert stats.total.totals["submitted"] == 3 and stats.total.states["queued"] == 2
            points = await client.job_stats_series(minutes=2, type="sdk.async")
            assert sum(p.stats.counts["cancelled"] for p in points) == 1
