"""Monitoring plots: one batch against its reference, and every batch over time.

Drawn on bare matplotlib figures and saved by :func:`reprobook.ml.plots.save_figure`
(same data, same bytes), shown inline by :func:`reprobook.ml.plots.show`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from reprobook.ml.plots import save_figure
from reprobook.monitoring import capture as cap
from reprobook.monitoring.monitor import VERDICTS, BatchReport, prediction_view
from reprobook.monitoring.reference import Reference

VERDICT_COLOURS = {"healthy": "#1b6e20", "watch": "#d18f00", "retrain": "#c62828"}


def prediction_distribution(reference: Reference, captured: pd.DataFrame, out: Path) -> Path:
    """The model's outputs on the batch against its held-out outputs (what prediction drift compares)."""
    ref, cur = prediction_view(reference.held_out, reference.task), prediction_view(captured, reference.task)
    column = ref.columns[0]
    fig = Figure(figsize=(6, 3.5))
    ax = fig.subplots()
    if pd.api.types.is_numeric_dtype(ref[column]):
        values = np.concatenate([ref[column].dropna().to_numpy(float), cur[column].dropna().to_numpy(float)])
        edges = np.histogram_bin_edges(values, bins=20) if values.size else np.linspace(0, 1, 21)
        ax.hist(ref[column].dropna(), bins=edges, density=True, alpha=0.5, color="#7a7a7a", label="held-out (reference)")
        ax.hist(cur[column].dropna(), bins=edges, density=True, alpha=0.5, color="#1f6fd1", label="this batch")
        ax.set_xlabel(column)
    else:
        shares = pd.DataFrame({"reference": ref[column].value_counts(normalize=True),
                               "batch": cur[column].value_counts(normalize=True)}).fillna(0.0).sort_index()
        x = np.arange(len(shares))
        ax.bar(x - 0.2, shares["reference"], width=0.4, color="#7a7a7a", label="held-out (reference)")
        ax.bar(x + 0.2, shares["batch"], width=0.4, color="#1f6fd1", label="this batch")
        ax.set_xticks(x, [str(v)[:12] for v in shares.index], rotation=45, ha="right")
    ax.set_title("Predictions: this batch against the held-out reference", fontsize=9)
    ax.legend(fontsize=8)
    return save_figure(fig, out / "predictions.png")


def performance(report: BatchReport, out: Path) -> Path | None:
    """Estimated and realized metrics with their intervals, against the reference and the threshold."""
    names = sorted(set(report.estimated) | set(report.realized))
    if not names:
        return None
    fig = Figure(figsize=(7, 0.45 * len(names) + 1.6))
    ax = fig.subplots()
    y = np.arange(len(names))
    for offset, (label, intervals, colour) in enumerate(
        (("estimated (no labels)", report.estimated, "#1f6fd1"), ("realized (labels)", report.realized, "#c62828"))
    ):
        rows = [(i, intervals[n]) for i, n in enumerate(names) if n in intervals]
        if not rows:
            continue
        positions = np.array([i for i, _ in rows]) + (offset - 0.5) * 0.3
        values = np.array([iv.value for _, iv in rows])
        bounds = np.array([iv.bounds(report.alpha) for _, iv in rows])
        ax.errorbar(values, positions, xerr=[values - bounds[:, 0], bounds[:, 1] - values], fmt="o", color=colour,
                    label=label, capsize=3)
    reference = report.reference.get("performance") or {}
    ref_points = [(i, reference[n]) for i, n in enumerate(names) if n in reference]
    if ref_points:
        ax.scatter([v for _, v in ref_points], [i for i, _ in ref_points], marker="|", s=300, color="black",
                   label="held-out (reference)")
    primary = report.reference.get("primary_metric")
    if report.reference.get("threshold") is not None and primary in names:
        i = names.index(primary)
        ax.plot([report.reference["threshold"]] * 2, [i - 0.45, i + 0.45], color="#c62828", linestyle="--",
                label=f"threshold ({primary})")
    ax.set_yticks(y, names)
    ax.set_title(f"Performance of batch {report.index}: {int((1 - report.alpha) * 100)}% intervals", fontsize=9)
    ax.legend(fontsize=7, loc="best")
    return save_figure(fig, out / "performance.png")


def batch_plots(report: BatchReport, reference: Reference, captured: pd.DataFrame, out: Path) -> list[Path]:
    """Every plot of one batch: drift per column, predictions, performance."""
    from reprobook.quality.plots import plot_drift

    paths = plot_drift(report.drift, out)
    paths.append(prediction_distribution(reference, captured, out))
    found = performance(report, out)
    return paths + ([found] if found else [])


# --- over batches --------------------------------------------------------------


def history_frame(entries: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per monitored batch: index, verdict, the primary metric's estimate and realization, drift."""
    rows = []
    for entry in entries:
        metrics, primary = entry["metrics"], entry["reference"]["primary_metric"]
        estimated = (metrics.get("estimated") or {}).get(primary, {})
        realized = (metrics.get("realized") or {}).get(primary, {})
        rows.append({
            "batch": entry["index"], "verdict": entry["verdict"], "model_version": entry["model"]["version"],
            "rows": metrics["rows"], "labelled_rows": metrics["labelled_rows"],
            "estimated": estimated.get("value"), "estimated_low": estimated.get("low"),
            "estimated_high": estimated.get("high"), "realized": realized.get("value"),
            "realized_low": realized.get("low"), "realized_high": realized.get("high"),
            "drifted_features": metrics["drift"]["drifted_features"],
            "prediction_drift": (metrics.get("prediction_drift") or {}).get("drifted", 0),
            "quality_errors": metrics["quality"]["errors"], "max_missing_share": metrics["missing_share"]["max"],
            "reference": entry["reference"]["performance"].get(primary), "threshold": entry["reference"].get("threshold"),
            "primary_metric": primary,
        })
    return pd.DataFrame(rows).sort_values("batch").reset_index(drop=True)


def over_batches(history: pd.DataFrame, out: Path) -> Path:
    """The primary metric (estimated band, realized points), drift and missing values, batch by batch."""
    fig = Figure(figsize=(9, 7))
    top, middle, bottom = fig.subplots(3, 1, sharex=True, gridspec_kw={"height_ratios": [2.2, 1, 1]})
    x = history["batch"].to_numpy()
    primary = history["primary_metric"].iloc[0]
    estimated = history["estimated"].astype(float)
    if estimated.notna().any():
        top.fill_between(x, history["estimated_low"].astype(float), history["estimated_high"].astype(float),
                         color="#1f6fd1", alpha=0.2, label="estimated interval")
        top.plot(x, estimated, color="#1f6fd1", marker=".", label="estimated (no labels)")
    realized = history["realized"].astype(float)
    if realized.notna().any():
        shown = realized.notna().to_numpy()
        top.errorbar(x[shown], realized[shown], yerr=[(realized - history["realized_low"].astype(float))[shown],
                                                      (history["realized_high"].astype(float) - realized)[shown]],
                     fmt="s", color="#c62828", capsize=3, label="realized (labels)")
    if history["reference"].notna().any():
        top.axhline(float(history["reference"].dropna().iloc[-1]), color="black", linewidth=1, label="held-out reference")
    if history["threshold"].notna().any():
        top.axhline(float(history["threshold"].dropna().iloc[-1]), color="#c62828", linestyle="--", label="threshold")
    for verdict in VERDICTS:
        chosen = history["verdict"] == verdict
        if chosen.any():
            level = top.get_ylim()[0]
            top.scatter(x[chosen.to_numpy()], [level] * int(chosen.sum()), color=VERDICT_COLOURS[verdict], marker="v",
                        label=verdict, zorder=3)
    top.set_ylabel(primary)
    top.legend(fontsize=7, ncol=3, loc="best")
    top.set_title("Monitoring over batches", fontsize=10)
    middle.bar(x, history["drifted_features"], color="#d18f00")
    middle.set_ylabel("drifted\nfeatures")
    bottom.plot(x, history["max_missing_share"], marker=".", color="#7a7a7a")
    bottom.set_ylabel("max missing\nshare")
    bottom.set_xlabel("batch")
    return save_figure(fig, out / "over_batches.png")
