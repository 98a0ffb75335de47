"""One small interface per job system: set up, enqueue, submit one, start and stop its workers,
clean up. `bench.jobs_baselines.runner` measures any `System` the same way; the LogLine job engine
can be measured by writing one more subclass whose jobs call `mark.mark(submitted)`.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.metadata
import importlib.util
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, ClassVar

import redis

from bench.common import (
    pg_backend_cpu,
    pg_create_database,
    pg_database_url,
    pg_drop_database,
    proc_cpu_seconds,
)
from bench.jobs_baselines import (
    tasks_bare,
    tasks_celery,
    tasks_dramatiq,
    tasks_huey,
    tasks_pgqueuer,
)
from bench.jobs_baselines.mark import PREFIX_ENV, REDIS_ENV

REPO = Path(__file__).resolve().parents[2]
WORKER_PROCESSES = 2  # one per core on the 2-core machines the figures are for
STOP_TIMEOUT_S = 15.0


@dataclass
class Config:
    redis_url: str  # the broker of Celery, Dramatiq and the bare queue, and where jobs mark
    prefix: str  # every Redis key, queue and database of the run is named after it
    tmp_dir: Path  # Huey's SQLite file and the workers' logs
    pg_admin_url: str

    @property
    def pg_database(self) -> str:
        return self.prefix.replace("-", "_")  # unique per run: concurrent runs never collide


@dataclass
class System:
    """A job system under test. Subclasses name their worker commands and how to enqueue."""

    config: Config
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[IO[bytes]] = field(default_factory=list)

    name: ClassVar[str] = ""
    modules: ClassVar[tuple[str, ...]] = ()  # must be importable, else the system is skipped
    packages: ClassVar[tuple[str, ...]] = ()  # distributions whose versions are reported
    concurrency: ClassVar[str] = ""  # the worker settings, as reported

    def unavailable(self) -> str | None:
        """Why the system cannot run here (a missing package or service), or None."""
        missing = [m for m in self.modules if importlib.util.find_spec(m) is None]
        if missing:
            return f"not installed: {', '.join(missing)} (pip install -e '.[bench-jobs]')"
        try:
            client = redis.Redis.from_url(self.config.redis_url, socket_connect_timeout=2)
            client.ping()
            client.close()
        except redis.RedisError as exc:
            return f"Redis at {self.config.redis_url} unreachable: {exc}"
        return None

    def versions(self) -> dict[str, str]:
        return {p: importlib.metadata.version(p) for p in self.packages}

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
            REDIS_ENV: self.config.redis_url,
            PREFIX_ENV: self.config.prefix,
        }

    def setup(self) -> None:
        self.cleanup()

    def cleanup(self) -> None:
        """Delete the run's Redis keys (queues, and whatever the system keeps there)."""
        client = redis.Redis.from_url(self.config.redis_url)
        try:
            found = list(client.scan_iter(match=f"{self.config.prefix}*", count=1000))
            for i in range(0, len(found), 1000):
                client.delete(*found[i : i + 1000])
        finally:
            client.close()

    def enqueue_many(self, n: int) -> None:
        """Enqueue `n` drain jobs (submit time 0), with the system's usual client calls."""
        for _ in range(n):
            self.submit(0.0)

    def submit(self, submitted: float) -> None:
        raise NotImplementedError

    def worker_commands(self) -> list[list[str]]:
        raise NotImplementedError

    def start_workers(self) -> None:
        """Start the workers as separate processes, each in its own process group."""
        env = self.env()
        for i, command in enumerate(self.worker_commands()):
            log = (self.config.tmp_dir / f"{self.name}-worker-{i}.log").open("ab")
            self.logs.append(log)
            self.processes.append(
                subprocess.Popen(
                    command,
                    cwd=REPO,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )

    def check_workers(self) -> None:
        for process in self.processes:
            if process.poll() is not None:
                raise RuntimeError(f"{self.name} worker exited ({process.returncode}):\n"
                                   + self.log_tail())  # fmt: skip

    def log_tail(self, chars: int = 2000) -> str:
        texts = []
        for log in self.logs:
            log.flush()
            texts.append(Path(log.name).read_text(errors="replace")[-chars:])
        return "\n".join(texts)

    def broker_cpu_seconds(self) -> float | None:
        """CPU seconds of the Redis server so far (None if it is not a process on this machine).
        Redis serves every system's marks too: that share is the same for all."""
        client = redis.Redis.from_url(self.config.redis_url)
        try:
            pid = int(client.info("server")["process_id"])
        finally:
            client.close()
        return proc_cpu_seconds([pid]).get(pid)

    def worker_cpu_seconds(self) -> float:
        """CPU seconds used so far by every process in the workers' process groups."""
        groups = {p.pid for p in self.processes}
        members = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                except (OSError, IndexError):
                    continue
                if int(fields[2]) in groups:  # pgrp
                    members.append(int(entry.name))
        return sum(proc_cpu_seconds(members).values())

    def stop_workers(self) -> None:
        """SIGTERM (a warm shutdown for each CLI) to each group, then SIGKILL if it lingers."""
        for process in self.processes:
            _signal_group(process, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                _signal_group(process, signal.SIGKILL)
                process.wait()
        for process in self.processes:  # children a worker left behind
            _signal_group(process, signal.SIGKILL)
        for log in self.logs:
            log.close()
        self.processes.clear()
        self.logs.clear()


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    try:
        os.killpg(process.pid, signum)
    except ProcessLookupError:
        pass


class Bare(System):
    name = "bare"
    modules = ("redis",)
    packages = ("redis",)
    concurrency = f"{WORKER_PROCESSES} processes, 1 BLPOP loop each"

    def setup(self) -> None:
        super().setup()
        self.client = redis.Redis.from_url(self.config.redis_url)
        self.key = tasks_bare.queue_key(self.config.prefix)

    def enqueue_many(self, n: int) -> None:
        for start in range(0, n, 1000):
            self.client.rpush(self.key, *["0.0"] * min(1000, n - start))

    def submit(self, submitted: float) -> None:
        self.client.rpush(self.key, repr(submitted))

    def worker_commands(self) -> list[list[str]]:
        command = [sys.executable, "-m", "bench.jobs_baselines.tasks_bare"]
        return [command] * WORKER_PROCESSES

    def cleanup(self) -> None:
        super().cleanup()
        if hasattr(self, "client"):
            self.client.close()


class Celery(System):
    name = "celery"
    modules = ("celery", "redis")
    packages = ("celery", "kombu", "redis")
    concurrency = (f"1 worker, --pool prefork --concurrency {WORKER_PROCESSES}, prefetch x4 "
                   "(default), --without-gossip --without-mingle --without-heartbeat")  # fmt: skip

    def setup(self) -> None:
        super().setup()
        if not hasattr(self, "app"):  # once: Celery warns when a task name is registered again
            self.app = tasks_celery.build(self.config.redis_url, self.config.prefix)
            self.task = self.app.tasks[tasks_celery.TASK]

    def submit(self, submitted: float) -> None:
        self.task.apply_async((submitted,))

    def worker_commands(self) -> list[list[str]]:
        return [[
            sys.executable, "-m", "celery", "-A", "bench.jobs_baselines.tasks_celery:app",
            "worker", "--pool", "prefork", "--concurrency", str(WORKER_PROCESSES),
            "--loglevel", "WARNING", "--without-gossip", "--without-mingle",
            "--without-heartbeat", "-Q", tasks_celery.queue_name(self.config.prefix),
        ]]  # fmt: skip

    def cleanup(self) -> None:
        if hasattr(self, "app"):
            self.app.close()
        super().cleanup()


class Dramatiq(System):
    name = "dramatiq"
    modules = ("dramatiq", "redis")
    packages = ("dramatiq", "redis")
    concurrency = f"--processes {WORKER_PROCESSES} --threads 8 (default), Redis broker"

    def setup(self) -> None:
        super().setup()
        self.broker, self.actor = tasks_dramatiq.build(self.config.redis_url, self.config.prefix)

    def submit(self, submitted: float) -> None:
        self.actor.send(submitted)

    def worker_commands(self) -> list[list[str]]:
        return [[
            sys.executable, "-m", "dramatiq", "bench.jobs_baselines.tasks_dramatiq:broker",
            "--processes", str(WORKER_PROCESSES), "--threads", "8",
        ]]  # fmt: skip

    def cleanup(self) -> None:
        if hasattr(self, "broker"):
            self.broker.close()
        super().cleanup()


class Huey(System):
    name = "huey"
    modules = ("huey", "redis")
    packages = ("huey",)
    concurrency = (f"huey_consumer -w {WORKER_PROCESSES} -k process, polling -d 0.1 -m 10 "
                   "(defaults), SqliteHuey defaults (WAL)")  # fmt: skip

    @property
    def filename(self) -> Path:
        return self.config.tmp_dir / f"{self.config.prefix}-huey.db"

    def env(self) -> dict[str, str]:
        return {**super().env(), tasks_huey.SQLITE_ENV: str(self.filename)}

    def setup(self) -> None:
        super().setup()
        self.huey, self.task = tasks_huey.build(str(self.filename), self.config.prefix)

    def submit(self, submitted: float) -> None:
        self.task(submitted)

    def worker_commands(self) -> list[list[str]]:
        return [[
            sys.executable, "-m", "huey.bin.huey_consumer",
            "bench.jobs_baselines.tasks_huey.huey", "-w", str(WORKER_PROCESSES),
            "-k", "process", "-q",
        ]]  # fmt: skip

    def cleanup(self) -> None:
        if hasattr(self, "huey"):
            self.huey.storage.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.filename}{suffix}").unlink(missing_ok=True)
        super().cleanup()


class PgQueuer(System):
    name = "pgqueuer"
    modules = ("pgqueuer", "asyncpg", "psycopg", "redis")
    packages = ("pgqueuer", "asyncpg")
    concurrency = (f"{WORKER_PROCESSES} processes of pgqueuer.run (as `pgq run`), one asyncpg "
                   "connection each, batch size 10 (default), LISTEN/NOTIFY")  # fmt: skip

    @property
    def dsn(self) -> str:
        return pg_database_url(self.config.pg_admin_url, self.config.pg_database)

    def unavailable(self) -> str | None:
        reason = super().unavailable()
        if reason is not None:
            return reason
        psycopg: Any = importlib.import_module("psycopg")
        try:
            psycopg.connect(self.config.pg_admin_url, connect_timeout=3).close()
        except psycopg.Error as exc:
            return f"PostgreSQL at {self.config.pg_admin_url} unreachable: {exc}"
        return None

    def env(self) -> dict[str, str]:
        return {**super().env(), tasks_pgqueuer.PG_ENV: self.dsn}

    def broker_cpu_seconds(self) -> float | None:
        """Redis (the marks) plus the PostgreSQL server processes serving the database."""
        marks = super().broker_cpu_seconds()
        backends = pg_backend_cpu(self.config.pg_admin_url, self.config.pg_database)
        return None if marks is None or not backends else marks + sum(backends.values())

    def setup(self) -> None:
        super().setup()
        pg_create_database(self.config.pg_admin_url, self.config.pg_database, fresh=True)
        self.runner = asyncio.Runner()
        self.runner.run(self._connect())

    async def _connect(self) -> None:
        asyncpg: Any = importlib.import_module("asyncpg")
        pgqueuer: Any = importlib.import_module("pgqueuer")
        self.connection = await asyncpg.connect(self.dsn)
        self.queries = pgqueuer.Queries(pgqueuer.AsyncpgDriver(self.connection))
        await self.queries.install()

    def enqueue_many(self, n: int) -> None:
        async def enqueue() -> None:
            for start in range(0, n, 1000):
                size = min(1000, n - start)
                await self.queries.enqueue(
                    [tasks_pgqueuer.ENTRYPOINT] * size, [b"0.0"] * size, [0] * size
                )

        self.runner.run(enqueue())

    def submit(self, submitted: float) -> None:
        self.runner.run(self.queries.enqueue(tasks_pgqueuer.ENTRYPOINT, repr(submitted).encode()))

    def worker_commands(self) -> list[list[str]]:
        command = [sys.executable, "-m", "bench.jobs_baselines.tasks_pgqueuer"]
        return [command] * WORKER_PROCESSES

    def cleanup(self) -> None:
        if hasattr(self, "runner"):
            self.runner.run(self.connection.close())
            self.runner.close()
            del self.runner
        pg_drop_database(self.config.pg_admin_url, self.config.pg_database)
        super().cleanup()


SYSTEMS: dict[str, type[System]] = {
    cls.name: cls for cls in (Bare, Celery, Dramatiq, Huey, PgQueuer)
}
PEERS = ("celery", "dramatiq", "huey", "pgqueuer")
