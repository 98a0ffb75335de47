"""Crash safety: a writer process killed with SIGKILL mid-ingest loses nothing it acknowledged.

A real writer subprocess (`writer_process.py`) appends signed spans in a loop, single spans and
small batches, `wait="sequenced"`, checkpointing now and then, and prints each acknowledgement only
after the call returned. The test kills it at seeded random moments, restarting it against the same
store each round, then checks the log: every acknowledged span at its acknowledged seq with its
hash and leaf, seqs 0..size-1 with no gap and no row beyond the size, every reported checkpoint
stored, `verify_store` clean, and a fresh writer that continues exactly where the log ends.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest
from writer_process import (
    Ack,
    Writer,
    check_checkpoints,
    check_log,
    note_verifier,
    seed_for,
    writer_args,
)

from logline.ledger.verify import verify_store
from logline.store import open_store

pytestmark = pytest.mark.slow

INSTANCE = "crash.test"
TENANT = "crash"
ROUNDS = 5
KILL_AFTER_S = (0.2, 1.5)
FINAL_COUNT = 25
READY_TIMEOUT_S = 30.0


def test_sigkilled_writer_loses_no_acknowledged_span(backend: str, tmp_path: Path) -> None:
    rng = random.Random(f"logline-crash-{backend.split(':')[0]}")
    instance_seed = seed_for("crash-instance")

    def args(rng_seed: int, count: int = 0) -> list[str]:
        return writer_args(
            backend,
            instance=INSTANCE,
            instance_seed=instance_seed,
            handle="crash-writer",
            tenants=[TENANT],
            register=True,
            count=count,
            rng_seed=rng_seed,
            checkpoint_prob=0.08,
        )

    # Migrate before any writer runs, so that no kill lands inside the schema migration.
    open_store(backend).close()

    acks: list[Ack] = []
    checkpoints: list[tuple[str, int, str]] = []
    for round_ in range(ROUNDS):
        with Writer(f"round-{round_}", args(round_), tmp_path / f"writer-{round_}.err") as writer:
            writer.wait_event("ready", READY_TIMEOUT_S)
            time.sleep(rng.uniform(*KILL_AFTER_S))
            assert writer.alive(), f"writer died before the kill:\n{writer.stderr()}"
            writer.kill()
        round_acks = writer.acks()
        assert writer.proc.returncode < 0, "the writer was not killed by a signal"
        acks.extend(round_acks)
        checkpoints.extend(writer.checkpoints())
    assert len(acks) > ROUNDS, f"only {len(acks)} spans acknowledged in {ROUNDS} rounds"

    verifier = note_verifier(INSTANCE, instance_seed)
    store = open_store(backend)
    try:
        size = check_log(store, TENANT, acks)
        check_checkpoints(store, checkpoints)
        summary = verify_store(store, TENANT, f"{INSTANCE}/{TENANT}", verifier)
        assert summary.size == size
    finally:
        store.close()

    # A new writer appends right where the log ends: sequencing state survived every kill.
    with Writer("final", args(ROUNDS, FINAL_COUNT), tmp_path / "writer-final.err") as writer:
        ready = writer.wait_event("ready", READY_TIMEOUT_S)
        assert ready["sizes"] == {TENANT: size}
        writer.finish(timeout=60)
    final_acks = writer.acks()
    assert len(final_acks) == FINAL_COUNT
    assert [a.seq for a in final_acks] == list(range(size, size + FINAL_COUNT))

    store = open_store(backend)
    try:
        assert check_log(store, TENANT, acks + final_acks) == size + FINAL_COUNT
        check_checkpoints(store, checkpoints + writer.checkpoints())
        summary = verify_store(store, TENANT, f"{INSTANCE}/{TENANT}", verifier)
        assert summary.size == size + FINAL_COUNT
    finally:
        store.close()
