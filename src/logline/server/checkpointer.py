"""Publishes signed checkpoints for logs this process wrote to, at most every interval.

    checkpointer = Checkpointer(log, interval_s=0.5, on_publish=metrics.checkpoint_published)
    log.listeners.append(checkpointer.committed)
    await checkpointer.run()                   # until cancelled; then `flush()` once more

Writers that asked for a *sequenced* acknowledgement do not wait for a checkpoint; this brings
their entries under one within about an interval, so receipts and proofs can follow. Writers who
asked for *checkpointed* publish their own at once (`Log.append`), and this then finds nothing to
do. Several processes may checkpoint one log: `Log.checkpoint` signs nothing that already exists.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable

from logline.errors import LogLineError
from logline.ledger.log import Log

log = logging.getLogger("logline.server.checkpointer")


class Checkpointer:
    def __init__(
        self, log: Log, *, interval_s: float, on_publish: Callable[[], None] | None = None
    ) -> None:
        self.log = log
        self.interval_s = interval_s
        self.on_publish = on_publish
        self._dirty: set[str] = set()
        self._lock = threading.Lock()

    def committed(self, tenant: str, size: int) -> None:
        with self._lock:
            self._dirty.add(tenant)

    def flush(self) -> None:
        with self._lock:
            dirty, self._dirty = self._dirty, set()
        for tenant in sorted(dirty):
            try:
                before = self.log.store.latest_checkpoint(self.log.head(tenant).log_id)
                record = self.log.checkpoint(tenant)
            except LogLineError as exc:
                log.warning("checkpoint of %s failed, will retry: %s", tenant, exc)
                with self._lock:
                    self._dirty.add(tenant)
                continue
            if self.on_publish is not None and (before is None or record.size > before.size):
                self.on_publish()

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            if self._dirty:
                await asyncio.to_thread(self.flush)
