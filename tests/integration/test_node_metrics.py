"""The node metrics, read from the registry on SQLite and PostgreSQL: counts by state (all four,
zeros included) and the longest silence of a live node; a failed read leaves them out."""

from __future__ import annotations

from typing import cast

import pytest
from prometheus_client import CollectorRegistry

from helpers import TENANT, Clock, make_identity
from logline.engine.nodes import NodeInfo, Nodes
from logline.errors import StorageError
from logline.ledger.log import Log
from logline.observe.node_metrics import NodeMetrics

A = "logline-id://service/acme.node-a.0a1b2c3d"
B = "logline-id://service/acme.node-b.0a1b2c3d"
C = "logline-id://service/acme.node-c.0a1b2c3d"


@pytest.fixture
def nodes(clocked_log: Log, clock: Clock) -> Nodes:
    author, key = make_identity(clocked_log, "system", "engine", kind="service")
    return Nodes(clocked_log, author=author, key=key, clock=clock)


def _scrape(registry: CollectorRegistry) -> tuple[dict[str, float | None], float | None]:
    states = {
        state: registry.get_sample_value("logline_nodes", {"state": state})
        for state in ("online", "draining", "offline", "lost")
    }
    return states, registry.get_sample_value("logline_node_heartbeat_age_seconds_max")


def test_nodes_by_state_and_the_longest_silence(nodes: Nodes, clock: Clock) -> None:
    registry = CollectorRegistry()
    registry.register(NodeMetrics(nodes, cache_s=0))
    zero = {"online": 0, "draining": 0, "offline": 0, "lost": 0}
    assert _scrape(registry) == (zero, 0)

    a, b, c = (nodes.register(identity, TENANT, NodeInfo()) for identity in (A, B, C))
    nodes.heartbeat(B, b.session, running=0, draining=True)
    nodes.stopped(C, c.session)
    clock.advance(12)
    nodes.heartbeat(A, a.session, running=1)
    # B, draining, has been silent for 12 s; C is offline, so its silence does not count.
    assert _scrape(registry) == ({**zero, "online": 1, "draining": 1, "offline": 1}, 12)

    clock.advance(25)
    assert [node.identity for node in nodes.mark_lost(30)] == [B]
    assert _scrape(registry) == ({**zero, "online": 1, "offline": 1, "lost": 1}, 25)


def test_answers_are_cached_for_cache_s(nodes: Nodes) -> None:
    registry = CollectorRegistry()
    registry.register(NodeMetrics(nodes, cache_s=3600))
    assert registry.get_sample_value("logline_nodes", {"state": "online"}) == 0
    nodes.register(A, TENANT, NodeInfo())
    assert registry.get_sample_value("logline_nodes", {"state": "online"}) == 0


class _Unreachable:
    def by_state(self) -> dict[str, tuple[int, str | None]]:
        raise StorageError("database unreachable")


def test_a_failed_read_leaves_the_families_out() -> None:
    registry = CollectorRegistry()
    registry.register(NodeMetrics(cast(Nodes, _Unreachable()), cache_s=0))
    assert list(registry.collect()) == []
