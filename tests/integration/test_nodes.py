"""The node registry, the same on SQLite and PostgreSQL: registration, heartbeats that write
nothing, state changes that write a signed span each, stale sessions, lost nodes, listing."""

from __future__ import annotations

from typing import Any

import pytest

from helpers import OTHER_TENANT, TENANT, Clock, make_identity
from logline.engine.nodes import NodeInfo, Nodes
from logline.errors import Conflict, InvalidInput, NotFound
from logline.ledger.log import Log
from logline.store.interface import Query, Store

NODE = "logline-id://service/acme.node-1.0a1b2c3d"
OTHER_NODE = "logline-id://service/acme.node-2.0a1b2c3d"
WIDE_NODE = "logline-id://service/system.node-1.0a1b2c3d"
SYSTEM = "system"
INFO = NodeInfo(
    labels={"zone": "eu-1", "gpu": "a100"}, queues=("default", "mail"), types=("a.b", "c.d"),
    concurrency=4, version="1.2.3", host="box-1", pid=4242,
)  # fmt: skip


@pytest.fixture
def nodes(clocked_log: Log, clock: Clock) -> Nodes:
    author, key = make_identity(clocked_log, SYSTEM, "engine", kind="service")
    return Nodes(clocked_log, author=author, key=key, clock=clock)


def _spans(store: Store, tenant: str, identity: str) -> list[tuple[str, dict[str, Any], Any]]:
    """The node's spans on `tenant`'s log: (kind, payload, caused_by), oldest first."""
    page = store.query(Query(tenant, flow_id=identity, limit=100))
    return [(s.span.kind, s.span.payload, s.span.body["caused_by"]) for s in page.items]


def _size(store: Store, tenant: str) -> int:
    head = store.log_head(tenant)
    return 0 if head is None else head.size


def test_registering_logs_a_signed_span_and_heartbeats_log_nothing(
    nodes: Nodes, store: Store, clock: Clock
) -> None:
    node = nodes.register(NODE, TENANT, INFO)
    assert (node.state, node.tenant, node.running, node.concurrency) == ("online", TENANT, 0, 4)
    assert node.labels == {"gpu": "a100", "zone": "eu-1"} and node.queues == ("default", "mail")
    assert (node.types, node.version, node.host, node.pid) == (
        ("a.b", "c.d"),
        "1.2.3",
        "box-1",
        4242,
    )
    [(kind, payload, cause)] = _spans(store, TENANT, NODE)
    assert (kind, cause) == ("node.registered", None)
    assert payload["labels"] == node.labels and payload["session"] == node.session
    stored = store.span(TENANT, node.span_id)
    assert stored is not None and stored.span.author == nodes.author
    assert "node" in stored.span.body["tags"]
    size = _size(store, TENANT)
    for running in (1, 3, 2):
        clock.advance(2)
        beat = nodes.heartbeat(NODE, node.session, running=running)
        assert (beat.state, beat.running, beat.last_seen) == ("online", running, clock.ts())
    assert _size(store, TENANT) == size  # heartbeats that change nothing write nothing
    assert nodes.get(NODE).span_id == node.span_id


def test_draining_then_offline_each_logged_once(nodes: Nodes, store: Store) -> None:
    node = nodes.register(NODE, TENANT, INFO)
    assert nodes.heartbeat(NODE, node.session, running=2, draining=True).state == "draining"
    assert nodes.heartbeat(NODE, node.session, running=1, draining=True).state == "draining"
    offline = nodes.stopped(NODE, node.session)
    assert (offline.state, offline.running) == ("offline", 0)
    assert nodes.stopped(NODE, node.session).state == "offline"  # a retried deregistration
    history = _spans(store, TENANT, NODE)
    assert [kind for kind, _, _ in history] == ["node.registered", "node.draining", "node.offline"]
    assert [p["previous"] for _, p, _ in history[1:]] == ["online", "draining"]
    ids = [s.span.id for s in store.query(Query(TENANT, flow_id=NODE, limit=10)).items]
    assert [cause for _, _, cause in history] == [None, *ids[:-1]]  # a chain
    with pytest.raises(Conflict, match="deregistered"):
        nodes.heartbeat(NODE, node.session, running=0)
    again = nodes.register(NODE, TENANT, INFO)
    assert again.state == "online" and again.session != node.session


def test_a_new_registration_ends_the_old_session(nodes: Nodes, store: Store) -> None:
    first = nodes.register(NODE, TENANT, INFO)
    second = nodes.register(NODE, TENANT, NodeInfo(labels={"zone": "us-2"}))
    assert second.session != first.session and second.labels == {"zone": "us-2"}
    size = _size(store, TENANT)
    with pytest.raises(Conflict, match="registered again"):
        nodes.heartbeat(NODE, first.session, running=0)
    with pytest.raises(Conflict):
        nodes.heartbeat(NODE, first.session, running=0, draining=True)
    with pytest.raises(Conflict):
        nodes.stopped(NODE, first.session)
    assert _size(store, TENANT) == size
    assert nodes.get(NODE).session == second.session and nodes.get(NODE).state == "online"
    *_, (kind, payload, _) = _spans(store, TENANT, NODE)
    assert kind == "node.registered"
    assert payload["replaced"] == {"session": first.session, "state": "online"}


def test_unknown_nodes_are_not_found(nodes: Nodes, store: Store) -> None:
    nodes.register(NODE, TENANT, INFO)
    session = nodes.get(NODE).session
    with pytest.raises(NotFound):
        nodes.heartbeat(OTHER_NODE, session, running=0)
    with pytest.raises(NotFound):
        nodes.stopped(OTHER_NODE, session)
    with pytest.raises(NotFound):
        nodes.get(OTHER_NODE)
    with pytest.raises(InvalidInput):
        nodes.heartbeat(NODE, session, running=-1)


@pytest.mark.parametrize(
    "info",
    [
        NodeInfo(labels={"zone": 1}),  # type: ignore[dict-item]
        NodeInfo(labels={"": "x"}),
        NodeInfo(labels={"-zone": "x"}),
        NodeInfo(labels={"zone name": "x"}),
        NodeInfo(labels={"zone": "x" * 201}),
        NodeInfo(labels={"zone": "a\nb"}),
        NodeInfo(labels={f"k{i}": "v" for i in range(33)}),
        NodeInfo(labels=["zone=eu"]),  # type: ignore[arg-type]
        NodeInfo(queues=()),
        NodeInfo(queues=("UPPER",)),
        NodeInfo(types=("Not A Kind",)),
        NodeInfo(types=()),
        NodeInfo(concurrency=0),
        NodeInfo(version="v\x00"),
        NodeInfo(host="h" * 256),
        NodeInfo(pid=-1),
    ],
    ids=lambda info: repr(info)[:60],
)
def test_bad_registrations_change_nothing(nodes: Nodes, store: Store, info: NodeInfo) -> None:
    size = _size(store, TENANT)
    with pytest.raises(InvalidInput):
        nodes.register(NODE, TENANT, info)
    assert _size(store, TENANT) == size and nodes.nodes() == []


def test_silent_nodes_are_lost_and_come_back(nodes: Nodes, store: Store, clock: Clock) -> None:
    quiet = nodes.register(NODE, TENANT, INFO)
    chatty = nodes.register(OTHER_NODE, TENANT, INFO)
    stopped = nodes.register(WIDE_NODE, SYSTEM, INFO)
    nodes.stopped(WIDE_NODE, stopped.session)
    clock.advance(20)
    nodes.heartbeat(OTHER_NODE, chatty.session, running=1)
    assert nodes.mark_lost(30) == []
    clock.advance(11)
    [lost] = nodes.mark_lost(30)
    assert (lost.identity, lost.state, lost.last_seen) == (NODE, "lost", quiet.last_seen)
    assert nodes.mark_lost(30) == []  # once
    assert {n.identity: n.state for n in nodes.nodes()} == {
        NODE: "lost", OTHER_NODE: "online", WIDE_NODE: "offline"
    }  # fmt: skip
    *_, (kind, payload, _) = _spans(store, TENANT, NODE)
    assert kind == "node.lost" and payload["last_seen"] == quiet.last_seen
    # Heard from again, in the same session (a network partition healed): online again.
    back = nodes.heartbeat(NODE, quiet.session, running=0)
    assert back.state == "online"
    *_, (kind, payload, _) = _spans(store, TENANT, NODE)
    assert (kind, payload["previous"]) == ("node.online", "lost")
    clock.advance(31)
    assert {n.identity for n in nodes.mark_lost(30)} == {NODE, OTHER_NODE}
    with pytest.raises(InvalidInput):
        nodes.mark_lost(0)


def test_a_draining_node_that_goes_silent_is_lost(nodes: Nodes, clock: Clock) -> None:
    node = nodes.register(NODE, TENANT, INFO)
    nodes.heartbeat(NODE, node.session, running=1, draining=True)
    clock.advance(31)
    assert [n.state for n in nodes.mark_lost(30)] == ["lost"]
    assert nodes.heartbeat(NODE, node.session, running=0, draining=True).state == "draining"


def test_listing_by_tenant_and_state(nodes: Nodes, store: Store) -> None:
    own = nodes.register(NODE, TENANT, INFO)
    nodes.register(OTHER_NODE, OTHER_TENANT, INFO)
    nodes.register(WIDE_NODE, SYSTEM, INFO)
    nodes.stopped(NODE, own.session)
    serving = [n.identity for n in nodes.nodes([TENANT, SYSTEM])]
    assert serving == [NODE, WIDE_NODE]
    assert [n.identity for n in nodes.nodes([TENANT, SYSTEM], states=["online"])] == [WIDE_NODE]
    assert len(nodes.nodes()) == 3 and nodes.nodes([]) == []
    with pytest.raises(InvalidInput):
        nodes.nodes(states=["asleep"])
    # Each node's spans are on its own tenant's log, and nowhere else.
    assert [k for k, _, _ in _spans(store, SYSTEM, WIDE_NODE)] == ["node.registered"]
    assert _spans(store, TENANT, WIDE_NODE) == [] and _spans(store, OTHER_TENANT, NODE) == []


def test_a_node_whose_key_moved_tenants_starts_a_new_chain(nodes: Nodes, store: Store) -> None:
    nodes.register(NODE, TENANT, INFO)
    moved = nodes.register(NODE, OTHER_TENANT, INFO)
    assert moved.tenant == OTHER_TENANT
    [(kind, _, cause)] = _spans(store, OTHER_TENANT, NODE)
    assert (kind, cause) == ("node.registered", None)  # no link into another tenant's log
    assert [n.identity for n in nodes.nodes([TENANT])] == []
