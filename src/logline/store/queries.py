"""Load the named SQL blocks of one dialect from `store/sql/<dialect>.sql`.

>>> load_queries("sqlite")["log_head"]
'SELECT id, tenant, size FROM logs WHERE tenant = :tenant;'
"""

from __future__ import annotations

import re
from importlib import resources

_NAME = re.compile(r"^-- name: ([a-z_]+)\s*$", re.MULTILINE)
_PARAM = re.compile(r"(?<![:\w]):([a-z_][a-z0-9_]*)")


def load_queries(dialect: str) -> dict[str, str]:
    text = resources.files("logline.store").joinpath("sql", f"{dialect}.sql").read_text("utf-8")
    parts = _NAME.split(text)
    queries: dict[str, str] = {}
    for name, sql in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise RuntimeError(f"{dialect}.sql defines {name} twice")
        queries[name] = sql.strip()
    return queries


def to_pyformat(sql: str) -> str:
    """`:name` parameters to psycopg's `%(name)s` (literal % doubled)."""
    return _PARAM.sub(r"%(\1)s", sql.replace("%", "%%"))
