"""The Huey no-op task, on SQLite: `huey_consumer bench.jobs_baselines.tasks_huey.huey`."""

from __future__ import annotations

import importlib
import importlib.util
import os
from typing import Any

from bench.jobs_baselines.mark import PREFIX_ENV, mark

SQLITE_ENV = "LOGLINE_BENCH_JOBS_SQLITE"


def noop(submitted: float) -> None:
    mark(submitted)


def build(filename: str, prefix: str) -> tuple[Any, Any]:
    """(huey, task): a SqliteHuey with its defaults (WAL), storing no results."""
    huey_module = importlib.import_module("huey")
    huey = huey_module.SqliteHuey(name=f"{prefix}-huey", filename=filename, results=False)
    return huey, huey.task()(noop)


huey: Any = None
if SQLITE_ENV in os.environ and importlib.util.find_spec("huey") is not None:
    huey, _task = build(os.environ[SQLITE_ENV], os.environ[PREFIX_ENV])
