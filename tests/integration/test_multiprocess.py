"""Several writer processes on one store: one order per tenant, nothing lost, checkpoints agree.

Three real writer subprocesses (`writer_process.py`), each with its own `Log` and identity (all
registered before they start), append concurrently to the same two tenants in small batches and
checkpoint both tenants now and then, on one PostgreSQL database or one SQLite file. Afterwards,
per tenant: seqs are exactly 0..n-1, every acknowledged (span id, seq) is what the store holds,
every stored span was acknowledged by someone, each writer's spans appear in the order it was told
they were sequenced, every checkpoint any writer reported is stored, and `verify_store` (which
checks each stored checkpoint against the recomputed tree) passes.
"""

from __future__ import annotations

import itertools
from contextlib import ExitStack
from pathlib import Path

from writer_process import (
    Ack,
    Writer,
    author_id,
    check_checkpoints,
    check_log,
    key_from_seed,
    note_verifier,
    seed_for,
    writer_args,
)

from logline.identity.documents import creation_span
from logline.identity.ids import LogLineId
from logline.ledger.log import Log
from logline.ledger.receipt import Receipt
from logline.ledger.verify import verify_store
from logline.store import open_store

INSTANCE = "multi.test"
TENANTS = ["alpha", "beta"]
WRITERS = 3
SPANS_PER_WRITER = 300
READY_TIMEOUT_S = 30.0
RUN_TIMEOUT_S = 120.0


def test_concurrent_writer_processes_share_one_order(backend: str, tmp_path: Path) -> None:
    instance_seed = seed_for("multi-instance")
    handles = [f"writer-{i}" for i in range(WRITERS)]

    # Register every writer's identity first (spread over both tenants), from this process.
    registered: list[Ack] = []
    store = open_store(backend)
    log = Log(store, instance=INSTANCE, key=key_from_seed(instance_seed))
    try:
        for i, handle in enumerate(handles):
            tenant = TENANTS[i % len(TENANTS)]
            span = creation_span(
                key_from_seed(seed_for(handle)), tenant, LogLineId.parse(author_id(handle)), handle
            )
            receipt: Receipt = log.append(span, wait="sequenced")
            registered.append(
                Ack(
                    tenant,
                    receipt.entry.span_id,
                    receipt.seq,
                    receipt.entry.span_hash.hex(),
                    receipt.entry.leaf_data().hex(),
                    "parent",
                )
            )
    finally:
        log.close()
        store.close()

    with ExitStack() as stack:
        writers = [
            stack.enter_context(
                Writer(
                    handle,
                    writer_args(
                        backend,
                        instance=INSTANCE,
                        instance_seed=instance_seed,
                        handle=handle,
                        tenants=TENANTS,
                        count=SPANS_PER_WRITER,
                        rng_seed=i,
                        checkpoint_prob=0.1,
                        max_batch=5,
                        wait_go=True,
                        final_checkpoint=True,
                    ),
                    tmp_path / f"{handle}.err",
                )
            )
            for i, handle in enumerate(handles)
        ]
        for writer in writers:
            writer.wait_event("ready", READY_TIMEOUT_S)
        for writer in writers:  # start together, for as much contention as possible
            writer.go()
        for writer in writers:
            writer.finish(RUN_TIMEOUT_S)

    acks = registered + [a for w in writers for a in w.acks()]
    checkpoints = [c for w in writers for c in w.checkpoints()]
    for writer in writers:
        assert len(writer.acks()) == SPANS_PER_WRITER, f"{writer.name} did not finish its spans"

    verifier = note_verifier(INSTANCE, instance_seed)
    store = open_store(backend)
    try:
        for tenant in TENANTS:
            mine = [a for a in acks if a.tenant == tenant]
            size = check_log(store, tenant, acks)
            assert size == len(mine), f"{tenant}: {size} entries, {len(mine)} acknowledged"
            stored_ids = {s.entry.span_id for s in store.spans(tenant, 0, size)}
            assert stored_ids == {a.span_id for a in mine}, f"{tenant}: spans lost or unknown"
            for writer in writers:
                seqs = [a.seq for a in writer.acks() if a.tenant == tenant]
                assert seqs == sorted(seqs), f"{tenant}: {writer.name}'s spans are out of order"
            interleaved = [a.writer for a in sorted(mine, key=lambda a: a.seq)]
            switches = sum(1 for x, y in itertools.pairwise(interleaved) if x != y)
            assert switches > WRITERS, f"{tenant}: the writers barely interleaved ({switches})"
            reported = [c for c in checkpoints if c[0] == tenant]
            assert len({size for _, size, _ in reported}) >= 2, f"{tenant}: too few checkpoints"
            summary = verify_store(store, tenant, f"{INSTANCE}/{tenant}", verifier)
            assert summary.size == size
            head = store.log_head(tenant)
            assert head is not None
            stored_sizes = [c.size for c in store.checkpoints(head.log_id)]
            assert summary.checkpoints == stored_sizes, f"{tenant}: not every checkpoint verified"
            assert stored_sizes[-1] == size, f"{tenant}: no checkpoint covers the whole log"
        check_checkpoints(store, checkpoints)
    finally:
        store.close()
