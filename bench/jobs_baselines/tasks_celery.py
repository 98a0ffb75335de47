"""The Celery no-op task, on a Redis broker: `celery -A bench.jobs_baselines.tasks_celery:app`."""

from __future__ import annotations

import importlib
import importlib.util
import os
from typing import Any

from bench.jobs_baselines.mark import PREFIX_ENV, REDIS_ENV, mark

TASK = "logline_bench.noop"


def queue_name(prefix: str) -> str:
    return f"{prefix}-celery"


def build(redis_url: str, prefix: str) -> Any:
    """A Celery app with every Redis key under the run's prefix and no result backend."""
    celery = importlib.import_module("celery")
    app = celery.Celery("logline_bench_jobs", set_as_current=False)
    app.conf.update(
        broker_url=redis_url,
        broker_transport_options={"global_keyprefix": f"{prefix}-celery:"},
        broker_connection_retry_on_startup=True,
        task_default_queue=queue_name(prefix),
        task_ignore_result=True,
        worker_hijack_root_logger=False,
    )

    def noop(submitted: float) -> None:
        mark(submitted)

    app.task(name=TASK, ignore_result=True)(noop)
    return app


# Built on import for `celery -A ...:app`; other systems' workers import this package too, so
# only where Celery is installed.
app: Any = (
    build(os.environ[REDIS_ENV], os.environ[PREFIX_ENV])
    if PREFIX_ENV in os.environ and importlib.util.find_spec("celery") is not None
    else None
)
