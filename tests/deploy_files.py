"""The files in deploy/ as the tests see them: the alert rules, the Grafana dashboard, the metric
selectors their queries use, and promtool.

    for where, expr in dashboard_exprs():   # Grafana variables replaced by sample values
        for selector in selectors(expr):     # Selector("logline_jobs", (("state", "=", "dead"),))
            ...

`selectors` is a small lexer, not a PromQL parser: promtool parses the expressions (the e2e tests),
this only finds the metric names and label matchers in them. It knows the shapes our queries use:
`name`, `name{label op "value", ...}`, range selectors, `by (...)`/`on (...)` groupings, functions
and aggregations (an identifier followed by `(`), keywords and numbers.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
ALERTS_TEST = DEPLOY / "prometheus" / "alerts_test.yml"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
DASHBOARD = DEPLOY / "grafana" / "logline.json"
OPERATIONS = ROOT / "docs" / "OPERATIONS.md"

# What a dashboard variable stands for when its queries are checked: a value of the right shape.
GRAFANA_BUILTINS = {"__rate_interval": "5m", "__interval": "1m", "__range": "1h"}
VARIABLE_SAMPLES = {"job": "logline", "instance": ".*", "queue": ".*"}
PROMETHEUS_SERIES = {"up"}  # made by Prometheus for every target, not by our /metrics

_KEYWORDS = {"and", "or", "unless", "bool", "by", "without", "on", "ignoring", "group_left",
             "group_right", "offset", "inf", "nan"}  # fmt: skip
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_SELECTOR = re.compile(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*\{([^}]*)\}")
_MATCHER = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*("(?:[^"\\]|\\.)*")\s*,?')
_IDENTIFIER = re.compile(r"(?<![\w.:])([A-Za-z_:][A-Za-z0-9_:]*)(?!\s*\()(?![\w:])")
_VARIABLE = re.compile(r"\$\{?(\w+)\}?")


@dataclass(frozen=True)
class Selector:
    name: str
    matchers: tuple[tuple[str, str, str], ...] = ()  # (label, op, value)


def selectors(expr: str) -> list[Selector]:
    """The metric selectors of a PromQL expression, in order."""
    found: list[Selector] = []
    rest = expr

    def selector(match: re.Match[str]) -> str:
        body, matchers, pos = match.group(2), [], 0
        while pos < len(body.strip()):
            m = _MATCHER.match(body, pos)
            assert m is not None, f"cannot read the label matchers {body!r} in {expr!r}"
            matchers.append((m.group(1), m.group(2), json.loads(m.group(3))))
            pos = m.end()
        found.append(Selector(match.group(1), tuple(matchers)))
        return " "

    rest = _SELECTOR.sub(selector, rest)  # before strings go: matcher values are strings
    rest = _STRING.sub(" ", rest)
    rest = re.sub(r"\[[^\]]*\]", " ", rest)  # range and subquery durations
    rest = _GROUPING.sub(" ", rest)
    rest = re.sub(r"\boffset\s+\S+", " ", rest)
    rest = re.sub(r"(?<![\w.])\d[\w.]*", " ", rest)  # numbers, durations
    found += [Selector(n) for n in _IDENTIFIER.findall(rest) if n.lower() not in _KEYWORDS]
    return found


def substitute(expr: str, variables: dict[str, str]) -> str:
    """`expr` with Grafana's `$name` and `${name}` replaced; an unknown name is an error."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        assert name in variables, f"unknown dashboard variable ${name} in {expr!r}"
        return variables[name]

    return _VARIABLE.sub(value, expr)


def alert_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(ALERTS.read_text("utf-8"))
    return [rule for group in document["groups"] for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text("utf-8"))
    return loaded


def dashboard_panels() -> list[dict[str, Any]]:
    """Every panel, also those inside collapsed rows; rows themselves left out."""
    out: list[dict[str, Any]] = []
    for panel in dashboard()["panels"]:
        if panel["type"] == "row":
            out += panel.get("panels", [])
        else:
            out.append(panel)
    return out


def dashboard_variables() -> list[dict[str, Any]]:
    variables: list[dict[str, Any]] = dashboard()["templating"]["list"]
    return variables


def dashboard_exprs() -> list[tuple[str, str]]:
    """(panel title and refId, expression with the variables replaced) of every query."""
    variables = {**GRAFANA_BUILTINS, **VARIABLE_SAMPLES}
    return [
        (f"{panel['title']} {target['refId']}", substitute(target["expr"], variables))
        for panel in dashboard_panels()
        for target in panel["targets"]
    ]


def variable_queries() -> list[tuple[str, Selector, str]]:
    """(variable, selector, label) of each `label_values(selector, label)` variable."""
    out = []
    for variable in dashboard_variables():
        if variable["type"] != "query":
            continue
        query = variable["query"]["query"] if isinstance(variable["query"], dict) else ""
        match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query)
        assert match, f"variable {variable['name']}: not a label_values() query: {query!r}"
        [selector] = selectors(substitute(match.group(1), VARIABLE_SAMPLES))
        out.append((variable["name"], selector, match.group(2)))
    return out


def promtool() -> str:
    """The promtool executable; skips without it, except under CI=true, where it fails."""
    found = shutil.which("promtool")
    if found is None:
        reason = (
            "promtool is not installed (Debian package prometheus: `make test` installs it as root)"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(f"promtool is required when CI=true, but {reason}", pytrace=False)
        pytest.skip(reason)
    return found
