"""The result of a drift comparison and its renderings (JSON dict, text, HTML, plots)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from html import escape
from pathlib import Path
from typing import Any

from reprobook.quality import html
from reprobook.quality.drift_config import DriftConfig
from reprobook.quality.jsonsafe import json_safe


@dataclass
class ColumnDrift:
    """Drift of one column: the test, its p-values, effect sizes and the distributions compared."""

    column: str
    kind: str  # "numeric" | "categorical"
    test: str  # "ks" | "chi2" | "none"
    n_reference: int
    n_current: int
    statistic: float | None = None
    p_value: float | None = None
    p_value_adjusted: float | None = None
    significant: bool = False
    drifted: bool = False
    effects: dict[str, float | None] = field(default_factory=dict)
    effects_exceeded: list[str] = field(default_factory=list)
    missing_reference: float = 0.0
    missing_current: float = 0.0
    missing_p_value: float | None = None
    new_categories: list[str] = field(default_factory=list)
    note: str = ""
    distribution: dict[str, Any] = field(default_factory=dict)
    error_bounds: dict[str, float] = field(default_factory=dict)
    """For figures computed from sketches (partitioned data): the bound on each figure's error; empty = exact."""

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if not self.error_bounds:
            del data["error_bounds"]  # exact figures: the single-process report keeps its layout
        return json_safe(data)

    def reason(self) -> str:
        """Why the column drifted (or not), in words."""
        parts = []
        if self.p_value_adjusted is not None:
            parts.append(f"{self.test} p={self.p_value:.3g} (adjusted {self.p_value_adjusted:.3g})")
        parts += [f"{name}={_fmt(self.effects.get(name))}" for name in self.effects]
        if self.new_categories:
            parts.append(f"new categories {self.new_categories[:5]}")
        if self.missing_reference != self.missing_current:
            parts.append(f"missing {self.missing_reference:.1%} -> {self.missing_current:.1%}")
        if self.note:
            parts.append(self.note)
        if self.error_bounds:
            parts.append("from sketches, error at most " + ", ".join(
                f"{name} ±{value:.2g}" for name, value in self.error_bounds.items()))
        return "; ".join(parts)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


@dataclass
class DriftReport:
    """Per-column drift and the data-set verdict."""

    columns: list[ColumnDrift]
    config: DriftConfig
    n_reference: int
    n_current: int
    only_in_reference: list[str] = field(default_factory=list)
    only_in_current: list[str] = field(default_factory=list)

    @property
    def drifted_columns(self) -> list[str]:
        return [c.column for c in self.columns if c.drifted]

    @property
    def drifted(self) -> bool:
        """The data-set verdict: at least one column drifted after multiple-testing control."""
        return bool(self.drifted_columns)

    def method(self) -> str:
        """The decision rule in one sentence, stated in every report."""
        c = self.config
        return (
            f"Numeric columns: two-sample Kolmogorov-Smirnov test; PSI, Jensen-Shannon distance and Hellinger "
            f"distance on {c.quantile_bins} reference-quantile bins; Wasserstein distance / reference std. "
            f"Categorical columns: chi-square test; L-infinity, PSI, Jensen-Shannon distance. "
            f"Missing-value share tested separately for numeric columns. Decision '{c.decision}' at alpha={c.alpha} "
            f"with {c.correction} correction over {sum(1 for col in self.columns if col.test != 'none')} column(s); "
            f"thresholds psi={c.psi_threshold}, js={c.js_threshold}, hellinger={c.hellinger_threshold}, "
            f"wasserstein={c.wasserstein_threshold}, linf={c.linf_threshold}."
        )

    def summary(self) -> str:
        verdict = "DRIFT" if self.drifted else "no drift"
        text = (
            f"{verdict}: {len(self.drifted_columns)} of {len(self.columns)} column(s) drifted "
            f"(reference {self.n_reference} rows, current {self.n_current} rows)"
        )
        if self.drifted_columns:
            text += ": " + ", ".join(self.drifted_columns)
        return text

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe and deterministic (no timestamps)."""
        return {
            "drifted": self.drifted,
            "drifted_columns": self.drifted_columns,
            "n_reference": self.n_reference,
            "n_current": self.n_current,
            "method": self.method(),
            "config": self.config.model_dump(),
            "only_in_reference": self.only_in_reference,
            "only_in_current": self.only_in_current,
            "columns": [c.to_dict() for c in self.columns],
        }

    def to_text(self) -> str:
        lines = [self.summary(), self.method()]
        for c in self.columns:
            mark = "DRIFT" if c.drifted else "ok"
            lines.append(f"  {mark:5} {c.column} ({c.kind}): {c.reason()}")
        if self.only_in_reference:
            lines.append(f"  columns only in reference (not compared): {', '.join(self.only_in_reference)}")
        if self.only_in_current:
            lines.append(f"  columns only in current (not compared): {', '.join(self.only_in_current)}")
        return "\n".join(lines)

    def to_html(self, path: str | Path) -> Path:
        """A self-contained HTML page: verdict, method, and every column with inline distribution charts."""
        from reprobook.quality.svg import distribution_svg

        rows = []
        for c in self.columns:
            status = html.cell("DRIFT", "bad") if c.drifted else html.cell("ok", "ok")
            rows.append([
                status,
                html.cell(c.column),
                html.cell(c.kind),
                html.cell(c.test),
                f'<td class="num">{escape(_fmt(c.p_value))}</td>',
                f'<td class="num">{escape(_fmt(c.p_value_adjusted))}</td>',
                html.cell(", ".join(f"{k}={_fmt(v)}" for k, v in c.effects.items())),
                f"<td>{distribution_svg(c.distribution)}</td>",
                html.cell(c.reason() if c.drifted else c.note),
            ])
        css = "bad" if self.drifted else "ok"
        body = f'<p class="verdict {css}">{escape(self.summary())}</p>\n<p class="note">{escape(self.method())}</p>\n'
        if self.drifted_columns:
            body += "<h2>Drifted columns</h2><ul>" + "".join(
                f"<li><b>{escape(c.column)}</b>: {escape(c.reason())}</li>" for c in self.columns if c.drifted
            ) + "</ul>\n"
        body += "<h2>All columns</h2>\n<p class=\"note\">Charts: reference in grey, current in blue.</p>\n"
        body += html.table(
            ["status", "column", "kind", "test", "p", "adjusted p", "effect sizes", "distribution", "notes"], rows
        )
        if self.only_in_reference or self.only_in_current:
            body += (
                f"<p>Not compared — only in reference: {escape(', '.join(self.only_in_reference) or 'none')}; "
                f"only in current: {escape(', '.join(self.only_in_current) or 'none')}.</p>"
            )
        return html.write(path, html.page("Data drift", body))

    def plot(self, path_dir: str | Path) -> list[Path]:
        """PNG plots: a summary of all columns and one distribution plot per drifted column."""
        from reprobook.quality.plots import plot_drift

        return plot_drift(self, Path(path_dir))
