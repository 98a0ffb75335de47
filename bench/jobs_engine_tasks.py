"""The handler the `jobs` bench's LogLine workers load (`logline worker --handlers
bench.jobs_engine_tasks`): job type `bench.noop_mark`, a no-op that marks its start with
`bench.jobs_baselines.mark.mark`, the same Redis round trip every baseline system's task makes.

The payload is `{"submitted": <time.monotonic() at submit>}` for latency jobs, null for drain jobs.
A plain function, like the built-in `logline.noop`: it runs on the worker's thread pool.
"""

from __future__ import annotations

from typing import Any

from bench.jobs_baselines.mark import mark
from logline.engine.handlers import HandlerRegistry, JobContext

TYPE = "bench.noop_mark"
handlers = HandlerRegistry()


@handlers.handler(TYPE)
def noop_mark(ctx: JobContext, payload: Any) -> None:
    submitted = payload.get("submitted", 0.0) if isinstance(payload, dict) else 0.0
    mark(float(submitted))
