"""deploy/ against the real tools and a real server: promtool checks the alert rules, the example
Prometheus configuration and the dashboard's queries, and runs the rules' unit tests
(alerts_test.yml); every metric the rules and the dashboard name, with the labels and label
values they match on, is in the `/metrics` of a running `logline up` that has run a job, holds a
claimable one, runs a node and has refused a login for its rate limit.

Names are compared as Prometheus stores them, by sample: a histogram is queried as `x_bucket`,
`x_sum` and `x_count`, a counter as `x_total`, and those are the names the exposition has, so no
suffix is stripped or added. Without promtool these tests skip, except under CI=true (they fail).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from deploy_files import (
    ALERTS,
    ALERTS_TEST,
    PROMETHEUS_CONFIG,
    PROMETHEUS_SERIES,
    Selector,
    alert_rules,
    dashboard_exprs,
    promtool,
    selectors,
    variable_queries,
)
from servers import RunningServer, running_server

pytestmark = pytest.mark.e2e

TENANT = "default"
UNSERVED_QUEUE = "e2e-unserved"  # no node serves it: its job stays claimable
PROMETHEUS_LABELS = {"job", "instance"}  # added by Prometheus when it scrapes


def _promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def test_promtool_accepts_the_rules_and_the_example_configuration() -> None:
    checked = _promtool("check", "rules", str(ALERTS))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"{len(alert_rules())} rules found" in checked.stdout
    config = _promtool("check", "config", PROMETHEUS_CONFIG.name, cwd=PROMETHEUS_CONFIG.parent)
    assert config.returncode == 0, config.stdout + config.stderr


def test_the_alert_unit_tests_pass() -> None:
    tested = _promtool("test", "rules", ALERTS_TEST.name, cwd=ALERTS_TEST.parent)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def _recording_rules(exprs: list[str]) -> str:
    rules = [{"record": f"dashboard:query_{n}", "expr": expr} for n, expr in enumerate(exprs)]
    return json.dumps({"groups": [{"name": "dashboard", "rules": rules}]})  # JSON is YAML


def test_the_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    queries = dashboard_exprs()
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(_recording_rules([expr for _, expr in queries]))
    checked = _promtool("check", "rules", str(path))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"{len(queries)} rules found" in checked.stdout
    # ...and the check is a real one: a broken query is refused.
    path.write_text(_recording_rules(["sum by (le (rate(logline_jobs[5m]))"]))
    assert _promtool("check", "rules", str(path)).returncode != 0


# --- the names, against a real server -------------------------------------------------------------


def _used() -> dict[str, set[Selector]]:
    """Where each selector is used: alert names, dashboard panels, dashboard variables."""
    used: dict[str, set[Selector]] = defaultdict(set)
    for rule in alert_rules():
        for selector in selectors(rule["expr"]):
            used[f"alert {rule['alert']}"].add(selector)
    for where, expr in dashboard_exprs():
        for selector in selectors(expr):
            used[f"panel {where}"].add(selector)
    for variable, selector, label in variable_queries():
        asked = (label, "", "")  # label_values() needs the label, any value
        used[f"variable {variable}"].add(Selector(selector.name, (*selector.matchers, asked)))
    return used


def _wait(done: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.2)


def _samples(server: RunningServer) -> dict[str, list[tuple[dict[str, str], float]]]:
    """The scrape's samples, (labels, value), by sample name."""
    text = httpx.get(f"{server.url}/metrics", timeout=30).text
    samples: dict[str, list[tuple[dict[str, str], float]]] = defaultdict(list)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[sample.name].append((dict(sample.labels), sample.value))
    return samples


def _ready(server: RunningServer) -> bool:
    """The scrape shows this test's jobs and the embedded node (they are cached a few seconds)."""
    samples = _samples(server)

    def positive(name: str, **labels: str) -> bool:
        return any(labels.items() <= s.items() and v > 0 for s, v in samples.get(name, []))

    return (
        positive("logline_job_events_total", queue="default", event="succeeded")
        and positive("logline_job_queue_ready", queue=UNSERVED_QUEUE)
        and positive("logline_nodes", state="online")
    )


def test_every_metric_the_rules_and_the_dashboard_use_is_served(tmp_path: Path) -> None:
    with running_server(tmp_path / "home", env={"LOGLINE_EMBEDDED_NODE": "true"}) as server:
        samples = _exercise(server)
    missing = []
    for where, used in sorted(_used().items()):
        for selector in sorted(used, key=repr):
            if selector.name in PROMETHEUS_SERIES:
                continue
            found = samples.get(selector.name)
            if not found:
                missing.append(f"{where}: no {selector.name} in /metrics")
                continue
            for label, op, value in selector.matchers:
                if label in PROMETHEUS_LABELS:
                    continue
                if not any(label in sample for sample in found):
                    missing.append(f"{where}: {selector.name} has no label {label}")
                elif op == "=" and not any(sample.get(label) == value for sample in found):
                    missing.append(f'{where}: no {selector.name}{{{label}="{value}"}}')
    assert missing == [], "\n".join(missing)


def _exercise(server: RunningServer) -> dict[str, list[dict[str, str]]]:
    """Run a job, leave one claimable, get a login refused by the rate limiter; then the label
    sets of the scrape, by sample name."""
    token = server.login()
    with server.client(token) as c:
        ran = c.post(f"/v1/tenants/{TENANT}/jobs", json={"type": "logline.noop"})
        assert ran.status_code == 201, ran.text
        waiting = c.post(
            f"/v1/tenants/{TENANT}/jobs", json={"type": "logline.noop", "queue": UNSERVED_QUEUE}
        )
        assert waiting.status_code == 201, waiting.text
        job = f"/v1/tenants/{TENANT}/jobs/{ran.json()['id']}"
        _wait(lambda: c.get(job).json()["state"] == "succeeded", 30, "the job to succeed")
    for _ in range(100):  # the login budget is per address: spend it
        refused = httpx.post(
            f"{server.url}/v1/auth/login",
            json={"username": "admin", "password": "not-the-password", "tenants": [TENANT]},
        )
        if refused.status_code == 429:
            break
    else:
        raise AssertionError("logins were never rate limited")

    _wait(lambda: _ready(server), 30, "the job and node metrics")
    return {name: [labels for labels, _ in found] for name, found in _samples(server).items()}
