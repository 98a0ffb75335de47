"""Load the named SQL blocks of one dialect: `store/sql/common.sql` plus `<dialect>.sql`.

>>> load_queries("sqlite")["log_head"]
'SELECT id, tenant, size FROM logs WHERE tenant = :tenant;'
"""

from __future__ import annotations

import re
from importlib import resources

_NAME = re.compile(r"^-- name: ([a-z_]+)\s*$", re.MULTILINE)
_PARAM = re.compile(r"(?<![:\w]):([a-z_][a-z0-9_]*)")


def load_queries(dialect: str) -> dict[str, str]:
    """The blocks of `common.sql` and `<dialect>.sql` together; a name defined twice is an error."""
    queries: dict[str, str] = {}
    for file in ("common", dialect):
        text = resources.files("logline.store").joinpath("sql", f"{file}.sql").read_text("utf-8")
        parts = _NAME.split(text)
        for name, sql in zip(parts[1::2], parts[2::2], strict=True):
            if name in queries:
                raise RuntimeError(f"SQL block {name} is defined twice (in {file}.sql)")
            queries[name] = sql.strip()
    return queries


def to_pyformat(sql: str) -> str:
    """`:name` parameters to psycopg's `%(name)s` (literal % doubled)."""
    return _PARAM.sub(r"%(\1)s", sql.replace("%", "%%"))
