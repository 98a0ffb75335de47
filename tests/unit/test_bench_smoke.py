"""The benchmarks run end to end at tiny sizes on SQLite and print well-formed JSON lines.

No timing is asserted: only that every line is a JSON object with the keys docs/PERFORMANCE.md
reads, that each expected measurement is there, and that ratios are reported.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

from bench import ingest, proofs
from bench.__main__ import main as bench_main
from bench.common import REQUIRED_KEYS


def _lines(text: str) -> list[dict[str, Any]]:
    records = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert records, "the benchmark printed nothing"
    for record in records:
        assert isinstance(record, dict)
        missing = [key for key in REQUIRED_KEYS if key not in record]
        assert not missing, f"{record} lacks {missing}"
        assert isinstance(record["value"], int | float) and math.isfinite(record["value"])
        if record["metric"] not in ("run_info", "run_end"):
            assert isinstance(record["ratio"], int | float), record
            assert isinstance(record["ratio_to"], str) and record["ratio_to"], record
    return records


def test_ingest_emits_every_measurement(tmp_path: Path) -> None:
    out = io.StringIO()
    code = ingest.main(["--spans", "200", "--batch", "50", "--backend", "sqlite",
                        "--tmp-dir", str(tmp_path)], out)  # fmt: skip
    assert code == 0
    records = _lines(out.getvalue())
    assert {r["bench"] for r in records} == {"ingest"}
    assert records[0]["metric"] == "run_info"
    assert records[-1]["metric"] == "run_end"
    metrics = {(r["backend"], r["variant"], r["metric"]) for r in records}
    for metric in ("ed25519_verify_1thread", "ed25519_verify_2threads",
                   "span_verify_api_1thread", "span_verify_api_2thread"):  # fmt: skip
        assert (None, None, metric) in metrics
    for variant in ("synchronous=FULL", "synchronous=NORMAL"):
        for phase in ingest.PHASES:
            assert ("sqlite", variant, f"{phase}_throughput") in metrics
            assert ("sqlite", variant, f"{phase}_ack_latency_p50") in metrics
            assert ("sqlite", variant, f"{phase}_ack_latency_p99") in metrics
    throughput = [r for r in records if r["metric"].endswith("_throughput")]
    assert all(r["ratio_to"] == ingest.BOUND and r["unit"] == "spans/s" for r in throughput)
    for record in throughput:
        assert record["cpu_us_per_span"] >= 0
        assert record["server_cpu_us_per_span"] is None  # SQLite has no server process
    assert {r["spans"] for r in throughput} == {200, 50}


def test_proofs_emits_every_measurement_and_reuses_its_cache(tmp_path: Path) -> None:
    argv = ["--sizes", "5000", "--backend", "sqlite", "--samples", "40",
            "--data-dir", str(tmp_path)]  # fmt: skip
    first, second = io.StringIO(), io.StringIO()
    assert proofs.main(argv, first) == 0
    assert proofs.main(argv, second) == 0
    for out, cached in ((first, False), (second, True)):
        records = _lines(out.getvalue())
        assert {r["bench"] for r in records} == {"proofs"}
        by_metric = {r["metric"]: r for r in records if r["backend"] == "sqlite"}
        passes = {(r["variant"], r["metric"]) for r in records if r["unit"] == "ms"}
        assert by_metric["build_time"]["cached"] is cached
        assert by_metric["build_time"]["leaves"] == 5000
        assert "no entries" in by_metric["build_time"]["note"]
        for kind in ("inclusion", "consistency"):
            for stat in ("p50", "p99", "max"):
                record = by_metric[f"{kind}_proof_{stat}"]
                assert record["unit"] == "ms"
                assert record["ratio_to"] == f"in_memory_{kind}_proof_{stat}"
                assert record["samples"] == 40
                assert {("first-pass", record["metric"]), ("warm", record["metric"])} <= passes
            assert by_metric[f"{kind}_proofs_verified"]["value"] == 40


def test_the_command_line_names_the_benchmarks() -> None:
    assert bench_main([]) == 2
    assert bench_main(["nope"]) == 2
