"""Rendering of a report document to Markdown and to a self-contained HTML page.

A document is a list of blocks: ("h", level, text), ("p", text), ("table", df), ("img", file, caption).
Every table cell is a display string: one number format per column, missing values as an em dash.
"""

from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["MISSING", "formatted", "markdown_table", "kv_table", "to_markdown", "to_html"]

MISSING = "—"
# Wide tables scroll inside their wrapper instead of being clipped by the page width.
CSS = """body{font-family:system-ui,sans-serif;max-width:1280px;margin:2em auto;padding:0 1em;color:#222}
.table-wrap{overflow-x:auto;max-width:100%;margin:.5em 0 1.2em}
table{border-collapse:collapse;font-size:.9em}th,td{border:1px solid #ccc;padding:.25em .6em}
th{background:#f2f2f2}td{text-align:right;white-space:nowrap}
td:first-child{text-align:left}td.text{text-align:left;white-space:normal}
img{max-width:100%}figure{margin:1em 0}figcaption{color:#555;font-size:.9em}
code{background:#f4f4f4;padding:0 .2em}"""


def _missing(v: object) -> bool:
    return v is None or (isinstance(v, (float, np.floating)) and np.isnan(v))


def _column_format(values: pd.Series):
    """One formatter for a whole column: ints with separators; floats rounded to whole numbers
    when the column reaches 1000, else to 3 decimals; anything else as text."""
    numbers = [v for v in values if not _missing(v) and not isinstance(v, (bool, np.bool_))]
    if numbers and all(isinstance(v, (int, np.integer)) for v in numbers):
        return lambda v: f"{v:,}"
    if numbers and all(isinstance(v, (int, float, np.integer, np.floating)) for v in numbers):
        digits = 0 if max(abs(float(v)) for v in numbers) >= 1000 else 3
        return lambda v: f"{float(v):,.{digits}f}"
    return str


def formatted(df: pd.DataFrame) -> pd.DataFrame:
    """All cells as display strings, one number format per column, missing values as an em dash."""
    out = {}
    for c in df.columns:
        values = df[c].tolist()
        fmt = _column_format(df[c])
        out[c] = [MISSING if _missing(v) else str(v) if isinstance(v, (bool, np.bool_)) else fmt(v)
                  for v in values]
    return pd.DataFrame(out, index=df.index)


def markdown_table(df: pd.DataFrame) -> str:
    """A GitHub Markdown table (no ``tabulate`` dependency); numeric columns right-aligned."""
    cells = formatted(df)
    align = ["---:" if pd.api.types.is_numeric_dtype(df[c]) else ":---" for c in df.columns]
    lines = ["| " + " | ".join(str(c) for c in df.columns) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(str(v).replace("|", "\\|") for v in row) + " |" for row in cells.values]
    return "\n".join(lines)


def kv_table(d: dict, key: str = "field") -> pd.DataFrame:
    """A two-column table of a dict, values shown as written (nested ones as JSON, None as an em dash)."""
    values = [json.dumps(v) if isinstance(v, (dict, list)) else MISSING if v is None else str(v)
              for v in d.values()]
    return pd.DataFrame({key: [str(k) for k in d], "value": values})


def to_markdown(doc: list[tuple]) -> str:
    parts = []
    for block in doc:
        kind = block[0]
        if kind == "h":
            parts.append("#" * block[1] + " " + block[2])
        elif kind == "p":
            parts.append(block[1])
        elif kind == "table":
            parts.append(markdown_table(block[1]))
        elif kind == "img":
            parts.append(f"![{block[2]}]({block[1]})\n\n*{block[2]}*")
    return "\n\n".join(parts) + "\n"


def _inline(text: str) -> str:
    """Markdown-lite to HTML: **bold**, `code` and [text](link)."""
    text = html.escape(text)
    text = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", text)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    return re.sub(r"\[([^\]]+)\]\(([^)]+)\)", r'<a href="\2">\1</a>', text)


def html_table(df: pd.DataFrame) -> str:
    """A table inside a horizontally scrolling wrapper; text columns may wrap between words (with
    `code` and links rendered), numbers do not."""
    cells = formatted(df)
    text = [not pd.api.types.is_numeric_dtype(df[c]) for c in df.columns]
    # long snake_case headers may wrap after an underscore (never inside a word), so wide tables fit
    head = "".join(f"<th>{html.escape(str(c)).replace('_', '_<wbr>')}</th>" for c in df.columns)
    rows = ["<tr>" + "".join(f'<td class="text">{_inline(v)}</td>' if t and i else f"<td>{html.escape(v)}</td>"
                             for i, (v, t) in enumerate(zip(row, text))) + "</tr>" for row in cells.values]
    return (f'<div class="table-wrap"><table><thead><tr>{head}</tr></thead><tbody>'
            + "".join(rows) + "</tbody></table></div>")


def to_html(doc: list[tuple], out: Path, title: str) -> str:
    """A self-contained HTML page: figures embedded as base64 PNG data URIs."""
    body = []
    for block in doc:
        kind = block[0]
        if kind == "h":
            body.append(f"<h{block[1]}>{_inline(block[2])}</h{block[1]}>")
        elif kind == "p":
            body.append(f"<p>{_inline(block[1])}</p>")
        elif kind == "table":
            body.append(html_table(block[1]))
        elif kind == "img":
            data = base64.b64encode((out / block[1]).read_bytes()).decode("ascii")
            body.append(f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(block[2])}">'
                        f"<figcaption>{html.escape(block[2])}</figcaption></figure>")
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
