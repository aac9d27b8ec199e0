"""A tiny document model rendered to Markdown and to self-contained HTML.

The report is built once as a list of `Section`s; both outputs come from the
same blocks so they cannot disagree. HTML embeds images as base64 data URIs
and carries its CSS inline: it opens offline, from an e-mail, anywhere.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import re

import pandas as pd

__all__ = ["Text", "Bullets", "Table", "Image", "Section", "to_markdown", "to_html", "table_markdown"]


@dataclasses.dataclass(frozen=True)
class Text:
    """A paragraph; `backticks` become code spans."""

    text: str


@dataclasses.dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Table:
    """A display table: every cell already formatted as a string."""

    title: str
    frame: pd.DataFrame
    note: str = ""


@dataclasses.dataclass(frozen=True)
class Image:
    """A figure; `name` is its file stem under `figures/`."""

    name: str
    caption: str
    png: bytes


Block = Text | Bullets | Table | Image


@dataclasses.dataclass(frozen=True)
class Section:
    title: str
    blocks: tuple[Block, ...]


def _md_cell(x: object) -> str:
    return str(x).replace("|", "\\|").replace("\n", " ")


def table_markdown(table: Table) -> str:
    """'### title', an optional note, then a pipe table (one line per row)."""
    df = table.frame
    lines = [f"### {table.title}", ""]
    if table.note:
        lines += [table.note, ""]
    if df.empty:
        return "\n".join(lines + ["_(no rows)_", ""])
    lines.append("| " + " | ".join(_md_cell(c) for c in df.columns) + " |")
    lines.append("|" + "|".join("---" for _ in df.columns) + "|")
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(_md_cell(x) for x in row) + " |")
    return "\n".join(lines + [""])


def to_markdown(title: str, sections: list[Section], image_dir: str = "figures") -> str:
    """Markdown with images referenced as `image_dir/<name>.png` (relative to the .md file)."""
    out = [f"# {title}", ""]
    for sec in sections:
        out += [f"## {sec.title}", ""]
        for b in sec.blocks:
            if isinstance(b, Text):
                out += [b.text, ""]
            elif isinstance(b, Bullets):
                out += [f"- {item}" for item in b.items] + [""]
            elif isinstance(b, Table):
                out.append(table_markdown(b))
            else:
                out += [f"![{b.caption}]({image_dir}/{b.name}.png)", "", f"*{b.caption}*", ""]
    return "\n".join(out).rstrip() + "\n"


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{border-bottom:2px solid #444}h2{border-bottom:1px solid #ccc;margin-top:2em}h3{margin-bottom:.3em}
table{border-collapse:collapse;margin:.5em 0 1.2em;font-size:.9em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}th{background:#f0f0f0}
td:first-child,th:first-child{text-align:left}
code{background:#f4f4f4;padding:0 .2em;border-radius:3px}
figure{margin:1em 0}figure img{max-width:100%}figcaption{font-style:italic;color:#555}
.note{color:#555;font-size:.9em}
"""


def _inline(text: str) -> str:
    """Escape HTML, then turn `code` spans and **bold** into tags."""
    s = html.escape(text)
    s = re.sub(r"`([^`]+)`", r"<code>\1</code>", s)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", s)


def _table_html(t: Table) -> str:
    parts = [f"<h3>{_inline(t.title)}</h3>"]
    if t.note:
        parts.append(f'<p class="note">{_inline(t.note)}</p>')
    if t.frame.empty:
        return "\n".join(parts + ["<p><em>(no rows)</em></p>"])
    parts.append("<table><thead><tr>" + "".join(f"<th>{_inline(str(c))}</th>" for c in t.frame.columns)
                 + "</tr></thead><tbody>")
    for row in t.frame.itertuples(index=False):
        parts.append("<tr>" + "".join(f"<td>{_inline(str(x))}</td>" for x in row) + "</tr>")
    parts.append("</tbody></table>")
    return "\n".join(parts)


def _block_html(b: Block) -> str:
    if isinstance(b, Text):
        return f"<p>{_inline(b.text)}</p>"
    if isinstance(b, Bullets):
        return "<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in b.items) + "</ul>"
    if isinstance(b, Table):
        return _table_html(b)
    data = base64.b64encode(b.png).decode("ascii")
    return (f'<figure><img alt="{html.escape(b.caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{_inline(b.caption)}</figcaption></figure>")


def to_html(title: str, sections: list[Section]) -> str:
    """One self-contained HTML page: inline CSS, base64 images, no external resource."""
    body = [f"<h1>{_inline(title)}</h1>"]
    for sec in sections:
        body.append(f"<h2>{_inline(sec.title)}</h2>")
        body += [_block_html(b) for b in sec.blocks]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>\n"
            + "\n".join(body) + "\n</body></html>\n")
