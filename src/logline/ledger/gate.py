"""The write gate: what decides, under the tenant's log lock, whether admitted spans are logged
and what their entries record as the write decision (docs/PROTOCOL.md §3). The rules engine
implements it (`logline.rules.gate`); a log without a gate logs every admitted span with
`{"outcome": "allow"}`.

    log.gate = RulesGate(...)
    log.append(span)          # may raise the gate's refusal, or its hold once that is logged
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from logline.errors import LogLineError
from logline.ledger.admission import Prepared
from logline.store.interface import Tx


@dataclass(frozen=True, slots=True)
class Gated:
    """What to log in place of the admitted spans (each with its decision: `Prepared.decision`),
    and what the caller is told once that is committed (`after`: a hold, say)."""

    items: list[Prepared]
    after: LogLineError | None = None


class Gate(Protocol):
    def decide(
        self, tx: Tx, tenant: str, items: Sequence[Prepared], received: str, chain: tuple[str, ...]
    ) -> Gated:
        """Decide on admitted `items` inside the committing transaction: raise a `LogLineError`
        to refuse them all (whatever the gate wrote in `tx` is undone), or say what to log.
        `chain` names the rules whose follow-ups led to these spans (empty: a client's)."""
        ...
