"""How the command prints: JSON, times, tables, the colours of states, progress.

Every command prints through these, so the conventions hold everywhere: JSON times
are ISO 8601 with ``T``; times shown to people are ``2026-11-24 09:25:00 +08:00``,
always with their UTC offset; tables size their columns to what they hold; FAILED,
BLOCKED and STALE are coloured on a terminal only, never when ``NO_COLOR`` is set.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime, tzinfo
from typing import IO, Any

import click

#: States a person should look at, and their colour on a terminal.
ATTENTION = {"FAILED": "red", "BLOCKED": "yellow", "STALE": "magenta", "HALTED": "red"}


def json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    return str(value)


def to_json(data: Any, indent: int | None = 2) -> str:
    return json.dumps(data, indent=indent, sort_keys=True, default=json_default, ensure_ascii=False)


def emit_json(data: Any) -> None:
    click.echo(to_json(data))


def emit_json_line(data: Any) -> None:
    """One compact JSON object on one line (JSON lines), flushed at once."""
    click.echo(to_json(data, indent=None))
    sys.stdout.flush()


def shown_time(value: datetime | None, zone: tzinfo | None = None) -> str:
    """A time for people: in ``zone`` (None: the machine's local zone), with its offset."""
    if value is None:
        return "-"
    local = value.astimezone(zone)
    offset = local.strftime("%z")
    offset = f"{offset[:3]}:{offset[3:]}" if offset else ""
    return local.strftime("%Y-%m-%d %H:%M:%S") + f" {offset}".rstrip()


def color_enabled(stream: IO[str] | None = None) -> bool:
    """Colours on a terminal only, and never when NO_COLOR is set (https://no-color.org)."""
    if os.environ.get("NO_COLOR"):
        return False
    stream = stream or sys.stdout
    return bool(getattr(stream, "isatty", lambda: False)())


def paint_state(state: str, width: int = 0, color: bool = False) -> str:
    """``state`` padded to ``width``, coloured when it needs attention and ``color`` is on."""
    text = state.ljust(width)
    word = state.split(":")[0].split(" ")[0]  # "FAILED: ...", "STALE (was RUNNING)"
    if color and word in ATTENTION:
        return click.style(word, fg=ATTENTION[word], bold=True) + text[len(word) :]
    return text


def table(
    headers: Sequence[str],
    rows: Iterable[Sequence[Any]],
    right: Iterable[int] = (),
    paint: dict[int, Callable[[str, int], str]] | None = None,
) -> list[str]:
    """Lines of a table whose columns are as wide as their widest cell (the last one is
    left as it is). ``right`` aligns those columns right; ``paint`` styles a column's
    cells after padding, so colour codes never shift the alignment."""
    rows = [[("-" if c is None else str(c)) for c in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    right, paint = set(right), paint or {}
    last = len(headers) - 1

    def line(cells: Sequence[str], painted: bool) -> str:
        out = []
        for i, cell in enumerate(cells):
            width = 0 if i == last else widths[i]
            if painted and i in paint:
                out.append(paint[i](cell, width))
            else:
                out.append(cell.rjust(width) if i in right else cell.ljust(width))
        return "  ".join(out).rstrip()

    return [line(list(headers), False), *(line(r, True) for r in rows)]


@contextmanager
def progress(length: int, label: str, enabled: bool) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr while ``enabled`` (a terminal, not --quiet); yields
    ``advance(n)``. Off, it prints nothing."""
    if not enabled or length == 0:
        yield lambda n: None
        return
    with click.progressbar(length=length, label=label, file=sys.stderr, show_pos=True) as bar:
        yield bar.update


def progress_wanted(quiet: bool) -> bool:
    return not quiet and bool(getattr(sys.stderr, "isatty", lambda: False)())
