"""The benchmarks run end to end at tiny sizes on SQLite and print well-formed JSON lines.

No timing is asserted: only that every line is a JSON object with the keys docs/PERFORMANCE.md
reads, that each expected measurement is there, and that ratios are reported.
"""

from __future__ import annotations

import io
import json
import math
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import pytest
from bench import (
    ack_latency,
    fanout,
    http_ingest,
    ingest,
    jobs_baselines,
    jobs_engine,
    proofs,
    query,
    rules,
)
from bench.__main__ import BENCHES
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
    assert {"http-ingest", "ack-latency", "query", "fanout", "rules"} <= set(BENCHES)


def test_rules_reports_each_set_against_no_active_set(tmp_path: Path) -> None:
    out = io.StringIO()
    argv = ["--spans", "160", "--single-spans", "32", "--batch", "40", "--backend", "sqlite",
            "--repeat", "1", "--tmp-dir", str(tmp_path)]  # fmt: skip
    assert rules.main(argv, out) == 0
    records = _lines(out.getvalue())
    assert {r["bench"] for r in records} == {"rules"}
    found = {(r["variant"], r["metric"]): r for r in records if r["backend"] == "sqlite"}
    for variant in ("rules_0", "no_gate", "rules_10", "rules_100"):
        for phase in rules.PHASES:
            record = found[variant, f"{phase}_throughput"]
            assert record["ratio_to"] == rules.BASELINE and record["unit"] == "spans/s"
            assert len(record["rounds"]) == 1 and record["cpu_us_per_span"] > 0
    assert found["rules_0", "batch_sequenced_throughput"]["ratio"] == 1.0
    # A handful of rules match each span, whatever the size of the set.
    assert 2 <= found["rules_100", "batch_sequenced_throughput"]["matched_per_span"] <= 5
    assert found["rules_0", "batch_sequenced_throughput"]["matched_per_span"] == 0
    assert rules.ruleset(100).count("\n  - id: ") == 100


# --- the server benchmarks: each starts real server processes, at sizes that take seconds -------


def test_http_ingest_reports_http_against_in_process(tmp_path: Path) -> None:
    out = io.StringIO()
    argv = ["--spans", "60", "--batch", "20", "--clients", "2", "--tmp-dir", str(tmp_path)]
    assert http_ingest.main(argv, out) == 0
    records = _lines(out.getvalue())
    by_metric = {r["metric"]: r for r in records if r["backend"] == "sqlite"}
    assert by_metric["inprocess_batch_throughput"]["ratio_to"] == ingest.BOUND
    http = by_metric["http_batch_throughput"]
    assert http["ratio_to"] == "inprocess_batch_throughput" and http["spans"] == 60
    assert http["server_cpu_us_per_span"] >= 0
    for p in (50, 99):
        assert by_metric[f"http_batch_latency_p{p}"]["ratio_to"] == f"inprocess_batch_latency_p{p}"


def test_ack_latency_reports_each_wait_against_the_bare_app(tmp_path: Path) -> None:
    out = io.StringIO()
    argv = [
        "--requests",
        "12",
        "--checkpointed",
        "4",
        "--clients",
        "1,2",
        "--warmup",
        "2",
        "--tmp-dir",
        str(tmp_path),
    ]
    assert ack_latency.main(argv, out) == 0
    records = _lines(out.getvalue())
    found = {(r["variant"], r["metric"]): r for r in records if r["backend"] == "sqlite"}
    for clients in (1, 2):
        variant = f"clients={clients}"
        assert (variant, "bare_requests") in found
        for wait in ("sequenced", "checkpointed"):
            assert found[variant, f"{wait}_requests"]["ratio_to"] == "bare_requests"
            p99 = found[variant, f"{wait}_ack_latency_p99"]
            assert p99["ratio_to"] == "bare_ack_latency_p99"
            assert p99["goal_ms"] == ack_latency.GOALS_MS[wait]
            assert isinstance(p99["goal_met"], bool)


def test_query_reports_every_type_and_reuses_its_cache(tmp_path: Path) -> None:
    argv = [
        "--spans",
        "300",
        "--requests",
        "28",
        "--warmup",
        "7",
        "--clients",
        "4",
        "--data-dir",
        str(tmp_path),
    ]
    first, second = io.StringIO(), io.StringIO()
    assert query.main(argv, first) == 0
    assert query.main(argv, second) == 0
    for out, cached in ((first, False), (second, True)):
        records = _lines(out.getvalue())
        found = {(r["variant"], r["metric"]): r for r in records if r["backend"] == "sqlite"}
        assert found[None, "load_time"]["cached"] is cached
        assert found["saturated", "query_throughput"]["requests"] == 28
        for variant in ("saturated", "paced"):
            for kind in (*query.TYPES, "all"):
                for p in (50, 99):
                    record = found[variant, f"query_{kind}_p{p}"]
                    assert record["ratio_to"] == f"inprocess_query_{kind}_p{p}"
                    assert record["inprocess_with_render_ms"] > 0
            assert isinstance(found[variant, "query_all_p99"]["goal_met"], bool)


def test_fanout_delivers_to_every_subscriber_of_both_transports(tmp_path: Path) -> None:
    out = io.StringIO()
    argv = [
        "--subscribers",
        "6",
        "--rates",
        "20",
        "--seconds",
        "0.5",
        "--processes",
        "1",
        "--tmp-dir",
        str(tmp_path),
    ]
    assert fanout.main(argv, out) == 0
    records = _lines(out.getvalue())
    found = {(r["variant"], r["metric"]): r for r in records if r["backend"] == "sqlite"}
    for transport in ("ws", "sse"):
        variant = f"{transport} 20/s"
        for prefix in ("bare_", ""):
            # Correctness, not speed: every subscriber got every span, none was dropped.
            assert found[variant, f"{prefix}delivered_fraction"]["value"] == 1.0
            assert found[variant, f"{prefix}subscribers_dropped"]["value"] == 0
            assert found[variant, f"{prefix}delivery_latency_p99"]["subscribers"] == 6
        assert found[variant, "delivery_latency_p99"]["ratio_to"] == "bare_delivery_latency_p99"


def test_jobs_baselines_measures_each_installed_system_and_skips_the_others(
    tmp_path: Path,
) -> None:
    """The `bench-jobs` extra is not part of `test`: a system whose package is absent must give
    a `skipped` line naming what is missing, and the benchmark must still succeed."""
    out = io.StringIO()
    argv = ["--jobs", "50", "--latency-jobs", "20", "--rate", "200", "--repeats", "2",
            "--tmp-dir", str(tmp_path)]  # fmt: skip
    assert jobs_baselines.main(argv, out) == 0  # 1 if any system failed
    records = [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]
    assert records[0]["metric"] == "run_info" and records[-1]["metric"] == "run_end"
    for record in records:
        assert not [key for key in REQUIRED_KEYS if key not in record], record
        assert record["bench"] == "jobs-baselines"
    by_system: dict[str, dict[str, dict[str, Any]]] = {}
    for record in records[1:-1]:
        by_system.setdefault(record["backend"], {})[record["metric"]] = record
    assert set(by_system) == {"bare", *jobs_baselines.PEERS}
    for name, found in by_system.items():
        missing = [m for m in jobs_baselines.SYSTEMS[name].modules if find_spec(m) is None]
        if "skipped" in found:
            assert set(found) == {"skipped"}
            reason = found["skipped"]["reason"]
            # Skipped for a missing package (named), or for a service this machine lacks.
            assert (missing and all(m in reason for m in missing)) or "unreachable" in reason
            continue
        assert not missing, f"{name} ran without {missing}"
        assert set(found) == {"drain_throughput", "start_latency_p50", "start_latency_p99"}
        assert found["drain_throughput"]["jobs"] == 50
        assert len(found["drain_throughput"]["drain_runs"]) == 2  # the workers restarted once
        assert found["drain_throughput"]["ratio_to"] == "bare_drain_throughput"
        assert found["start_latency_p99"]["jobs"] == 20
        for record in found.values():
            assert isinstance(record["ratio"], float) and record["value"] > 0


def test_jobs_runs_logline_jobs_end_to_end_against_the_bare_queue(tmp_path: Path) -> None:
    """LogLine's jobs over HTTP on SQLite, every job succeeded with its three signed spans
    (checked by the bench itself), reported against the bare queue; no peer systems here."""
    redis = pytest.importorskip("redis")
    try:
        redis.Redis.from_url(
            jobs_baselines.runner.DEFAULT_REDIS_URL, socket_connect_timeout=1
        ).ping()
    except redis.RedisError:
        pytest.skip("no Redis on localhost: the jobs mark their start there")
    out = io.StringIO()
    argv = ["--backend", "sqlite", "--jobs", "60", "--latency-jobs", "10", "--rate", "100",
            "--repeats", "1", "--workers", "1", "--concurrency", "4", "--systems", "none",
            "--tmp-dir", str(tmp_path)]  # fmt: skip
    assert jobs_engine.main(argv, out) == 0
    records = [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]
    assert records[0]["metric"] == "run_info" and records[-1]["metric"] == "run_end"
    found = {(r["backend"], r["metric"]): r for r in records[1:-1]}
    drain = found["logline-sqlite", "drain_throughput"]
    assert drain["jobs"] == 60 and drain["signed_spans_per_job"] == 3
    assert drain["vs"]["bare"] > 0 and drain["value"] > 0
    p99 = found["logline-sqlite", "start_latency_p99"]
    assert p99["jobs"] == 10 and p99["goal_ms"] == jobs_engine.GOAL_P99_MS
    assert isinstance(p99["goal_met"], bool)
    assert ("bare", "drain_throughput") in found
