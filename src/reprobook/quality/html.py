"""A minimal self-contained HTML page (inline CSS, no scripts, no external files)."""

from __future__ import annotations

from html import escape
from pathlib import Path

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em}
table{border-collapse:collapse;width:100%;font-size:.9em}
th,td{border-bottom:1px solid #ddd;padding:.35em .5em;text-align:left;vertical-align:top}
th{background:#f4f4f4}td.num{text-align:right;font-variant-numeric:tabular-nums}
.bad{color:#a40000;font-weight:600}.warn{color:#8a5a00;font-weight:600}.ok{color:#1b6e20;font-weight:600}
.verdict{font-size:1.1em;padding:.6em 1em;border-radius:4px;background:#f4f4f4}
.note{color:#555;font-size:.9em}svg{vertical-align:middle}
"""


def page(title: str, body: str) -> str:
    """A complete HTML document around ``body`` (which must already be escaped)."""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{escape(title)}</title><style>{STYLE}</style></head>\n"
        f"<body>\n<h1>{escape(title)}</h1>\n{body}\n</body></html>\n"
    )


def table(headers: list[str], rows: list[list[str]]) -> str:
    """An HTML table; cells are inserted as given (escape text before)."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "\n".join("<tr>" + "".join(cells) + "</tr>" for cells in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table>"


def cell(text: object, css: str = "") -> str:
    """One escaped table cell."""
    attr = f' class="{css}"' if css else ""
    return f"<td{attr}>{escape(str(text))}</td>"


def write(path: str | Path, html_text: str) -> Path:
    """Write a page, creating the folder; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html_text, encoding="utf-8")
    return path
