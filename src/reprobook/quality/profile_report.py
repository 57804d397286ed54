"""The statistics of a partitioned data set as a report: every figure says whether it is exact.

Exact: counts, missing, infinite, min, max, histograms, category frequencies
(and distinct counts of categorical columns); mean and std up to rounding
(Chan's merge). From sketches once the data outgrows them: quantiles (rank
error stated) and numeric distinct counts (relative standard error stated).
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

from reprobook.quality import html
from reprobook.quality.jsonsafe import json_safe
from reprobook.quality.summary import DatasetSummary


@dataclass
class ProfileReport:
    """Statistics and error bounds of a merged summary."""

    summary: DatasetSummary

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe and deterministic: the statistics, plus ``error_bounds`` per column (empty = exact)."""
        statistics = self.summary.statistics().to_dict()
        for column, summary in zip(statistics["columns"], self.summary.columns):
            column["error_bounds"] = json_safe(summary.error_bounds())
        statistics["n_partitions"] = self.summary.n_partitions
        statistics["sketches"] = {"quantile_capacity": self.summary.config.quantile_capacity,
                                  "distinct_k": self.summary.config.distinct_k}
        return statistics

    def _lines(self) -> list[tuple[str, str, str]]:
        rows = []
        for stats, summary in zip(self.summary.statistics().columns, self.summary.columns):
            figures = f"{stats.count - stats.missing} present, {stats.missing} missing, {stats.distinct} distinct"
            if stats.min is not None:
                figures += (f", min {stats.min:.6g}, max {stats.max:.6g}, mean {stats.mean:.6g}"
                            f", median {stats.quantiles['0.5']:.6g}")
            elif stats.top_values:
                figures += ", top " + ", ".join(f"{v['value']} ({v['count']})" for v in stats.top_values[:3])
            bounds = summary.error_bounds()
            error = "exact" if not bounds else "; ".join(_bound_text(k, v) for k, v in bounds.items())
            rows.append((f"{stats.name} ({stats.kind})", figures, error))
        return rows

    def to_text(self) -> str:
        lines = [f"{self.summary.n_rows} rows, {len(self.summary.columns)} columns, "
                 f"{self.summary.n_partitions} partition(s)"]
        lines += [f"  {name}: {figures} [{error}]" for name, figures, error in self._lines()]
        return "\n".join(lines)

    def to_html(self, path: str | Path) -> Path:
        rows = [[html.cell(name), html.cell(figures), html.cell(error)] for name, figures, error in self._lines()]
        body = f"<p>{escape(self.to_text().splitlines()[0])}</p>\n" + html.table(["column", "figures", "error"], rows)
        return html.write(path, html.page("Data profile", body))


def _bound_text(name: str, value: float) -> str:
    if name == "quantiles_rank_error":
        return f"quantiles within ±{value:.2%} of rank"
    if name == "distinct_relative_std_error":
        return f"distinct count ±{value:.2%} (standard error)"
    if name == "categories_truncated_to":
        return f"only the {int(value)} most frequent categories kept"
    return f"{name} ±{value:.3g}"
