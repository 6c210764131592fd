"""The HTML both report pages are built from: the stylesheet, a standalone page's head and
end, tables, figures (images) and the explanation lines under a table. Every cell and attribute
is escaped here.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

PAGE_END = "</body>\n</html>\n"
STYLESHEET = """\
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1f2328;
  line-height: 1.45; max-width: 1100px; margin: 2em auto; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.2em; margin-top: 1.8em; padding-bottom: 0.2em; border-bottom: 1px solid #d0d7de; }
p.meta, p.note { color: #59636e; }
p.note { font-size: 0.92em; max-width: 60em; }
ul.notes { color: #59636e; font-size: 0.92em; max-width: 60em; padding-left: 1.2em; }
h3 { font-size: 1em; margin: 1.2em 0 0.2em; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; margin: 0.6em 0; }
th, td { border: 1px solid #d0d7de; padding: 0.3em 0.7em; text-align: right; white-space: nowrap; }
th { background: #f6f8fa; font-weight: 600; }
th.name, td.name { text-align: left; }
tr.best td { background: #dafbe1; font-weight: 600; }
tr.baseline td, tr.seed td { color: #59636e; }
td.seed { padding-left: 2em; }
tr.chosen td { background: #dafbe1; font-weight: 600; }
td.low { font-weight: 600; }
h2.promoted { color: #1a7f37; }
h2.refused { color: #9a6700; }
.bad { color: #cf222e; }
ul.flags { background: #fff8c5; border-left: 4px solid #d4a72c; padding: 0.5em 1em 0.5em 2em; }
p.ok { background: #dafbe1; border-left: 4px solid #1a7f37; padding: 0.5em 1em; }
figure { margin: 1em 0; }
img { max-width: 100%; height: auto; }
"""


def page_head(title: str) -> str:
    """The start of a standalone page, up to and including its `<h1>`: end it with `PAGE_END`.

    Args:
        title: the page's title and heading; escaped here.
    """
    title = html.escape(title)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{title}</title>\n<style>\n{STYLESHEET}</style>\n</head>\n<body>\n"
        f"<h1>{title}</h1>\n"
    )


def table(
    header: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    text: int = 0,
    classes: Sequence[str] | None = None,
) -> str:
    """An HTML table, every cell escaped.

    Args:
        header: the column names.
        rows: one list of cells per row; a cell is a value or (value, css class); None is blank.
        text: how many leading columns hold text (left-aligned); the rest are figures.
        classes: a css class per row ("" for none).
    """
    esc = html.escape
    heads = "".join(
        f'<th class="name">{esc(h)}</th>' if i < text else f"<th>{esc(h)}</th>"
        for i, h in enumerate(header)
    )
    body = []
    for r, row in enumerate(rows):
        cells = []
        for i, cell in enumerate(row):
            value, css = cell if isinstance(cell, tuple) else (cell, "")
            css = " ".join(c for c in ("name" if i < text else "", css) if c)
            shown = "" if value is None else esc(str(value))
            cells.append(f'<td class="{css}">{shown}</td>' if css else f"<td>{shown}</td>")
        attr = f' class="{esc(classes[r])}"' if classes and classes[r] else ""
        body.append(f"<tr{attr}>{''.join(cells)}</tr>")
    rows_html = "\n".join(body)
    return (
        f'<div class="scroll"><table>\n<thead><tr>{heads}</tr></thead>\n'
        f"<tbody>\n{rows_html}\n</tbody>\n</table></div>"
    )


def image(files: str, name: str | None, alt: str) -> str:
    """A figure whose src is `files` + `name`; "" without a name (an image not drawn)."""
    if not name:
        return ""
    src = html.escape(files + name, quote=True)
    return f'<figure><img src="{src}" alt="{html.escape(alt, quote=True)}"></figure>'


def explained(term: str, text: str) -> str:
    """One explanation, led by its term unless the text already starts with it; escaped."""
    if text.lower().startswith(term.lower()):
        return html.escape(text)
    return f"<strong>{html.escape(term)}</strong>: {html.escape(text)}"
