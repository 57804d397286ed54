"""Tiny inline SVG bar charts for the HTML reports (no image files, no JavaScript)."""

from __future__ import annotations

from html import escape
from typing import Any

WIDTH, HEIGHT = 220, 50


def distribution_svg(distribution: dict[str, Any]) -> str:
    """Reference (grey) and current (blue) shares side by side per bin or category."""
    ref, cur = distribution.get("reference") or [], distribution.get("current") or []
    if not ref:
        return ""
    top = max(max(ref), max(cur), 1e-12)
    n = len(ref)
    slot = WIDTH / n
    bar = max(slot / 2 - 0.5, 0.5)
    labels = distribution.get("categories")
    bars = []
    for i, (r, c) in enumerate(zip(ref, cur)):
        x = i * slot
        title = escape(str(labels[i])) if labels else f"bin {i + 1}"
        for offset, value, colour in ((0, r, "#9e9e9e"), (bar, c, "#1f6fd1")):
            h = HEIGHT * value / top
            bars.append(
                f'<rect x="{x + offset:.1f}" y="{HEIGHT - h:.1f}" width="{bar:.1f}" height="{h:.1f}" fill="{colour}">'
                f"<title>{title}: {value:.3f}</title></rect>"
            )
    return f'<svg width="{WIDTH}" height="{HEIGHT}" role="img">{"".join(bars)}</svg>'
