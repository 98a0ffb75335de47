"""`python -m bench <name> [options]`: run one benchmark, printing JSON lines on stdout."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import TextIO

from bench.ack_latency import main as ack_latency_main
from bench.fanout import main as fanout_main
from bench.http_ingest import main as http_ingest_main
from bench.ingest import main as ingest_main
from bench.jobs_baselines import main as jobs_baselines_main
from bench.jobs_engine import main as jobs_main
from bench.proofs import main as proofs_main
from bench.query import main as query_main
from bench.rules import main as rules_main

BENCHES: dict[str, Callable[[Sequence[str] | None, TextIO | None], int]] = {
    "ingest": ingest_main,
    "proofs": proofs_main,
    "http-ingest": http_ingest_main,
    "ack-latency": ack_latency_main,
    "query": query_main,
    "fanout": fanout_main,
    "jobs-baselines": jobs_baselines_main,
    "jobs": jobs_main,
    "rules": rules_main,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in BENCHES:
        sys.stderr.write(f"usage: python -m bench {{{','.join(BENCHES)}}} [options]\n")
        return 2
    return BENCHES[args[0]](args[1:], None)


if __name__ == "__main__":
    raise SystemExit(main())
