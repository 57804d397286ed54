"""Matplotlib PNG plots of a drift report.

Drawn on bare ``Figure`` objects (no pyplot, no backend chosen: a notebook keeps
its own, and no display is needed), at a fixed dpi and without software
metadata, so the same report gives the same bytes.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from reprobook.quality.drift_report import ColumnDrift, DriftReport


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "column"


DPI = 100
PNG_METADATA = {"Software": None}


def _figure(size: tuple[float, float]):
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=DPI)
    return fig, fig.subplots()


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI, format="png", metadata=PNG_METADATA)
    return path


def _summary(report: "DriftReport", path: Path) -> Path:
    """-log10 adjusted p-value per column, with the alpha line; drifted columns in red."""
    names = [c.column for c in report.columns]
    scores = [-np.log10(max(c.p_value_adjusted, 1e-300)) if c.p_value_adjusted is not None else 0.0 for c in report.columns]
    colours = ["#c62828" if c.drifted else "#7a7a7a" for c in report.columns]
    fig, ax = _figure((8, 0.3 * len(names) + 1.5))
    ax.barh(names[::-1], scores[::-1], color=colours[::-1])
    ax.axvline(-np.log10(report.config.alpha), color="black", linestyle="--", label=f"alpha = {report.config.alpha}")
    ax.set_xlabel(f"-log10 adjusted p-value ({report.config.correction})")
    ax.set_title(textwrap.fill(report.summary(), 80), fontsize=9)
    ax.legend(loc="lower right")
    return _save(fig, path)


def _distribution(column: "ColumnDrift", path: Path) -> Path:
    d = column.distribution
    fig, ax = _figure((7, 3.5))
    if "edges" in d:
        edges = np.array(d["edges"])
        centres, width = (edges[:-1] + edges[1:]) / 2, np.diff(edges)
        ax.bar(centres, d["reference"], width=width, alpha=0.5, color="#7a7a7a", label="reference")
        ax.bar(centres, d["current"], width=width, alpha=0.5, color="#1f6fd1", label="current")
    else:
        x = np.arange(len(d["categories"]))
        ax.bar(x - 0.2, d["reference"], width=0.4, color="#7a7a7a", label="reference")
        ax.bar(x + 0.2, d["current"], width=0.4, color="#1f6fd1", label="current")
        ax.set_xticks(x, [str(c)[:12] for c in d["categories"]], rotation=45, ha="right")
    ax.set_ylabel("share of rows")
    ax.set_title(textwrap.fill(f"{column.column}: {column.reason()}", 90), fontsize=8)
    ax.legend()
    return _save(fig, path)


def plot_drift(report: "DriftReport", out_dir: Path) -> list[Path]:
    """drift_summary.png and drift_<column>.png for each drifted column; returns the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [_summary(report, out_dir / "drift_summary.png")]
    for column in report.columns:
        if column.drifted and column.distribution:
            paths.append(_distribution(column, out_dir / f"drift_{_safe_name(column.column)}.png"))
    return paths
