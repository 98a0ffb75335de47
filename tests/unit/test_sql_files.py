"""The named SQL blocks in store/sql/ (common.sql plus one file per dialect): both dialects define
the same blocks, once each, with the same parameters, and every block the store code runs by name
exists."""

from __future__ import annotations

import re
from collections import Counter
from importlib import resources
from pathlib import Path

import pytest

import logline.store
from logline.store.queries import load_queries, to_pyformat

DIALECTS = ("sqlite", "postgres")
STORE_DIR = Path(logline.store.__file__).parent
# Any line that looks like a block header, also ones the loader's stricter pattern would not
# recognise (and would silently glue onto the previous block).
NAME_LINE = re.compile(r"^--\s*name\s*:\s*(\S+)\s*$", re.MULTILINE | re.IGNORECASE)
USED_NAME = re.compile(r"\.(?:one|all|run|many)\(\s*[\"']([^\"']+)[\"']")
PARAM = re.compile(r"(?<![:\w]):([a-z_][a-z0-9_]*)")
CODE_FILES = ("sql.py", "__init__.py")


def _text(dialect: str) -> str:
    """What the loader reads for `dialect`: the shared blocks, then the dialect's own."""
    sql = resources.files("logline.store").joinpath("sql")
    return "".join(sql.joinpath(f"{name}.sql").read_text("utf-8") for name in ("common", dialect))


def _declared(dialect: str) -> list[str]:
    return NAME_LINE.findall(_text(dialect))


def _used(module: str) -> set[str]:
    return set(USED_NAME.findall((STORE_DIR / module).read_text("utf-8")))


@pytest.mark.parametrize("dialect", DIALECTS)
def test_block_names_are_unique(dialect: str) -> None:
    counts = Counter(_declared(dialect))
    assert counts, f"{dialect}.sql defines no blocks"
    assert sorted(name for name, n in counts.items() if n > 1) == []


@pytest.mark.parametrize("dialect", DIALECTS)
def test_every_header_is_a_block_the_loader_sees(dialect: str) -> None:
    queries = load_queries(dialect)
    assert sorted(queries) == sorted(set(_declared(dialect)))
    assert sorted(name for name, sql in queries.items() if not sql.strip()) == []


def test_dialects_define_the_same_blocks() -> None:
    sqlite, postgres = (set(_declared(dialect)) for dialect in DIALECTS)
    assert sorted(sqlite - postgres) == [], "only in sqlite.sql"
    assert sorted(postgres - sqlite) == [], "only in postgres.sql"


COPY_COLUMNS = re.compile(r"^COPY \w+ \(([^)]*)\) FROM STDIN", re.DOTALL)


def _parameters(sql: str) -> set[str]:
    """The :named parameters, or for a COPY block the columns its rows must supply."""
    copy = COPY_COLUMNS.match(sql)
    if copy is not None:
        return {column.strip() for column in copy.group(1).split(",")}
    return set(PARAM.findall(sql))


def test_dialects_bind_the_same_parameters() -> None:
    sqlite, postgres = (load_queries(dialect) for dialect in DIALECTS)
    differ = {
        name: (sorted(_parameters(sql)), sorted(_parameters(postgres[name])))
        for name, sql in sqlite.items()
        if name in postgres and _parameters(sql) != _parameters(postgres[name])
    }
    assert differ == {}


def test_postgres_blocks_convert_to_pyformat() -> None:
    for name, sql in load_queries("postgres").items():
        converted = to_pyformat(sql)
        assert PARAM.findall(converted) == [], name
        assert sorted(set(re.findall(r"%\((\w+)\)s", converted))) == sorted(
            set(PARAM.findall(sql))
        ), name


@pytest.mark.parametrize("module", CODE_FILES)
def test_every_block_the_code_runs_exists(module: str) -> None:
    used = _used(module)
    assert used, f"found no .one/.all/.run/.many calls in store/{module}"
    for dialect in DIALECTS:
        missing = used - set(load_queries(dialect))
        assert sorted(missing) == [], f"store/{module} runs blocks missing from {dialect}.sql"


def test_no_other_store_module_runs_a_missing_block() -> None:
    defined = set(load_queries("sqlite")) & set(load_queries("postgres"))
    for path in sorted(STORE_DIR.rglob("*.py")):
        missing = set(USED_NAME.findall(path.read_text("utf-8"))) - defined
        assert sorted(missing) == [], path.relative_to(STORE_DIR)
