"""deploy/ read without running anything: the Grafana dashboard is well formed (every panel has the
datasource variable and queries, the layout fits), every alert has a severity and a runbook that
exists in docs/OPERATIONS.md, and alerts_test.yml shows every alert firing and not firing. The
metric lexer the e2e checks rely on is tested here too. tests/e2e/test_deploy.py runs promtool."""

from __future__ import annotations

import re
from collections import Counter

import pytest
import yaml

from deploy_files import (
    ALERTS_TEST,
    GRAFANA_BUILTINS,
    OPERATIONS,
    PROMETHEUS_SERIES,
    Selector,
    alert_rules,
    dashboard,
    dashboard_exprs,
    dashboard_panels,
    dashboard_variables,
    selectors,
    substitute,
    variable_queries,
)

DATASOURCE = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ('up{job="logline"} == 0', [Selector("up", (("job", "=", "logline"),))]),
        (
            'histogram_quantile(0.99, sum by (le, route) (rate(x_bucket{route!~"/a|/b"}[5m])))',
            [Selector("x_bucket", (("route", "!~", "/a|/b"),))],
        ),
        (
            "max by (queue) (rate(a_total[10m])) / (max by (queue) (rate(b[1m] offset 5m)) + 1)"
            " > 0.2 and on () sum(c) >= 5",
            [Selector("a_total"), Selector("b"), Selector("c")],
        ),
        (
            'sum(x{a="1", b=~"y.*",}) or vector(0)',
            [Selector("x", (("a", "=", "1"), ("b", "=~", "y.*")))],
        ),
        ("logline_build_info", [Selector("logline_build_info")]),
    ],
)
def test_selectors_find_metric_names_and_matchers(expr: str, expected: list[Selector]) -> None:
    assert sorted(selectors(expr), key=repr) == sorted(expected, key=repr)


def test_substitute_refuses_unknown_variables() -> None:
    assert (
        substitute('rate(x{job="$job"}[${__rate_interval}])', {"job": "j", "__rate_interval": "5m"})
        == 'rate(x{job="j"}[5m])'
    )
    with pytest.raises(AssertionError, match=r"\$nope"):
        substitute('x{a="$nope"}', {})


# --- the dashboard --------------------------------------------------------------------------------


def test_the_dashboard_is_a_grafana_10_dashboard_with_a_datasource_variable() -> None:
    board = dashboard()
    assert board["schemaVersion"] >= 37  # Grafana 10
    assert board["uid"] and board["title"] and board["id"] is None
    [datasource] = [v for v in dashboard_variables() if v["type"] == "datasource"]
    assert (datasource["name"], datasource["query"]) == ("DS_PROMETHEUS", "prometheus")
    names = [v["name"] for v in dashboard_variables()]
    assert len(names) == len(set(names))
    for variable in dashboard_variables():
        if variable["type"] == "query":
            assert variable["datasource"] == DATASOURCE, variable["name"]


def test_every_panel_has_the_datasource_and_queries() -> None:
    panels = dashboard_panels()
    assert len(panels) >= 20
    for panel in panels:
        title = panel["title"]
        assert panel["datasource"] == DATASOURCE, title
        assert panel["targets"], f"{title}: no queries"
        assert panel.get("description"), f"{title}: no description"
        refs = [target["refId"] for target in panel["targets"]]
        assert len(refs) == len(set(refs)), title
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, title
            assert target["expr"].strip(), title


def test_panel_ids_are_unique_and_the_layout_fits_without_overlaps() -> None:
    panels = dashboard()["panels"]
    assert [n for n, c in Counter(p["id"] for p in panels).items() if c > 1] == []
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        pos = panel["gridPos"]
        assert 0 <= pos["x"] and pos["x"] + pos["w"] <= 24, panel["title"]
        taken = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"])
                 for y in range(pos["y"], pos["y"] + pos["h"])}  # fmt: skip
        assert not taken & cells, f"{panel['title']} overlaps another panel"
        cells |= taken


def test_queries_use_only_defined_variables_and_our_metrics() -> None:
    variables = {v["name"] for v in dashboard_variables()} | set(GRAFANA_BUILTINS)
    for panel in dashboard_panels():
        for target in panel["targets"]:
            substitute(target["expr"], dict.fromkeys(variables, "x"))  # raises on unknown ones
    for where, expr in dashboard_exprs():
        names = {s.name for s in selectors(expr)}
        assert names, f"{where}: no metric in {expr!r}"
        assert all(n.startswith("logline_") or n in PROMETHEUS_SERIES for n in names), where
    assert {name for _, selector, _ in variable_queries() for name in [selector.name]} <= {
        "logline_build_info", "logline_jobs"
    }  # fmt: skip


def test_the_dashboard_shows_what_the_issue_asks_for() -> None:
    used = {s.name for _, expr in dashboard_exprs() for s in selectors(expr)}
    for name in (
        "logline_http_requests_total", "logline_http_request_duration_seconds_bucket",
        "logline_spans_appended_total", "logline_append_duration_seconds_bucket",
        "logline_checkpoint_lag_entries_max", "logline_stream_subscribers",
        "logline_job_events_total", "logline_job_queue_ready",
        "logline_job_wait_seconds_bucket", "logline_job_run_seconds_bucket", "logline_nodes",
        "logline_node_heartbeat_age_seconds_max",
    ):  # fmt: skip
        assert name in used, name
    quantiles = [e for _, e in dashboard_exprs() if "histogram_quantile" in e]
    assert all(re.search(r"_bucket\{", e) and "by (le" in e for e in quantiles), quantiles


# --- the alert rules ------------------------------------------------------------------------------


def _slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _runbooks() -> list[str]:
    """The subsections of docs/OPERATIONS.md's "Runbooks" section."""
    text = OPERATIONS.read_text("utf-8")
    section = text.split("\n## Runbooks\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^### (.+)$", section, re.MULTILINE)


def test_every_alert_has_a_severity_and_a_runbook_of_its_own() -> None:
    rules = alert_rules()
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names))
    assert sorted(names) == sorted(_runbooks())
    for rule in rules:
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        assert rule["annotations"]["runbook_url"] == f"docs/OPERATIONS.md#{_slug(rule['alert'])}"


def test_alerts_test_shows_every_alert_firing_and_not_firing() -> None:
    cases = yaml.safe_load(ALERTS_TEST.read_text("utf-8"))["tests"]
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in cases:
        for check in case["alert_rule_test"]:
            (firing if check["exp_alerts"] else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in alert_rules()}
    assert sorted(names - firing) == [], "never shown firing"
    assert sorted(names - quiet) == [], "never shown quiet"
