"""What the benchmarks share: JSON lines, percentiles, machine details, benchmark databases."""

from __future__ import annotations

import json
import math
import os
import platform
import sqlite3
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TextIO

BACKENDS = ("sqlite", "postgres")
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
REQUIRED_KEYS = ("bench", "backend", "variant", "metric", "value", "unit", "ratio", "ratio_to")
DATA_DIR = Path(__file__).resolve().parent.parent / "bench-data"


class Emitter:
    """Writes one JSON object per measurement, flushed at once so a long run can be followed."""

    def __init__(self, bench: str, out: TextIO | None = None) -> None:
        self.bench = bench
        self.out = out if out is not None else sys.stdout

    def emit(
        self,
        *,
        backend: str | None,
        variant: str | None,
        metric: str,
        value: float | int,
        unit: str,
        ratio: float | None,
        ratio_to: str | None,
        **extra: Any,
    ) -> None:
        record: dict[str, Any] = {
            "bench": self.bench, "backend": backend, "variant": variant, "metric": metric,
            "value": _round(value), "unit": unit,
            "ratio": None if ratio is None else round(ratio, 4), "ratio_to": ratio_to,
        }  # fmt: skip
        record.update({k: _round(v) if isinstance(v, float) else v for k, v in extra.items()})
        self.out.write(json.dumps(record) + "\n")
        self.out.flush()

    def run_info(self, **extra: Any) -> None:
        """A first line naming the machine and its load, so a result can be read in context."""
        self.emit(
            backend=None,
            variant=None,
            metric="run_info",
            value=os.getloadavg()[0],
            unit="loadavg_1min",
            ratio=None,
            ratio_to=None,
            **machine_info(),
            **extra,
        )

    def run_end(self, started: float) -> None:
        """A last line with the load at the end and the wall-clock seconds of the whole run."""
        self.emit(
            backend=None,
            variant=None,
            metric="run_end",
            value=os.getloadavg()[0],
            unit="loadavg_1min",
            ratio=None,
            ratio_to=None,
            loadavg=[round(x, 2) for x in os.getloadavg()],
            elapsed_s=time.perf_counter() - started,
        )


def _round(value: float | int) -> float | int:
    if isinstance(value, float):
        return float(f"{value:.6g}")
    return value


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict[str, Any]:
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu_model(),
        "mem_gib": round(mem_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }


def proc_cpu_seconds(pids: Iterable[int]) -> dict[int, float]:
    """User + system CPU seconds of each live process of `pids` (Linux /proc; others left out)."""
    tick = os.sysconf("SC_CLK_TCK")
    found: dict[int, float] = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        found[pid] = (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return found


def pg_backend_cpu(admin_url: str, database: str) -> dict[int, float]:
    """CPU seconds of the server processes connected to `database` (when the server is local)."""
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s", (database,)
        ).fetchall()
    return proc_cpu_seconds(int(row[0]) for row in rows)


def backends(choice: str) -> list[str]:
    if choice == "all":
        return list(BACKENDS)
    if choice not in BACKENDS:
        raise SystemExit(f"--backend must be sqlite, postgres or all, got {choice!r}")
    return [choice]


def pg_admin_url(cli_value: str | None) -> str:
    """The maintenance database URL used to create and drop benchmark databases."""
    return cli_value or os.environ.get("LOGLINE_BENCH_PG") or DEFAULT_PG_URL


def pg_database_url(admin_url: str, database: str) -> str:
    base, _, _ = admin_url.rpartition("/")
    return f"{base}/{database}"


def pg_server_version(admin_url: str) -> str:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "unknown"


def pg_create_database(admin_url: str, database: str, *, fresh: bool) -> bool:
    """Create `database` (dropping it first when `fresh`); True if it was created by this call."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(admin_url, autocommit=True) as conn:
        if fresh:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database))
            )
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (database,)
        ).fetchone()
        if exists:
            return False
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
        return True


def pg_drop_database(admin_url: str, database: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database))
        )
