"""Worker nodes as real processes against a real `logline up`: success, dead letters, a node
killed mid-job, cancellation, and draining on SIGTERM; the `logline job` CLI along the way.

Each test serves its own queue, so the workers of one test never take another test's jobs.
Node keys are made on `system` (instance-wide nodes), which the first administrator owns.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from servers import RunningServer, logline_command, running_server, server_env

pytestmark = pytest.mark.e2e

STARTED = "worker started"
FAST_RETRY = {"backoff_base_s": 0.05, "backoff_cap_s": 0.1}


@dataclass
class Cluster:
    server: RunningServer
    token: str  # an admin's, for tenant `default`
    http: httpx.Client  # with that token
    tmp: Path
    keys: Iterator[str]

    def client(self) -> httpx.Client:
        return self.http

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = server_env(LOGLINE_SERVER=self.server.url, LOGLINE_TOKEN=self.token)
        return subprocess.run([*logline_command(), *args], capture_output=True, text=True,
                              env=env, timeout=60)  # fmt: skip


@dataclass
class WorkerProcess:
    process: subprocess.Popen[str]
    log: Path
    identity: str

    def output(self) -> str:
        return self.log.read_text()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise AssertionError(f"worker did not stop:\n{self.output()}") from None


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("workers")
    with running_server(tmp / "home") as server:
        token = server.login()
        system = server.login(["system"])
        with server.client(token) as http, server.client(system) as admin:

            def node_keys() -> Iterator[str]:
                for n in range(100):
                    made = admin.post(
                        "/v1/tenants/system/api-keys", json={"name": f"node-{n}", "role": "node"}
                    )
                    assert made.status_code == 201, made.text
                    yield made.json()["key"]

            yield Cluster(server, token, http, tmp, node_keys())


@pytest.fixture
def start_worker(
    cluster: Cluster, request: pytest.FixtureRequest
) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(queue: str, *extra: str) -> WorkerProcess:
        key = next(cluster.keys)
        log = cluster.tmp / f"{request.node.name}-{len(started)}.log"
        with log.open("w") as sink:
            process = subprocess.Popen(
                [*logline_command(), "worker", "--server", cluster.server.url, "--queue", queue,
                 "--lease-s", "2", "--wait-s", "1", "--log-level", "info", *extra],
                stdout=sink, stderr=subprocess.STDOUT, text=True,
                env=server_env(LOGLINE_API_KEY=key),
            )  # fmt: skip
        worker = WorkerProcess(process, log, "")
        started.append(worker)
        wait(lambda: STARTED in worker.output() or process.poll() is not None, 30, worker.output)
        assert process.poll() is None, worker.output()
        line = next(line for line in worker.output().splitlines() if STARTED in line)
        worker.identity = json.loads(line)["node"]
        return worker

    yield start
    for worker in started:
        if worker.process.poll() is None:
            worker.process.kill()
            worker.process.wait(10)


def wait(done: Callable[[], Any], timeout: float, explain: Callable[[], object] = str) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := done()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s: {explain()}")
        time.sleep(0.1)
    return found


def submit(cluster: Cluster, job_type: str, queue: str, payload: Any = None, **more: Any) -> str:
    body = {"type": job_type, "queue": queue, "payload": payload, **more}
    made = cluster.client().post("/v1/tenants/default/jobs", json=body)
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


def get(cluster: Cluster, job_id: str) -> dict[str, Any]:
    found = cluster.client().get(f"/v1/tenants/default/jobs/{job_id}")
    assert found.status_code == 200, found.text
    job: dict[str, Any] = found.json()
    return job


def wait_state(cluster: Cluster, job_id: str, *states: str, timeout: float = 30) -> dict[str, Any]:
    job = wait(lambda: (j := get(cluster, job_id))["state"] in states and j,
               timeout, lambda: get(cluster, job_id))  # fmt: skip
    assert isinstance(job, dict)
    return job


def test_noop_jobs_succeed_and_the_cli_shows_them(
    cluster: Cluster, start_worker: Callable[..., WorkerProcess]
) -> None:
    worker = start_worker("e2e-noop", "--concurrency", "2")
    ids = [submit(cluster, "logline.noop", "e2e-noop") for _ in range(3)]
    made = cluster.cli("job", "submit", "logline.noop", "--queue", "e2e-noop", "--payload",
                       '{"n": 1}', "--tag", "e2e", "--json")  # fmt: skip
    assert made.returncode == 0, made.stderr
    ids.append(json.loads(made.stdout)["id"])
    for job_id in ids:
        job = wait_state(cluster, job_id, "succeeded")
        assert [(a["node"], a["outcome"]) for a in job["history"]] == [
            (worker.identity, "succeeded")
        ]
    shown = cluster.cli("job", "show", ids[-1])
    assert shown.returncode == 0 and "succeeded" in shown.stdout and worker.identity in shown.stdout
    listed = cluster.cli("job", "list", "--state", "succeeded", "--queue", "e2e-noop", "--json")
    assert {job["id"] for job in json.loads(listed.stdout)["jobs"]} == set(ids)
    missing = cluster.cli("job", "show", "01890000-0000-7000-8000-000000000000")
    assert missing.returncode == 1 and missing.stderr.startswith("error: ")
    assert worker.stop() == 0


def test_a_failing_job_ends_dead_and_stays_dead_until_requeued(
    cluster: Cluster, start_worker: Callable[..., WorkerProcess]
) -> None:
    start_worker("e2e-fail")
    dead_id = submit(cluster, "logline.fail", "e2e-fail", {"message": "boom"}, max_attempts=3,
                     **FAST_RETRY)  # fmt: skip
    final_id = submit(cluster, "logline.fail", "e2e-fail", {"message": "no", "retryable": False})
    job = wait_state(cluster, dead_id, "dead")
    assert job["attempts"] == 3 and job["error"] == "boom"
    assert [a["outcome"] for a in job["history"]] == ["failed"] * 3
    final = wait_state(cluster, final_id, "failed")
    assert final["attempts"] == 1 and final["error"] == "no"
    time.sleep(1.5)  # never loops: no more attempts happen
    assert get(cluster, dead_id)["attempts"] == 3
    listed = cluster.cli("dead-letters", "list", "--queue", "e2e-fail", "--json")
    assert {job["id"] for job in json.loads(listed.stdout)["jobs"]} == {dead_id, final_id}
    requeued = cluster.cli("dead-letters", "requeue", "--id", dead_id, "--json")
    assert requeued.returncode == 0, requeued.stderr
    assert [job["id"] for job in json.loads(requeued.stdout)["jobs"]] == [dead_id]
    wait(lambda: get(cluster, dead_id)["attempts"] == 6, 30)  # a second run of 3 attempts
    assert wait_state(cluster, dead_id, "dead")["attempts"] == 6


def test_a_job_of_a_killed_worker_is_retried_by_another_after_its_lease(
    cluster: Cluster, start_worker: Callable[..., WorkerProcess]
) -> None:
    first = start_worker("e2e-crash")
    job_id = submit(cluster, "logline.sleep", "e2e-crash", {"seconds": 3}, **FAST_RETRY)
    wait_state(cluster, job_id, "running")
    time.sleep(0.5)
    first.stop(signal.SIGKILL)
    second = start_worker("e2e-crash")
    job = wait_state(cluster, job_id, "succeeded", timeout=40)
    attempts = [(a["attempt"], a["node"], a["outcome"]) for a in job["history"]]
    assert attempts == [(1, first.identity, "lease_expired"), (2, second.identity, "succeeded")]
    assert first.identity != second.identity


def test_a_running_job_is_cancelled_cooperatively(
    cluster: Cluster, start_worker: Callable[..., WorkerProcess]
) -> None:
    start_worker("e2e-cancel")
    job_id = submit(cluster, "logline.sleep", "e2e-cancel", {"seconds": 60})
    wait_state(cluster, job_id, "running")
    asked = cluster.cli("job", "cancel", job_id, "--json")
    assert asked.returncode == 0, asked.stderr
    assert json.loads(asked.stdout)["cancel_requested"] is True
    job = wait_state(cluster, job_id, "cancelled", timeout=15)
    assert [a["outcome"] for a in job["history"]] == ["cancelled"]


def test_sigterm_drains_running_jobs_then_gives_up_on_the_rest(
    cluster: Cluster, start_worker: Callable[..., WorkerProcess]
) -> None:
    patient = start_worker("e2e-drain")
    job_id = submit(cluster, "logline.sleep", "e2e-drain", {"seconds": 2})
    wait_state(cluster, job_id, "running")
    assert patient.stop() == 0
    assert get(cluster, job_id)["state"] == "succeeded"  # finished before the worker exited

    hasty = start_worker("e2e-grace", "--grace-s", "0.5")
    long_id = submit(cluster, "logline.sleep", "e2e-grace", {"seconds": 60}, backoff_base_s=30,
                     backoff_cap_s=30)  # fmt: skip
    wait_state(cluster, long_id, "running")
    assert hasty.stop() == 0
    job = get(cluster, long_id)
    assert (job["state"], job["error"]) == ("retrying", "worker shutting down")
