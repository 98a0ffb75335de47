"""Worker nodes as real processes against a real `logline up`: success, dead letters, a node
killed mid-job, cancellation, draining on SIGTERM, and the node registry (online with its labels,
offline after SIGTERM, lost after kill -9); the `logline job` and `logline node` CLIs along the way.

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
LOST_AFTER_S = 3  # the server's node_lost_after_s: nodes heartbeat every second


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
        env = server_env(LOGLINE_SERVER=self.server.url, LOGLINE_TOKEN=self.token, COLUMNS="200")
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
    lost_after = {"LOGLINE_NODE_LOST_AFTER_S": str(LOST_AFTER_S)}
    with running_server(tmp / "home", env=lost_after) as server:
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


# --- the node registry ----------------------------------------------------------------------------


def nodes(cluster: Cluster) -> dict[str, dict[str, Any]]:
    """The nodes serving tenant `default` (the workers here are instance-wide), by identity."""
    listed = cluster.client().get("/v1/tenants/default/nodes")
    assert listed.status_code == 200, listed.text
    return {node["identity"]: node for node in listed.json()["nodes"]}


def node_state(cluster: Cluster, identity: str, state: str, timeout: float = 30) -> dict[str, Any]:
    found = wait(lambda: (n := nodes(cluster).get(identity)) and n["state"] == state and n,
                 timeout, lambda: nodes(cluster).get(identity))  # fmt: skip
    assert isinstance(found, dict)
    return found


def node_history(cluster: Cluster, identity: str) -> list[str]:
    """The kinds of the node's spans on the `system` log."""
    with cluster.server.client(cluster.server.login(["system"])) as system:
        found = system.get("/v1/tenants/system/spans", params={"flow_id": identity})
    assert found.status_code == 200, found.text
    return [item["span"]["body"]["kind"] for item in found.json()["items"]]


def test_a_node_registers_with_its_labels_and_goes_offline_on_sigterm(
    cluster: Cluster, start_worker: Callable[..., WorkerProcess]
) -> None:
    worker = start_worker("e2e-registry", "--label", "zone=eu-1", "--label", "gpu=none",
                          "--concurrency", "3")  # fmt: skip
    node = node_state(cluster, worker.identity, "online")  # registered before "worker started"
    assert node["labels"] == {"gpu": "none", "zone": "eu-1"} and node["queues"] == ["e2e-registry"]
    assert (node["tenant"], node["concurrency"], node["pid"]) == ("system", 3, worker.process.pid)
    assert "logline.sleep" in node["types"] and node["version"]
    job_id = submit(cluster, "logline.sleep", "e2e-registry", {"seconds": 3})
    busy = wait(lambda: (n := nodes(cluster)[worker.identity])["running"] == 1 and n, 15)
    assert busy["last_seen"] > node["last_seen"] and busy["session"] == node["session"]
    listed = cluster.cli("node", "list")
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if worker.identity in line)
    assert "online" in row and "gpu=none, zone=eu-1" in row and "1/3" in row and "ago" in row
    assert worker.stop() == 0  # drains the running job, then deregisters
    assert get(cluster, job_id)["state"] == "succeeded"
    assert nodes(cluster)[worker.identity]["state"] == "offline"
    assert node_history(cluster, worker.identity) == [
        "node.registered", "node.draining", "node.offline"
    ]  # fmt: skip
    offline = cluster.cli("node", "list", "--state", "offline", "--json")
    assert worker.identity in {n["identity"] for n in json.loads(offline.stdout)["nodes"]}
    online = cluster.cli("node", "list", "--state", "online", "--json")
    assert worker.identity not in {n["identity"] for n in json.loads(online.stdout)["nodes"]}


def test_a_killed_node_is_lost_and_its_job_runs_elsewhere(
    cluster: Cluster, start_worker: Callable[..., WorkerProcess]
) -> None:
    first = start_worker("e2e-lost", "--label", "role=first")
    job_id = submit(cluster, "logline.sleep", "e2e-lost", {"seconds": 2}, **FAST_RETRY)
    wait_state(cluster, job_id, "running")
    first.stop(signal.SIGKILL)
    killed = time.monotonic()
    lost = node_state(cluster, first.identity, "lost", timeout=LOST_AFTER_S + 20)
    # Not before the threshold: the last heartbeat was at most a second before the kill.
    assert time.monotonic() - killed >= LOST_AFTER_S - 1.5
    assert lost["labels"] == {"role": "first"}
    second = start_worker("e2e-lost")
    job = wait_state(cluster, job_id, "succeeded", timeout=40)
    attempts = [(a["node"], a["outcome"]) for a in job["history"]]
    assert attempts == [(first.identity, "lease_expired"), (second.identity, "succeeded")]
    assert node_history(cluster, first.identity) == ["node.registered", "node.lost"]
    assert nodes(cluster)[second.identity]["state"] == "online"


def test_stats_and_metrics_show_what_the_workers_did(
    cluster: Cluster, start_worker: Callable[..., WorkerProcess]
) -> None:
    start_worker("e2e-stats", "--concurrency", "4")
    done = [submit(cluster, "logline.noop", "e2e-stats") for _ in range(5)]
    dead = submit(cluster, "logline.fail", "e2e-stats", max_attempts=1)
    for job_id in done:
        wait_state(cluster, job_id, "succeeded")
    wait_state(cluster, dead, "dead")
    found = cluster.client().get(
        "/v1/tenants/default/stats", params={"queue": "e2e-stats", "window": ["1m", "1h"]}
    )
    assert found.status_code == 200, found.text
    total = found.json()["total"]
    assert total["totals"] == {
        "submitted": 6, "started": 6, "succeeded": 5, "failed": 1, "dead": 1, "cancelled": 0,
    }  # fmt: skip
    assert (total["states"]["succeeded"], total["states"]["dead"]) == (5, 1)
    assert total["windows"]["1h"]["failure_rate"] == pytest.approx(1 / 6, abs=1e-3)
    assert total["windows"]["1h"]["wait_ms"]["p99"] is not None
    series = cluster.client().get("/v1/tenants/default/stats/series", params={"minutes": 3})
    assert sum(point["succeeded"] for point in series.json()) >= 5
    bad = cluster.client().get("/v1/tenants/default/stats", params={"window": "2m"})
    assert bad.status_code == 400 and "window must be one of" in bad.json()["detail"]

    shown = cluster.cli("job", "stats", "--queue", "e2e-stats", "--window", "1h")
    assert shown.returncode == 0, shown.stderr
    assert "logline.noop" in shown.stdout and "last 1h" in shown.stdout

    def scraped() -> str:
        return httpx.get(cluster.server.url + "/metrics").text

    # Job metrics are cached for a few seconds: wait for a scrape that has this test's jobs.
    wait(lambda: 'logline_job_events_total{event="succeeded",queue="e2e-stats"} 5.0' in scraped(),
         15, scraped)  # fmt: skip
    assert 'logline_job_run_seconds_count{queue="e2e-stats"} 6.0' in scraped()
