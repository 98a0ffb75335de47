"""Prometheus metrics of worker nodes, read at scrape time from the node registry (`nodes` table),
so every server of an instance reports the same figures; ages go by the registry's clock.

    registry.register(NodeMetrics(services.nodes))

    logline_nodes{state}                        gauge  nodes in each state (engine.nodes.STATES)
    logline_node_heartbeat_age_seconds_max      gauge  longest silence of a live node, 0 if none

`state` is online, draining, offline or lost, always all four (zeros included), so an alert on
`logline_nodes{state="lost"}` sees 0 rather than nothing. A live node (online or draining) whose
silence reaches the server's `node_lost_after_s` is marked lost; the age shows it coming. There
is no node label: nodes come and go with their keys. When the database cannot be read the
families are left out of the scrape (`logline_job_stats_up` reports that). Queries run at most
once per `cache_s`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from logline.engine.nodes import LIVE, Nodes
from logline.errors import LogLineError
from logline.ledger.timefmt import parse_ts

log = logging.getLogger("logline.metrics")


class NodeMetrics(Collector):
    def __init__(self, nodes: Nodes, *, cache_s: float = 5.0) -> None:
        self.nodes = nodes
        self.cache_s = cache_s
        self._lock = threading.Lock()
        self._cached: tuple[float, list[Metric]] | None = None

    def describe(self) -> list[Metric]:
        return []  # read at scrape time: nothing to describe up front

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            if self._cached is None or time.monotonic() - self._cached[0] >= self.cache_s:
                self._cached = (time.monotonic(), self._read())
            yield from self._cached[1]

    def _read(self) -> list[Metric]:
        try:
            states = self.nodes.by_state()
        except LogLineError as exc:
            log.warning("node metrics: %s", exc)
            return []
        now = self.nodes.clock()
        nodes = GaugeMetricFamily("logline_nodes", "Worker nodes by state.", labels=["state"])
        oldest = 0.0
        for state, (n, last_seen) in states.items():
            nodes.add_metric([state], n)
            if state in LIVE and last_seen is not None:
                oldest = max(oldest, (now - parse_ts(last_seen)).total_seconds())
        age = GaugeMetricFamily(
            "logline_node_heartbeat_age_seconds_max",
            "Seconds since the longest-silent online or draining node was heard from.",
        )
        age.add_metric([], oldest)
        return [nodes, age]
