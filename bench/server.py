"""Server processes for the server benchmarks: `logline up` and the bare app, on ports the OS picks.

    with running(start_logline(home)) as server:         # SQLite in `home`; PostgreSQL by URL
        token = server.login()
        writers = make_writers(4)
        enrol_writers(server.url, token, writers)

The servers run with the rate limits raised out of the way (BENCH_LIMITS): the defaults allow one
principal 1,200 reads and 3,000 writes a minute, which a benchmark spends in a second. Access
tokens live a day, so a long run does not need to refresh them. Everything else is the default.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.common import proc_cpu_seconds
from logline.identity.documents import creation_span
from logline.identity.ids import LogLineId
from logline.identity.keys import PrivateKey
from logline.ledger.span import Span, new_span

TENANT = "default"  # the tenant `logline up` makes, whose owner is the admin user
STARTUP_TIMEOUT_S = 120.0
BENCH_LIMITS = {
    "auth": "100000/minute",
    "read": "10000000/minute",
    "write": "10000000/minute",
    "stream": "100000/minute",
}
BENCH_ENV = {
    "LOGLINE_LOG_LEVEL": "warning",
    "LOGLINE_RATE_LIMITS": json.dumps(BENCH_LIMITS),
    "LOGLINE_ACCESS_TOKEN_TTL_S": "86400",
}
_BANNER = re.compile(r"serving at (http://\S+)")


@dataclass
class ServerProcess:
    """A server subprocess and what it printed (read all along, so its output never blocks it)."""

    url: str
    process: subprocess.Popen[str]
    output: list[str] = field(default_factory=list)
    home: Path | None = None
    reader: threading.Thread | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def cpu_seconds(self) -> float:
        """User + system CPU seconds the server process has used so far."""
        return proc_cpu_seconds([self.pid]).get(self.pid, 0.0)

    def login(self, tenants: tuple[str, ...] = (TENANT,)) -> str:
        """An access token for the admin user that `logline up` made."""
        assert self.home is not None, "only a LogLine server has a login"
        password = (self.home / "admin-password").read_text().strip()
        response = httpx.post(
            f"{self.url}/v1/auth/login",
            json={"username": "admin", "password": password, "tenants": list(tenants)},
            timeout=60,
        )
        if response.status_code != 200:
            raise RuntimeError(f"login failed: {response.status_code} {response.text}")
        token: str = response.json()["access_token"]
        return token

    def stop(self, timeout: float = 60.0) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
                raise RuntimeError(
                    f"the server did not stop in {timeout} s:\n{self.log()}"
                ) from None
        if self.reader is not None:
            self.reader.join(10)
        if self.process.stdout is not None:
            self.process.stdout.close()

    def log(self) -> str:
        return "".join(self.output[-100:])


def _start(command: list[str], env: dict[str, str], home: Path | None = None) -> ServerProcess:
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    output: list[str] = []
    found = threading.Event()
    url: list[str] = []

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)
            match = _BANNER.search(line)
            if match and not found.is_set():
                url.append(match.group(1))
                found.set()
        found.set()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not found.wait(0.1):
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError("the server did not start:\n" + "".join(output))
    server = ServerProcess(url[0] if url else "", process, output, home, reader)
    if not url:
        process.wait(10)
        server.stop()
        raise RuntimeError(f"the server exited ({process.returncode}):\n" + "".join(output))
    return server


def _env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGLINE_")}
    env.update(BENCH_ENV)
    env.update(extra)
    return env


def logline_command() -> list[str]:
    beside = Path(sys.executable).parent / "logline"
    found = str(beside) if beside.exists() else shutil.which("logline")
    if not found:
        raise RuntimeError("the logline console script is not installed (pip install -e .)")
    return [found]


def start_logline(
    home: Path, *, database_url: str | None = None, env: dict[str, str] | None = None
) -> ServerProcess:
    """`logline up --port 0` on `home` (made on the first start, with tenant `default`)."""
    extra = dict(env or {})
    if database_url is not None:
        extra["LOGLINE_DATABASE_URL"] = database_url
    command = [*logline_command(), "--home", str(home), "up", "--port", "0"]
    return _start(command, _env(extra), home)


def start_bare() -> ServerProcess:
    """The bare FastAPI app of `bench.bare`, the baseline of the server benchmarks."""
    root = str(Path(__file__).resolve().parent.parent)
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    return _start([sys.executable, "-m", "bench.bare"], _env({"PYTHONPATH": path}))


@contextmanager
def running(server: ServerProcess) -> Iterator[ServerProcess]:
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Writers:
    """Identities that write the benchmark's spans: their keys and `identity.created` spans."""

    keys: dict[str, PrivateKey]
    creations: list[Span]

    @property
    def authors(self) -> list[str]:
        return list(self.keys)


def make_writers(count: int, tenant: str = TENANT) -> Writers:
    run = uuid.uuid4().hex[:8]
    keys: dict[str, PrivateKey] = {}
    creations = []
    for i in range(count):
        key = PrivateKey.generate()
        identity = LogLineId.of("service", f"bench-{run}-{i}")
        keys[str(identity)] = key
        creations.append(creation_span(key, tenant, identity, f"Bench writer {i}"))
    return Writers(keys, creations)


def enrol_writers(url: str, token: str, writers: Writers, tenant: str = TENANT) -> None:
    """Register the writers on `tenant` and make them members, so the admin may post their
    spans (a principal may post spans by identities that may write in the tenant)."""
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
        for span in writers.creations:
            response = client.post(f"/v1/tenants/{tenant}/identities", json=span.to_json())
            if response.status_code != 201:
                raise RuntimeError(
                    f"registering {span.author}: {response.status_code} {response.text}"
                )
            response = client.put(
                f"/v1/tenants/{tenant}/members/{span.author}", json={"role": "member"}
            )
            if response.status_code != 200:
                raise RuntimeError(
                    f"granting {span.author}: {response.status_code} {response.text}"
                )


def sign_spans(
    writers: Writers, count: int, *, start: int = 0, tenant: str = TENANT, kind: str = "bench.event"
) -> list[Span]:
    """`count` signed spans, round-robin over the writers (signing is the client's cost)."""
    authors = writers.authors
    spans = []
    for i in range(start, start + count):
        author = authors[i % len(authors)]
        spans.append(
            new_span(
                writers.keys[author],
                tenant=tenant,
                author=author,
                kind=kind,
                title=f"Bench event {i}",
                tags=["bench"],
                payload={"i": i, "amount": i % 1000, "currency": "EUR"},
            )
        )
    return spans


def wire(spans: list[Span]) -> list[bytes]:
    """Each span as the JSON body of `POST /spans`."""
    return [json.dumps(span.to_json(), separators=(",", ":")).encode() for span in spans]


def wire_batch(spans: list[Span]) -> bytes:
    """The spans as the JSON body of `POST /spans/batch`."""
    body = {"spans": [span.to_json() for span in spans]}
    return json.dumps(body, separators=(",", ":")).encode()
