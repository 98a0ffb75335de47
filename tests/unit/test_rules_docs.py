"""Docs that cannot rot: the rules modules' usage examples run, and every YAML block in
docs/RULES.md compiles (a block without `rules:` is one rule's body) with its examples holding."""

from __future__ import annotations

import doctest
import importlib
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from logline.ledger.admission import RESERVED_PREFIXES
from logline.rules import WebhookAllowList, check_examples, compile_ruleset
from logline.rules.actions import RESERVED_PREFIXES as RULES_RESERVED_PREFIXES

MODULES = [
    "logline.rules",
    "logline.rules.source",
    "logline.rules.globs",
    "logline.rules.paths",
    "logline.rules.approvals",
    "logline.rules.followups",
    "logline.rules.decision",
    "logline.rules.webhooks",
    "logline.rules.ruleset",
]
RULES_MD = Path(__file__).resolve().parents[2] / "docs" / "RULES.md"
BLOCKS = re.findall(r"```yaml\n(.*?)```", RULES_MD.read_text("utf-8"), re.DOTALL)
HOOKS = WebhookAllowList(["https://hooks.example.com/"])


@pytest.mark.parametrize("module_name", MODULES)
def test_module_examples_run(module_name: str) -> None:
    module = importlib.import_module(module_name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{module_name} has no runnable example"
    assert result.failed == 0


def test_rules_md_has_yaml_blocks() -> None:
    assert len(BLOCKS) >= 8


@pytest.mark.parametrize("block", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_rules_md_yaml_compiles(block: str) -> None:
    document: Any = yaml.safe_load(block)
    if "rules" not in document:
        document = {"rules": [{"id": "doc", "then": ["allow"], **document}]}
    ruleset = compile_ruleset(document, webhooks=HOOKS)
    assert [str(failure) for failure in check_examples(ruleset)] == []


def test_reserved_kinds_match_admission() -> None:
    assert RULES_RESERVED_PREFIXES == RESERVED_PREFIXES
