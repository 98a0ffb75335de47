"""Docs that cannot rot: module usage examples run, and the README's commands exist."""

from __future__ import annotations

import doctest
import importlib
import re
from pathlib import Path

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


README = Path(__file__).resolve().parents[2] / "README.md"


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text("utf-8"), re.DOTALL)


def test_readme_opens_with_the_two_commands() -> None:
    first = _blocks("sh")[0]
    assert "make run" in first and "make test" in first


def test_readme_python_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (example,) = _blocks("python")
    exec(compile(example, "README.md", "exec"), {})
    assert (tmp_path / "data" / "logline.toml").exists()


def test_readme_cli_commands_exist() -> None:
    from typer.core import TyperGroup
    from typer.main import get_command

    from logline.cli.main import app

    root = get_command(app)
    assert isinstance(root, TyperGroup)
    lines = [line.strip() for block in _blocks("sh") for line in block.splitlines()]
    used = {tuple(line.split()[1:3]) for line in lines if line.startswith("logline ")}
    assert used, "README shows no logline command"
    for words in sorted(used):
        command = root.commands.get(words[0])
        assert command is not None, f"README uses `logline {words[0]}`, which does not exist"
        if isinstance(command, TyperGroup):
            assert words[1] in command.commands, f"README uses `logline {' '.join(words)}`"
