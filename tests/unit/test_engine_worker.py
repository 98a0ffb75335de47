"""The worker against a scripted node API (httpx.MockTransport): outcomes, leases, shutdown."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from logline.client.errors import ApiConflict, ConnectionFailed
from logline.engine.handlers import HandlerRegistry, JobContext, PermanentError, builtin_handlers
from logline.engine.jobs import MAX_ERROR_CHARS
from logline.engine.worker import ReportBatcher, Worker, one_line_error
from logline.errors import Forbidden, InvalidInput, LogLineError, Unauthenticated

NODE = "logline-id://service/system.node.1"


def job(job_id: str, job_type: str, payload: Any = None, timeout_s: float = 30.0) -> dict[str, Any]:
    return {"id": job_id, "tenant": "acme", "type": job_type, "queue": "default",
            "payload": payload, "attempts": 1, "timeout_s": timeout_s}  # fmt: skip


@dataclass
class FakeNodeApi:
    """Hands out `jobs` once, records reports; `on_beat` and `on_report` script the answers."""

    jobs: list[dict[str, Any]]
    reports: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)
    beats: list[str] = field(default_factory=list)
    tries: dict[str, int] = field(default_factory=dict)
    on_beat: Callable[[str], httpx.Response] | None = None
    on_report: Callable[[str, int], httpx.Response | None] | None = None
    api_key_ok: bool = True
    # The registry: what the node said when it registered, heartbeated and deregistered.
    registered: list[dict[str, Any]] = field(default_factory=list)
    node_beats: list[dict[str, Any]] = field(default_factory=list)
    deregistered: list[dict[str, Any]] = field(default_factory=list)
    on_node_beat: Callable[[dict[str, Any]], httpx.Response | None] | None = None
    heartbeat_s: float = 0.05
    refused: dict[str, int] = field(default_factory=dict)  # job id → status of its problem
    report_requests: int = 0

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if not self.api_key_ok:
            return problem(401, "unauthenticated")
        if path == "/v1/auth/whoami":
            return httpx.Response(200, json={"identity": NODE})
        body = json.loads(request.content)
        if path == "/v1/nodes/register":
            self.registered.append(body)
            session = f"0190a000-0000-7000-8000-{len(self.registered):012d}"
            reply = {"identity": NODE, "session": session, "state": "online",
                     "heartbeat_s": self.heartbeat_s}  # fmt: skip
            return httpx.Response(200, json=reply)
        if path == "/v1/nodes/heartbeat":
            self.node_beats.append(body)
            scripted = self.on_node_beat(body) if self.on_node_beat else None
            return scripted or httpx.Response(200, json={"identity": NODE, "state": "online"})
        if path == "/v1/nodes/deregister":
            self.deregistered.append(body)
            return httpx.Response(200, json={"identity": NODE, "state": "offline"})
        if path == "/v1/nodes/claim":
            given, self.jobs = self.jobs[: body["limit"]], self.jobs[body["limit"] :]
            if not given:
                await asyncio.sleep(0.02)
            return httpx.Response(200, json={"jobs": given})
        if path == "/v1/nodes/reports":
            self.report_requests += 1
            await asyncio.sleep(0.02)  # a batch on its way: the next one gathers
            return self._reports(body["reports"])
        _, _, _, _, job_id, action = path.split("/")
        assert action == "heartbeat", path
        self.beats.append(job_id)
        if self.on_beat is not None:
            return self.on_beat(job_id)
        return httpx.Response(200, json={"cancel_requested": False})

    def _reports(self, items: list[dict[str, Any]]) -> httpx.Response:
        """A batch of reports: a scripted answer for any item answers for the whole batch (as
        a 5xx or a refused batch would); each recorded one as the action it stands for."""
        results = []
        for item in items:
            job_id = item.pop("job_id")
            self.tries[job_id] = self.tries.get(job_id, 0) + 1
            scripted = self.on_report(job_id, self.tries[job_id]) if self.on_report else None
            if scripted is not None:
                return scripted
            if job_id in self.refused:
                status = self.refused[job_id]
                refusal = {"type": "urn:logline:problem:conflict", "status": status}
                results.append({"job_id": job_id, "state": None, "problem": refusal})
                continue
            outcome = item.pop("outcome")
            if outcome != "succeeded":
                item["cancelled"] = outcome == "cancelled"
            self.reports[job_id] = ("complete" if outcome == "succeeded" else "fail", item)
            state = "succeeded" if outcome == "succeeded" else "retrying"
            results.append({"job_id": job_id, "state": state, "problem": None})
        return httpx.Response(200, json={"results": results})


def problem(status: int, slug: str) -> httpx.Response:
    body = {"type": f"urn:logline:problem:{slug}", "title": slug, "status": status}
    return httpx.Response(status, json=body, headers={"content-type": "application/problem+json"})


def registry() -> HandlerRegistry:
    handlers = builtin_handlers()

    @handlers.handler("test.echo")
    def echo(ctx: JobContext, payload: Any) -> Any:
        return {"payload": payload, "attempt": ctx.attempt}

    @handlers.handler("test.permanent")
    def permanent(ctx: JobContext, payload: Any) -> None:
        raise PermanentError("bad input\nreally")

    @handlers.handler("test.keyerror")
    def keyerror(ctx: JobContext, payload: Any) -> None:
        raise KeyError("k")

    @handlers.handler("test.not_json")
    def not_json(ctx: JobContext, payload: Any) -> Any:
        return {1, 2}

    @handlers.handler("test.stubborn")
    def stubborn(ctx: JobContext, payload: Any) -> None:
        time.sleep(1.5)  # ignores cancellation

    return handlers


async def serve(fake: FakeNodeApi, until: Callable[[], bool], **options: Any) -> Worker:
    worker = Worker("http://server", "llk_test", registry(), transport=httpx.MockTransport(fake),
                    wait_s=0.05, lease_s=options.pop("lease_s", 1.0), **options)  # fmt: skip
    task = asyncio.create_task(worker.serve(handle_signals=False))
    deadline = time.monotonic() + 10
    while not until() and not task.done():
        assert time.monotonic() < deadline, f"timed out; reports: {fake.reports}"
        await asyncio.sleep(0.01)
    worker.stop()
    await asyncio.wait_for(task, 15)
    return worker


def outcomes(jobs: list[dict[str, Any]], **options: Any) -> dict[str, tuple[str, dict[str, Any]]]:
    fake = FakeNodeApi(list(jobs))
    asyncio.run(serve(fake, lambda: len(fake.reports) == len(jobs), **options))
    return fake.reports


def test_outcomes_are_reported_with_the_attempt_they_belong_to() -> None:
    reports = outcomes([
        job("a", "test.echo", {"x": 1}), job("b", "test.permanent"), job("c", "test.keyerror"),
        job("d", "no.such_type"), job("e", "test.not_json"), job("f", "logline.fail"),
        job("g", "logline.sleep", {"seconds": 5}, timeout_s=0.2),
        job("h", "logline.fail", {"message": "x" * 20_000}),
    ])  # fmt: skip
    result = {"payload": {"x": 1}, "attempt": 1}
    assert reports["a"] == ("complete", {"tenant": "acme", "attempt": 1, "result": result})
    failures = {k: (v[1]["error"], v[1]["retryable"]) for k, v in reports.items() if k != "a"}
    assert failures == {
        "b": ("bad input really", False),
        "c": ("KeyError: 'k'", True),
        "d": ("no handler for no.such_type", False),
        "e": (failures["e"][0], False),
        "f": ("failed on purpose", True),
        "g": ("timed out after 0.2 s", True),
        "h": ("x" * MAX_ERROR_CHARS, True),
    }
    assert failures["e"][0].startswith("the result is not JSON")
    assert not any(v[1]["cancelled"] for k, v in reports.items() if k != "a")


def test_concurrency_limits_claims() -> None:
    fake = FakeNodeApi([job(str(i), "logline.sleep", {"seconds": 0.1}) for i in range(6)])
    limits: list[int] = []
    inner = fake.__call__

    async def spy(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/nodes/claim":
            limits.append(json.loads(request.content)["limit"])
        return await inner(request)

    worker = Worker("http://server", "k", registry(), transport=httpx.MockTransport(spy),
                    concurrency=2, wait_s=0.05)  # fmt: skip

    async def main() -> None:
        task = asyncio.create_task(worker.serve(handle_signals=False))
        while len(fake.reports) < 6:
            await asyncio.sleep(0.01)
        worker.stop()
        await task

    asyncio.run(main())
    assert limits and max(limits) == 2 and all(1 <= n <= 2 for n in limits)


def test_a_cancel_request_from_a_heartbeat_stops_the_handler_and_is_reported() -> None:
    fake = FakeNodeApi([job("s", "logline.sleep", {"seconds": 30})])
    fake.on_beat = lambda job_id: httpx.Response(200, json={"cancel_requested": True})
    started = time.monotonic()
    asyncio.run(serve(fake, lambda: "s" in fake.reports))
    action, body = fake.reports["s"]
    assert action == "fail" and body["cancelled"] is True and body["retryable"] is False
    assert time.monotonic() - started < 5


def test_a_lost_lease_stops_the_handler_and_reports_nothing() -> None:
    fake = FakeNodeApi([job("s", "logline.sleep", {"seconds": 30})])
    fake.on_beat = lambda job_id: problem(409, "conflict")
    # Stopping drains: the worker returns once the job's task has ended.
    worker = asyncio.run(serve(fake, lambda: bool(fake.beats)))
    assert fake.reports == {} and worker.counts["lost"] == 1


def test_heartbeats_renew_while_a_job_runs() -> None:
    fake = FakeNodeApi([job("s", "logline.sleep", {"seconds": 1.0})])
    asyncio.run(serve(fake, lambda: "s" in fake.reports, lease_s=1.0))
    assert len(fake.beats) >= 2 and fake.reports["s"][0] == "complete"


def test_reports_are_retried_on_5xx_and_connection_failures() -> None:
    def flaky(job_id: str, attempt: int) -> httpx.Response | None:
        if attempt == 1:
            return problem(503, "unavailable")
        if attempt == 2:
            raise httpx.ConnectError("refused")
        return None

    fake = FakeNodeApi([job("a", "logline.noop")], on_report=flaky)
    asyncio.run(serve(fake, lambda: "a" in fake.reports))
    assert fake.tries["a"] == 3 and fake.reports["a"][0] == "complete"


def test_a_refused_result_is_reported_as_a_failure() -> None:
    def refuse(job_id: str, attempt: int) -> httpx.Response | None:
        return problem(422, "invalid-input") if attempt == 1 else None

    fake = FakeNodeApi([job("a", "logline.noop")], on_report=refuse)
    asyncio.run(serve(fake, lambda: "a" in fake.reports))
    action, body = fake.reports["a"]
    assert action == "fail" and body["retryable"] is False and "result refused" in body["error"]


def test_shutdown_drains_then_reports_what_is_still_running() -> None:
    fake = FakeNodeApi([job("quick", "logline.sleep", {"seconds": 0.2}),
                        job("slow", "logline.sleep", {"seconds": 30}),
                        job("stuck", "test.stubborn")])  # fmt: skip

    async def main() -> Worker:
        worker = Worker("http://server", "k", registry(), transport=httpx.MockTransport(fake),
                        wait_s=0.05, grace_s=0.4)  # fmt: skip
        task = asyncio.create_task(worker.serve(handle_signals=False))
        while len(worker.running) < 3:
            await asyncio.sleep(0.01)
        worker.stop()
        await asyncio.wait_for(task, 10)
        return worker

    worker = asyncio.run(main())
    assert fake.reports["quick"][0] == "complete"
    for name in ("slow", "stuck"):
        action, body = fake.reports[name]
        assert (action, body["error"], body["retryable"]) == ("fail", "worker shutting down", True)
    assert worker.abandoned == 1  # the stuck thread sleeps on; the CLI exits without it


def test_a_rejected_key_stops_the_worker_at_once() -> None:
    fake = FakeNodeApi([], api_key_ok=False)
    worker = Worker("http://server", "k", registry(), transport=httpx.MockTransport(fake))
    with pytest.raises(Unauthenticated):
        asyncio.run(worker.serve(handle_signals=False))


def test_a_refused_claim_drains_then_raises() -> None:
    fake = FakeNodeApi([job("a", "logline.sleep", {"seconds": 0.3})])
    claims = 0
    inner = fake.__call__

    async def refuse_second_claim(request: httpx.Request) -> httpx.Response:
        nonlocal claims
        if request.url.path == "/v1/nodes/claim":
            claims += 1
            if claims > 1:
                return problem(403, "forbidden")
        return await inner(request)

    worker = Worker("http://server", "k", registry(), wait_s=0.05,
                    transport=httpx.MockTransport(refuse_second_claim))  # fmt: skip
    with pytest.raises(Forbidden):
        asyncio.run(worker.serve(handle_signals=False))
    assert fake.reports["a"][0] == "complete"


def test_the_node_registers_heartbeats_drains_and_deregisters() -> None:
    fake = FakeNodeApi([job("a", "logline.sleep", {"seconds": 0.4})])

    async def main() -> Worker:
        worker = Worker("http://server", "k", registry(), transport=httpx.MockTransport(fake),
                        wait_s=0.05, concurrency=3, labels={"zone": "eu-1"})  # fmt: skip
        task = asyncio.create_task(worker.serve(handle_signals=False))
        while not any(beat["running"] == 1 for beat in fake.node_beats):
            await asyncio.sleep(0.01)
        worker.stop()  # while the job runs: the node reports draining at once
        await asyncio.wait_for(task, 10)
        return worker

    worker = asyncio.run(main())
    [registration] = fake.registered
    assert registration["labels"] == {"zone": "eu-1"} and registration["queues"] == ["default"]
    assert registration["concurrency"] == 3 and "logline.sleep" in registration["types"]
    assert registration["pid"] > 0 and registration["host"] and registration["version"]
    assert worker.session is not None and worker.heartbeat_s == fake.heartbeat_s
    assert {beat["session"] for beat in fake.node_beats} == {worker.session}
    draining = [beat for beat in fake.node_beats if beat["draining"]]
    assert draining and draining[0]["running"] == 1  # reported before the drain ended
    assert fake.reports["a"][0] == "complete"
    assert fake.deregistered == [{"session": worker.session}]


def test_registration_waits_for_the_server() -> None:
    fake = FakeNodeApi([job("a", "logline.noop")])
    refused = 0
    inner = fake.__call__

    async def down_at_first(request: httpx.Request) -> httpx.Response:
        nonlocal refused
        if request.url.path == "/v1/nodes/register" and refused < 1:
            refused += 1
            raise httpx.ConnectError("refused")
        return await inner(request)

    worker = Worker("http://server", "k", registry(), wait_s=0.05,
                    transport=httpx.MockTransport(down_at_first))  # fmt: skip

    async def main() -> None:
        task = asyncio.create_task(worker.serve(handle_signals=False))
        while "a" not in fake.reports:
            await asyncio.sleep(0.01)
        worker.stop()
        await asyncio.wait_for(task, 10)

    asyncio.run(main())
    assert refused == 1 and len(fake.registered) == 1


def test_a_superseded_session_stops_the_beats_but_not_the_jobs() -> None:
    fake = FakeNodeApi([job("a", "logline.sleep", {"seconds": 0.4})])
    fake.on_node_beat = lambda body: problem(409, "conflict")
    asyncio.run(serve(fake, lambda: "a" in fake.reports))
    assert len(fake.node_beats) == 1 and fake.reports["a"][0] == "complete"


def test_a_node_the_server_forgot_registers_again() -> None:
    fake = FakeNodeApi([job("a", "logline.sleep", {"seconds": 0.4})])
    fake.on_node_beat = lambda body: problem(404, "not-found") if len(fake.registered) < 2 else None
    asyncio.run(serve(fake, lambda: "a" in fake.reports and len(fake.node_beats) >= 3))
    assert len(fake.registered) == 2
    assert fake.node_beats[-1]["session"] != fake.node_beats[0]["session"]


def test_bad_labels_are_refused_at_once() -> None:
    with pytest.raises(InvalidInput, match="label key"):
        Worker("http://server", "k", registry(), labels={"no spaces": "x"})


def test_error_lines() -> None:
    assert one_line_error(RuntimeError("a\n  b")) == "a b"
    assert one_line_error(ValueError("x")) == "ValueError: x"
    assert one_line_error(PermanentError()) == "PermanentError"


def test_reports_of_jobs_ending_together_share_requests() -> None:
    jobs = [job(str(i), "logline.noop") for i in range(30)]
    fake = FakeNodeApi(jobs, refused={"7": 409})
    worker = asyncio.run(serve(fake, lambda: len(fake.reports) == 29, concurrency=30))
    assert fake.report_requests < 10
    assert worker.counts["succeeded"] == 29 and worker.counts["lost"] == 1
    assert "7" not in fake.reports


def test_the_batcher_sends_what_gathered_and_answers_each_report() -> None:
    sent: list[list[str]] = []
    gate = asyncio.Event()

    async def send(items: list[dict[str, Any]]) -> list[str | LogLineError]:
        sent.append([item["id"] for item in items])
        if len(sent) == 1:
            await gate.wait()
        return [ApiConflict(409, {"detail": "gone"}) if i["id"] == "b" else "succeeded"
                for i in items]  # fmt: skip

    async def main() -> list[Any]:
        batcher = ReportBatcher(send)
        first = asyncio.create_task(batcher.send({"id": "a"}))
        await asyncio.sleep(0.01)  # "a" is on its way; these gather meanwhile
        rest = [asyncio.create_task(batcher.send({"id": i})) for i in ("b", "c", "d")]
        await asyncio.sleep(0.01)
        gate.set()
        return await asyncio.gather(first, *rest, return_exceptions=True)

    results = asyncio.run(main())
    assert sent == [["a"], ["b", "c", "d"]]
    assert results[0] == "succeeded" and isinstance(results[1], ApiConflict)
    assert results[2:] == ["succeeded", "succeeded"]


def test_a_batch_that_fails_fails_each_of_its_reports() -> None:
    async def send(items: list[dict[str, Any]]) -> list[str | LogLineError]:
        raise ConnectionFailed("refused", sent=False)

    async def main() -> list[Any]:
        batcher = ReportBatcher(send)
        return list(
            await asyncio.gather(
                batcher.send({"id": "a"}), batcher.send({"id": "b"}), return_exceptions=True
            )
        )

    assert all(isinstance(r, ConnectionFailed) for r in asyncio.run(main()))
