"""Tables that fit any width without cutting a value.

A :class:`Grid` is a rich renderable that chooses its layout when it is printed, from the
width it is given: the full table; the same with shorter headers; with its coverage columns
moved under it as footnotes; split into several tables that each repeat the row's key; and,
when even that does not fit, one stacked block per row (``header value`` pairs, wrapped
between pairs). No cell is ever truncated or wrapped inside: a value is shown whole or the
layout changes. rich's own ``…`` never appears, because every column is ``no_wrap`` and a
table is only printed at a width it measured to fit.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
from rich.measure import Measurement
from rich.segment import Segment
from rich.table import Table
from rich.text import Text

Cell = str | Text


@dataclass(frozen=True)
class Column:
    header: str
    #: a shorter header for narrow widths
    short: str | None = None
    justify: Literal["left", "right"] = "right"
    #: identifies the row: kept in every layout (and first on a stacked row)
    key: bool = False
    #: may move below the table as a footnote (e.g. coverage)
    footnote: bool = False
    #: prose that may wrap between words (a cost line); figures never wrap
    wrap: bool = False


@dataclass
class Grid:
    """A table of ``columns`` × ``rows`` (cells as text) that adapts to the width it gets."""

    title: str | None
    columns: Sequence[Column]
    rows: list[list[Cell]] = field(default_factory=list)
    #: ``False``: a compact listing without rules (``sessions``, a turn's waterfall)
    ruled: bool = True
    #: try stacked rows before splitting the table (listings: one block per row reads better)
    stack_before_split: bool = False
    #: lines printed under the table whatever the layout
    notes: list[Cell] = field(default_factory=list)
    _cell_widths: dict[int, int] = field(default_factory=dict, repr=False)
    _cell_lens: list[list[int]] | None = field(default=None, repr=False)

    def add_row(self, *cells: Cell) -> None:
        self.rows.append(list(cells))
        self._cell_widths.clear()
        self._cell_lens = None

    def plain(self) -> str:
        """Every title, header, cell and note as plain text (for the legend)."""
        parts = [self.title or ""] + [c.header for c in self.columns]
        parts += [_plain(cell) for row in self.rows for cell in row] + [_plain(n) for n in self.notes]
        return "\n".join(parts)

    # -- layouts --------------------------------------------------------------------------------

    def _header(self, i: int, short: bool) -> str:
        c = self.columns[i]
        return (c.short or c.header) if short else c.header

    def _lengths(self) -> list[list[int]]:
        """Every cell's width in terminal cells, measured once."""
        if self._cell_lens is None or len(self._cell_lens) != len(self.rows):
            self._cell_lens = [[_len(_plain(c)) for c in row] for row in self.rows]
        return self._cell_lens

    def _width(self, i: int, short: bool) -> int:
        """The widest cell of column ``i`` (its header included)."""
        if i not in self._cell_widths:
            self._cell_widths[i] = max((lens[i] for lens in self._lengths()), default=0)
        return max(self._cell_widths[i], cell_len(self._header(i, short)))

    def _slack(self, i: int, short: bool) -> int:
        """What a prose column gives up by wrapping between words (at most down to 12 cells)."""
        if not self.columns[i].wrap:
            return 0
        words = max((len(w) for row in self.rows for w in _plain(row[i]).split()), default=0)
        return max(0, self._width(i, short) - max(words, 12, cell_len(self._header(i, short))))

    def _fits(self, cols: Sequence[int], short: bool, width: int) -> bool:
        """Fits when the table's natural width (rich's own arithmetic: cells, padding, rules),
        less what its prose columns can give up by wrapping between words, is within ``width``."""
        n = len(cols)
        gaps = (3 * n - 3) if self.ruled else 2 * (n - 1)
        natural = sum(self._width(i, short) for i in cols) + gaps
        return natural - sum(self._slack(i, short) for i in cols) <= width

    def _table(self, cols: Sequence[int], *, short: bool) -> RenderableType:
        if not self.ruled:
            return _Lines(self, cols, short)
        # the title is printed above the table (see _titled), where it can wrap at the full width
        table = Table(show_edge=False, pad_edge=False)
        for i in cols:
            c = self.columns[i]
            table.add_column(self._header(i, short), justify=c.justify, no_wrap=not c.wrap, overflow="fold")
        for row in self.rows:
            table.add_row(*[row[i] for i in cols])
        return table

    def _titled(self, table: RenderableType, title: str | None) -> Iterator[RenderableType]:
        if title:
            yield Text(title, style="bold")
        yield table

    def _footnotes(self, cols: Sequence[int]) -> list[Text]:
        keys = [i for i, c in enumerate(self.columns) if c.key]
        out = []
        for i in cols:
            header = self.columns[i].header
            for row in self.rows:
                if not _plain(row[i]):
                    continue
                name = " ".join(_plain(row[k]) for k in keys).strip()
                value = f"{header} {_plain(row[i])}" if header else _plain(row[i])
                out.append(Text(f"{name}: {value}" if name else value, style="dim"))
        return out

    def _split(self, cols: Sequence[int], width: int) -> list[RenderableType] | None:
        keys = [i for i in cols if self.columns[i].key]
        rest = [i for i in cols if not self.columns[i].key]
        groups: list[list[int]] = []
        for i in rest:
            if groups and self._fits(keys + groups[-1] + [i], True, width):
                groups[-1].append(i)
                continue
            if not self._fits(keys + [i], True, width):
                return None
            groups.append([i])
        if len(groups) > 3:  # more than three parts reads worse than stacked rows
            return None
        return [self._table(keys + group, short=True) for group in groups]

    def _stacked(self, width: int) -> Iterator[RenderableType]:
        if self.title:
            yield Text(self.title, style="bold")
        keys = [i for i, c in enumerate(self.columns) if c.key]
        for row in self.rows:
            head = "  ".join(_plain(row[i]) for i in keys if _plain(row[i]))
            pieces = []
            for i, c in enumerate(self.columns):
                value = _plain(row[i])
                if c.key or not value:
                    continue
                label = c.header if c.short is None else c.short
                pieces.append(f"{label} {value}" if label else value)
            lines = _flow(pieces, width - 2)
            if head and lines and len(head) + 2 + len(lines[0]) <= width:
                first = Text(head, style="bold")
                first.append("  " + lines.pop(0), style="")
                yield first
            else:
                yield Text(head or "·", style="bold")
            for line in lines:
                yield Text("  " + line)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = options.max_width
        everything = list(range(len(self.columns)))
        kept = [i for i in everything if not self.columns[i].footnote]
        foot = [i for i in everything if self.columns[i].footnote]
        attempts: list[tuple[list[int], bool]] = [(everything, False), (everything, True)]
        if foot:
            attempts.append((kept, True))
        for cols, short in attempts:
            if self._fits(cols, short, width):
                yield from self._titled(self._table(cols, short=short), self.title)
                if len(cols) < len(everything):
                    yield from self._footnotes(foot)
                yield from self.notes
                return
        tables = None if self.stack_before_split else self._split(kept, width)
        if tables is not None:
            for n, table in enumerate(tables):
                if n:
                    yield Text("")
                yield from self._titled(table, self.title if n == 0 else
                                        (f"{self.title} (continued)" if self.title else None))
            yield from self._footnotes(foot)
        else:
            yield from self._stacked(width)
        yield from self.notes

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement(1, options.max_width)


class _Lines:
    """A table without rules, laid out here as lines of text: a listing of ten thousand rows
    renders in a fraction of what a rich Table needs to measure it."""

    def __init__(self, grid: Grid, cols: Sequence[int], short: bool) -> None:
        self.grid, self.cols, self.short = grid, list(cols), short

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        g, cols = self.grid, self.cols
        widths = [g._width(i, self.short) for i in cols]
        right = [g.columns[i].justify == "right" for i in cols]
        last = len(cols) - 1

        def styled(cells: Sequence[Cell], style: str = "") -> Text:
            out = Text(style=style, no_wrap=True, overflow="ignore")
            for n, (cell, w) in enumerate(zip(cells, widths, strict=True)):
                text = cell if isinstance(cell, Text) else Text(str(cell))
                pad = " " * (w - text.cell_len)
                if right[n]:
                    out.append(pad)
                    out.append_text(text)
                else:
                    out.append_text(text)
                    if n != last:
                        out.append(pad)
                if n != last:
                    out.append("  ")
            out.rstrip()
            return out

        yield styled([Text(g._header(i, self.short), style="bold underline") for i in cols])
        lengths = g._lengths()
        plain: list[Segment] = []  # a plain row is one segment ending in a newline: no Text machinery
        for row, lens in zip(g.rows, lengths, strict=True):
            cells = [row[i] for i in cols]
            if any(isinstance(c, Text) for c in cells):
                yield from plain
                plain = []
                yield styled(cells)
                continue
            parts: list[str] = []
            for n, i in enumerate(cols):
                value = str(row[i])
                pad = " " * (widths[n] - lens[i])
                parts.append(pad + value if right[n] else (value + pad if n != last else value))
            plain.append(Segment("  ".join(parts).rstrip() + "\n"))
        yield from plain

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        n = len(self.cols)
        w = sum(self.grid._width(i, self.short) for i in self.cols) + 2 * (n - 1)
        return Measurement(w, w)


def _len(text: str) -> int:
    """Terminal cells of ``text`` (``len`` for ASCII, which is nearly every cell)."""
    return len(text) if text.isascii() else cell_len(text)


def _plain(cell: Cell) -> str:
    return cell.plain if isinstance(cell, Text) else str(cell)


def _flow(pieces: Sequence[str], width: int, sep: str = " · ") -> list[str]:
    """Pieces joined by ``sep`` into lines of at most ``width``, breaking only between pieces."""
    lines: list[str] = []
    line = ""
    for piece in pieces:
        candidate = f"{line}{sep}{piece}" if line else piece
        if line and len(candidate) > width:
            lines.append(line)
            line = piece
        else:
            line = candidate
    if line:
        lines.append(line)
    return lines


def flow_text(pieces: Sequence[str], width: int, sep: str = " · ", indent: str = "") -> str:
    """Plain text: pieces on lines of at most ``width`` (a piece is never split)."""
    return "\n".join(indent + line for line in _flow(pieces, max(10, width - len(indent)), sep))
