"""Real `logline up` / `logline serve` processes for end-to-end tests, and scratch databases.

    with running_server(tmp_path / "home") as server:       # `logline up` on SQLite
        token = server.login()
        server.client(token).get("/v1/tenants/default/spans")

    with private_postgres() as pg:                          # a PostgreSQL cluster of one's own
        pg.stop("immediate"); pg.start()                    # ...that a test may crash at will

A server listens on a port the OS picks (`--port 0`); its banner line gives the URL. Stopping sends
SIGTERM and waits for a graceful exit; `kill()` is `kill -9`.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

import httpx
import pytest

STARTUP_TIMEOUT_S = 60.0
PG_SERVER = os.environ.get("LOGLINE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
_BANNER = re.compile(r"LogLine serving at (http://\S+)")


def logline_command() -> list[str]:
    beside = Path(sys.executable).parent / "logline"
    found = str(beside) if beside.exists() else shutil.which("logline")
    assert found, "the logline console script is not installed (pip install -e .)"
    return [found]


@dataclass
class RunningServer:
    url: str
    home: Path
    process: subprocess.Popen[str]
    tenant: str = "default"
    output: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None

    @property
    def password(self) -> str:
        return (self.home / "admin-password").read_text().strip()

    def login(
        self, tenants: list[str] | None = None, username: str = "admin", password: str | None = None
    ) -> str:
        response = httpx.post(
            f"{self.url}/v1/auth/login",
            json={
                "username": username,
                "password": password or self.password,
                "tenants": tenants or [self.tenant],
            },
            timeout=30,
        )
        assert response.status_code == 200, response.text
        token: str = response.json()["access_token"]
        return token

    def client(self, token: str | None = None, **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, **kwargs)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise AssertionError(f"server did not stop in {timeout} s:\n{self.log()}") from None
        finally:
            self._close_output()

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(10)
        self._close_output()

    def _close_output(self) -> None:
        if self.reader is not None:
            self.reader.join(10)
        if self.process.stdout is not None:
            self.process.stdout.close()

    def log(self) -> str:
        return "".join(self.output[-200:])


def server_env(database_url: str | None = None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGLINE_")}
    if database_url is not None:
        env["LOGLINE_DATABASE_URL"] = database_url
    # No embedded worker node unless a test asks for one: it is a process per server.
    env.update(
        {
            "LOGLINE_LOG_LEVEL": "warning",
            "LOGLINE_CHECKPOINT_INTERVAL_S": "0.2",
            "LOGLINE_EMBEDDED_NODE": "false",
            **extra,
        }
    )
    return env


def start_server(
    home: Path,
    *,
    command: str = "up",
    database_url: str | None = None,
    env: dict[str, str] | None = None,
    port: int = 0,
) -> RunningServer:
    """Start `logline <command> --port 0` (or `port`: a restart where clients expect it) and
    wait for its banner."""
    process = subprocess.Popen(
        [*logline_command(), "--home", str(home), command, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=server_env(database_url, **(env or {})),
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
            process.wait(10)
            raise AssertionError("server did not start:\n" + "".join(output))
    if not url:
        process.wait(10)
        reader.join(10)
        if process.stdout is not None:
            process.stdout.close()
        raise AssertionError(f"server exited ({process.returncode}):\n" + "".join(output))
    return RunningServer(url[0], home, process, output=output, reader=reader)


@contextmanager
def running_server(home: Path, **kwargs: Any) -> Iterator[RunningServer]:
    server = start_server(home, **kwargs)
    try:
        yield server
    finally:
        if server.process.poll() is None:
            server.stop()


@contextmanager
def scratch_postgres() -> Iterator[str]:
    """A new, empty PostgreSQL database for one test (dropped after); fails under CI=true if the
    server is unreachable, else skips."""
    try:
        import psycopg
        from psycopg import sql
    except ImportError as exc:  # pragma: no cover
        pytest.skip(f"psycopg missing: {exc}")
    try:
        admin = psycopg.connect(PG_SERVER, autocommit=True, connect_timeout=5)
    except psycopg.Error as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required when CI=true: {exc}", pytrace=False)
        pytest.skip(f"PostgreSQL unreachable at {PG_SERVER}: {exc}")
    name = f"logline_e2e_{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            yield urlsplit(PG_SERVER)._replace(path=f"/{name}").geturl()
        finally:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


# --- a PostgreSQL cluster of the test's own ---------------------------------------------------

PG_BIN = Path(os.environ.get("LOGLINE_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))


@dataclass
class PrivatePostgres:
    """A PostgreSQL cluster that only this test uses, so it may stop and crash it at will (the
    shared server at LOGLINE_TEST_PG serves other tests in parallel). Listens on 127.0.0.1:`port`
    and a unix socket in `root`; trust authentication, user `postgres`."""

    root: Path
    port: int
    as_user: list[str]  # `runuser -u postgres --` when running as root, else nothing

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def pg_ctl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.as_user, str(PG_BIN / "pg_ctl"), "-D", str(self.data), *args],
            capture_output=True, text=True, timeout=timeout, env=_pg_env(),
        )  # fmt: skip

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c full_page_writes=off -c max_connections=60 -c shared_buffers=16MB"
        )
        done = self.pg_ctl(
            "start", "-w", "-t", "60", "-l", str(self.root / "postgres.log"), "-o", options
        )
        assert done.returncode == 0, (
            f"pg_ctl start failed:\n{done.stdout}{done.stderr}\n{self.log()}"
        )

    def stop(self, mode: str = "fast") -> None:
        """`fast` rolls back and disconnects; `immediate` is a crash (recovery when started)."""
        done = self.pg_ctl("stop", "-w", "-t", "60", "-m", mode)
        assert done.returncode == 0, f"pg_ctl stop failed:\n{done.stdout}{done.stderr}"

    def running(self) -> bool:
        return self.pg_ctl("status").returncode == 0

    def log(self) -> str:
        path = self.root / "postgres.log"
        return path.read_text()[-4000:] if path.exists() else ""


def _pg_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("PG", "LOGLINE_"))}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    """A fresh PostgreSQL cluster (initdb) in a temporary directory, started; stopped and removed
    after, also on failure. Without the server binaries (PG_BIN) it skips, or fails under CI=true.
    As root the binaries run as the `postgres` OS user (PostgreSQL refuses to run as root)."""

    def unavailable(reason: str) -> NoReturn:
        if os.environ.get("CI") == "true":
            pytest.fail(f"a private PostgreSQL cluster is required when CI=true: {reason}",
                        pytrace=False)  # fmt: skip
        pytest.skip(f"no private PostgreSQL cluster: {reason} (set LOGLINE_TEST_PG_BIN)")

    missing = [n for n in ("initdb", "pg_ctl", "postgres") if not (PG_BIN / n).exists()]
    if missing:
        unavailable(f"{', '.join(missing)} not found in {PG_BIN}")
    as_user: list[str] = []
    owner: tuple[int, int] | None = None
    if os.geteuid() == 0:
        import pwd

        try:
            entry = pwd.getpwnam("postgres")
        except KeyError:
            unavailable("running as root and there is no `postgres` user to run PostgreSQL as")
        runuser = shutil.which("runuser")
        if runuser is None:
            unavailable("running as root and runuser is missing")
        as_user, owner = [str(runuser), "-u", "postgres", "--"], (entry.pw_uid, entry.pw_gid)
    # Not under pytest's tmp_path: its parents are private to the user running the tests. Short,
    # too: the unix socket's path must fit in about 100 bytes.
    root = Path(tempfile.mkdtemp(prefix="logline-pg-"))
    try:
        if owner is not None:
            os.chown(root, *owner)
        cluster = PrivatePostgres(root, free_port(), as_user)
        made = subprocess.run(
            [*as_user, str(PG_BIN / "initdb"), "-D", str(cluster.data), "-A", "trust",
             "-U", "postgres", "-E", "UTF8", "--no-sync", "--no-instructions"],
            capture_output=True, text=True, timeout=120, env=_pg_env(),
        )  # fmt: skip
        assert made.returncode == 0, f"initdb failed:\n{made.stdout}{made.stderr}"
        cluster.start()
        try:
            yield cluster
        finally:
            if cluster.running():
                cluster.pg_ctl("stop", "-w", "-t", "30", "-m", "immediate")
    finally:
        shutil.rmtree(root, ignore_errors=True)
