"""Tables that fit the book's page: rows of dicts rendered as wrapped HTML (every chapter
that prints a table; first in chapter 9)."""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping, Sequence

STYLE = ("border-collapse:collapse;font-size:0.85em;max-width:100%;table-layout:auto;"
         "word-break:normal;overflow-wrap:anywhere")
CELL = "padding:2px 6px;border-bottom:1px solid #ddd;vertical-align:top"


def _cell(value, fmt: str | Callable | None) -> str:
    if value is None:
        return "—"
    if callable(fmt):
        return str(fmt(value))
    if fmt and isinstance(value, int | float):
        return format(value, fmt)
    return str(value)


def table_html(rows: Sequence[Mapping], columns: Mapping[str, str],
               formats: Mapping[str, str | Callable] | None = None,
               caption: str | None = None) -> str:
    """HTML for ``rows`` (dicts); ``columns`` maps a row key to its header, in order;
    ``formats`` maps a key to a format spec (".2f") or a function; missing values show "—".
    Numbers are right-aligned, text wraps (chapter 9)."""
    formats = formats or {}
    parts = [f'<table style="{STYLE}">']
    if caption:
        parts.append(f'<caption style="caption-side:top;text-align:left">'
                     f"{html.escape(caption)}</caption>")
    parts.append("<tr>" + "".join(f'<th style="{CELL};text-align:left">{html.escape(header)}'
                                  "</th>" for header in columns.values()) + "</tr>")
    for row in rows:
        cells = []
        for key in columns:
            value = row.get(key)
            align = "right" if isinstance(value, int | float) else "left"
            cells.append(f'<td style="{CELL};text-align:{align}">'
                         f"{html.escape(_cell(value, formats.get(key)))}</td>")
        parts.append("<tr>" + "".join(cells) + "</tr>")
    parts.append("</table>")
    return "".join(parts)


def show_table(rows: Sequence[Mapping], columns: Mapping[str, str],
               formats: Mapping[str, str | Callable] | None = None,
               caption: str | None = None):
    """Display ``table_html`` in a notebook (chapter 9)."""
    from IPython.display import HTML, display

    display(HTML(table_html(rows, columns, formats, caption)))


PAGE_CHARACTERS = 76  # the widest text output line that fits the book's page


def say(*parts, width: int = PAGE_CHARACTERS) -> None:
    """``print(*parts)`` wrapped to the page, so that no output line needs scrolling
    (chapters 11-14)."""
    import textwrap

    print(textwrap.fill(" ".join(str(part) for part in parts), width))
