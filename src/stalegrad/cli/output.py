"""What the commands print: JSON, tables that fit the terminal, numbers, theory's caveats, a progress bar."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click


def emit_json(obj: Any) -> None:
    from ..artefacts import dumps

    click.echo(dumps(obj))


@contextmanager
def progress_bar(enabled: bool = True) -> Iterator[Callable[[str, int, int], None] | None]:
    """A rich progress bar on stderr when stderr is a terminal; otherwise no callback at all."""
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>5.1f}%"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        tasks: dict[str, Any] = {}

        def report(what: str, done: int, total: int) -> None:
            if what not in tasks:
                tasks[what] = bar.add_task(what, total=total)
            bar.update(tasks[what], completed=done, total=total)

        yield report


def print_table(title: str, columns: list[str], rows: list[list[str]]) -> None:
    """A table on stdout that fits the terminal (``COLUMNS`` or the terminal's width; a cell too wide wraps, it is
    never cut); written to a pipe or file, lines are as long as the widest row needs."""
    import os
    import shutil

    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    needed = sum(max([len(c), *(len(r[k]) for r in rows)]) + 3 for k, c in enumerate(columns)) + 1
    if sys.stdout.isatty() or "COLUMNS" in os.environ:
        width = shutil.get_terminal_size((needed, 24)).columns
    else:
        width = max(needed, len(title))
    table = Table(title=escape(title), title_justify="left")
    for c in columns:
        table.add_column(
            escape(c), justify="right" if c not in ("label", "system", "compute") else "left", overflow="fold"
        )
    for r in rows:
        table.add_row(*(escape(x) for x in r))
    Console(width=width).print(table)


def fmt(x: float, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return f"{x:.{digits}f}"


def print_caveats(rows: list[dict[str, Any]]) -> None:
    """One ``note:`` line per distinct caveat of the theory."""
    for note in dict.fromkeys(r["caveat"] for r in rows if r.get("caveat")):
        click.echo(f"note: {note}")
