"""Handlers: the registry, module loading, the built-ins, the http allow-list, cancellation."""

from __future__ import annotations

import asyncio
import doctest
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from logline.engine import handlers as module
from logline.engine.handlers import (
    HandlerRegistry,
    HttpAllowList,
    JobCancelled,
    JobContext,
    PermanentError,
    builtin_handlers,
    invoke,
    load_handlers,
    load_registry,
)
from logline.errors import ConfigError, InvalidIdentifier


def context(job_type: str = "test.job", timeout_s: float = 30.0) -> JobContext:
    return JobContext(job_id="j1", tenant="acme", type=job_type, attempt=1, timeout_s=timeout_s)


def run(
    registry: HandlerRegistry, job_type: str, payload: Any, ctx: JobContext | None = None
) -> Any:
    return asyncio.run(invoke(registry.get(job_type), ctx or context(job_type), payload))


def test_module_example_runs() -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


# --- the registry ---------------------------------------------------------------------------------


def test_decorator_registers_the_function_unchanged() -> None:
    registry = HandlerRegistry()

    @registry.handler("report.render")
    def render(ctx: JobContext, payload: Any) -> Any:
        return {"month": payload["month"], "job": ctx.job_id}

    assert render(context(), {"month": "10"}) == {"month": "10", "job": "j1"}
    assert "report.render" in registry and registry.names() == ["report.render"]
    assert run(registry, "report.render", {"month": "10"}) == {"month": "10", "job": "j1"}


def test_sync_handlers_run_in_a_thread_and_async_ones_on_the_loop() -> None:
    registry = HandlerRegistry()
    seen: dict[str, str] = {}

    @registry.handler("where.sync")
    def sync(ctx: JobContext, payload: Any) -> None:
        seen["sync"] = threading.current_thread().name

    @registry.handler("where.async")
    async def in_loop(ctx: JobContext, payload: Any) -> None:
        seen["async"] = threading.current_thread().name

    assert not registry.get("where.sync").is_async  # type: ignore[union-attr]
    assert registry.get("where.async").is_async  # type: ignore[union-attr]
    run(registry, "where.sync", None)
    run(registry, "where.async", None)
    assert seen["async"] == threading.main_thread().name != seen["sync"]


def test_a_type_is_registered_once_and_named_like_a_kind() -> None:
    registry = HandlerRegistry()
    registry.add("a.b", module.noop)
    with pytest.raises(ConfigError, match=r"two handlers for job type a\.b"):
        registry.add("a.b", module.noop)
    with pytest.raises(InvalidIdentifier):
        registry.add("noop", module.noop)
    other = HandlerRegistry()
    other.add("a.b", module.noop)
    with pytest.raises(ConfigError):
        registry.include(other)


def test_no_handler_is_a_permanent_error() -> None:
    with pytest.raises(PermanentError, match=r"no handler for x\.y"):
        run(HandlerRegistry(), "x.y", None)


# --- loading user modules -------------------------------------------------------------------------

TASKS = """
from logline.engine.handlers import HandlerRegistry

handlers = HandlerRegistry()
extra = HandlerRegistry()


@handlers.handler("mine.double")
def double(ctx, payload):
    return payload * 2


@extra.handler("mine.triple")
async def triple(ctx, payload):
    return payload * 3
"""


@pytest.fixture
def tasks_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    name = f"user_tasks_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(TASKS)
    (tmp_path / f"{name}_broken.py").write_text("raise RuntimeError('nope')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def test_a_module_is_loaded_by_its_handlers_registry(tasks_module: str) -> None:
    registry = load_handlers([tasks_module, f"{tasks_module}:extra"], into=builtin_handlers())
    assert {"mine.double", "mine.triple", "logline.noop"} <= set(registry.names())
    assert run(registry, "mine.double", 21) == 42
    assert run(registry, "mine.triple", 2) == 6


def test_loading_errors_are_config_errors(tasks_module: str) -> None:
    with pytest.raises(ConfigError, match="cannot import handlers module no_such_mod"):
        load_registry("no_such_mod")
    with pytest.raises(ConfigError, match="nope"):
        load_registry(f"{tasks_module}_broken")
    with pytest.raises(ConfigError, match="no HandlerRegistry named 'missing'"):
        load_registry(f"{tasks_module}:missing")
    with pytest.raises(ConfigError, match="two handlers"):
        load_handlers([tasks_module, tasks_module], into=HandlerRegistry())


# --- built-ins ------------------------------------------------------------------------------------


def test_noop_and_fail() -> None:
    registry = builtin_handlers()
    assert run(registry, "logline.noop", None) is None
    with pytest.raises(RuntimeError, match=r"^boom$"):
        run(registry, "logline.fail", {"message": "boom"})
    with pytest.raises(PermanentError, match=r"^final$"):
        run(registry, "logline.fail", {"message": "final", "retryable": False})
    with pytest.raises(PermanentError, match="JSON object"):
        run(registry, "logline.fail", [1])


def test_sleep_sleeps_and_checks_its_payload() -> None:
    registry = builtin_handlers()
    assert run(registry, "logline.sleep", {"seconds": 0.01}) == {"slept": 0.01}
    for bad in ({"seconds": -1}, {"seconds": "1"}, {"seconds": True}):
        with pytest.raises(PermanentError):
            run(registry, "logline.sleep", bad)


def test_sleep_stops_at_once_when_cancelled_from_another_thread() -> None:
    ctx = context("logline.sleep")
    threading.Timer(0.1, ctx.cancel).start()
    started = time.monotonic()
    assert not ctx.returned
    with pytest.raises(JobCancelled):
        run(builtin_handlers(), "logline.sleep", {"seconds": 30}, ctx)
    assert time.monotonic() - started < 5
    assert ctx.cancelled and ctx.returned


def test_context_sleeps_wake_on_cancel() -> None:
    ctx = context()
    assert ctx.sleep(0.01) is False
    threading.Timer(0.05, ctx.cancel).start()
    assert ctx.sleep(30) is True
    assert asyncio.run(ctx.sleep_async(30)) is True  # already cancelled: returns at once
    with pytest.raises(JobCancelled):
        ctx.check_cancelled()


def test_deadline_comes_from_the_timeout() -> None:
    assert 9 < context(timeout_s=10).remaining_s <= 10


# --- http -----------------------------------------------------------------------------------------

ALLOW = ["https://api.example.com/v1/", "http://hooks.example.org:8080/in"]


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example.com/v1/x",
        "https://api.example.com/v2/x",
        "https://api.example.com/v1/../admin",
        "https://api.example.com/v1/%2e%2e/admin",
        "https://api.example.com/v1/%2F..%2Fadmin",
        "https://user:pw@api.example.com/v1/x",
        "https://api.example.com.evil.com/v1/x",
        "https://api.example.com:8443/v1/x",
        "http://api.example.com/v1/x",
        "http://hooks.example.org:8080/inbox",
        "http://hooks.example.org/in",
        "file:///etc/passwd",
        "not a url",
    ],
)
def test_http_refuses_urls_off_the_allow_list(url: str) -> None:
    with pytest.raises(PermanentError):
        HttpAllowList(ALLOW).check(url)


@pytest.mark.parametrize(
    "url",
    [
        "https://api.example.com/v1/x?y=1",
        "HTTPS://API.EXAMPLE.COM/v1/deep/path",
        "https://api.example.com:443/v1/x",
        "http://hooks.example.org:8080/in",
        "http://hooks.example.org:8080/in/sub",
    ],
)
def test_http_allows_urls_under_a_prefix(url: str) -> None:
    HttpAllowList(ALLOW).check(url)


def test_an_empty_allow_list_allows_nothing_and_bad_prefixes_are_config_errors() -> None:
    with pytest.raises(PermanentError, match="--http-allow"):
        HttpAllowList().check("https://api.example.com/v1/")
    for bad in ("ftp://x/", "https://user@x/", "/relative"):
        with pytest.raises(ConfigError):
            HttpAllowList([bad])


def test_http_calls_without_following_redirects_and_truncates() -> None:
    requests: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        if request.url.path == "/v1/moved":
            return httpx.Response(302, headers={"Location": "https://evil.example.com/"})
        if request.url.path == "/v1/down":
            return httpx.Response(503)
        return httpx.Response(201, text="x" * 10_000)

    registry = builtin_handlers(ALLOW, http_transport=httpx.MockTransport(answer))
    call = {"url": "https://api.example.com/v1/a", "method": "post", "body": {"k": 1}}
    result = run(registry, "logline.http", call)
    assert result == {"status": 201, "body": "x" * module.HTTP_BODY_CHARS}
    assert requests[0].method == "POST" and requests[0].content == b'{"k":1}'
    moved = run(registry, "logline.http", {"url": "https://api.example.com/v1/moved"})
    assert moved["status"] == 302 and len(requests) == 2
    with pytest.raises(RuntimeError, match="503"):
        run(registry, "logline.http", {"url": "https://api.example.com/v1/down"})
    with pytest.raises(PermanentError, match="method"):
        run(registry, "logline.http", {"url": "https://api.example.com/v1/a", "method": "TRACE"})
    with pytest.raises(PermanentError, match="allow"):
        run(registry, "logline.http", {"url": "https://evil.example.com/"})
    assert len(requests) == 3
