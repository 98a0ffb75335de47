"""Everything the CLI prints: results on stdout, progress and notes on stderr.

Both consoles have markup and emoji replacement off, because titles, handles and payloads are user
text that must print exactly as written (`[bold]` or `:key:` in a title is not formatting).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from logline.store.interface import StoredSpan

PIPED_WIDTH = 160


def _console(*, stderr: bool) -> Console:
    console = Console(stderr=stderr, markup=False, emoji=False, highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        # Rich assumes 80 columns when piped, which folds every id and key in a table.
        console.width = PIPED_WIDTH
    return console


out = _console(stderr=False)
err = _console(stderr=True)


def emit(text: str) -> None:
    """Write machine-readable text (JSON, notes, keys) to stdout untouched by Rich."""
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()


def emit_json(value: Any) -> None:
    emit(json.dumps(value, indent=2, ensure_ascii=False))


def fields(rows: Sequence[tuple[str, object]], *, console: Console = out) -> None:
    """Aligned `label  value` lines; values never wrap, so ids and keys stay copyable."""
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        line = Text.assemble(
            (label.ljust(width), "bold"), "  ", "-" if value is None else str(value)
        )
        console.print(line, soft_wrap=True)


def one_line(message: str) -> str:
    """An error message as the single line `main` prints, whatever newlines it held."""
    return " ".join(message.split()) or "unknown error"


def note(message: str) -> None:
    err.print(message, soft_wrap=True)


def table(title: str | None, columns: Sequence[str], *, unbroken: Sequence[str] = ()) -> Table:
    """A table whose `unbroken` columns (ids, keys) never wrap: people copy them whole."""
    result = Table(title=title, title_justify="left", header_style="bold")
    for name in columns:
        if name in unbroken:
            result.add_column(name, no_wrap=True)
        else:
            result.add_column(name, overflow="fold")
    return result


def short(digest: bytes | str, length: int = 12) -> str:
    """A hash prefix for people to compare at a glance; full values are in --json output."""
    text = digest.hex() if isinstance(digest, bytes) else digest
    return text[:length] + "…"


def mask_url(url: str) -> str:
    """A database URL with its password replaced, safe to print."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host += f":{parts.port}"
    netloc = f"{parts.username or ''}:***@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def stored_json(stored: StoredSpan) -> dict[str, Any]:
    """The same shape as a bundle's entry lines, so `verify-receipt --span` accepts either."""
    return stored.to_json()


@contextmanager
def progress(description: str) -> Iterator[Callable[[int, int], None]]:
    """A progress bar on stderr, shown only on a terminal; yields the `(done, total)` callback."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())  # fmt: skip
    with Progress(*columns, console=err, transient=True, disable=not err.is_terminal) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update
