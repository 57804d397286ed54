"""Drift and skew between a reference and a current data set, per column and overall.

Each column gets one p-value (numeric: KS, combined by Bonferroni with a
missing-share test when either side has missing values; categorical:
chi-square with missing as a category), effect sizes, and the distributions
for plots. P-values are then adjusted across columns so the batch verdict
keeps its false-alarm rate at alpha (see :mod:`reprobook.quality.multiple_testing`).
Columns are processed in parallel threads (numpy sorts release the GIL).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from reprobook.errors import ReprobookError
from reprobook.quality import drift_tests as t
from reprobook.quality.drift_config import DriftConfig
from reprobook.quality.drift_report import ColumnDrift, DriftReport
from reprobook.quality.kinds import (
    category_values,
    column_kind,
    is_numeric,
    numeric_values,
)
from reprobook.quality.multiple_testing import adjust
from reprobook.quality.parallel import parallel_map
from reprobook.quality.sketches import quantiles_of_sorted
from reprobook.quality.statistics import counts_in_bins, histogram_edges

MISSING = "<missing>"
OTHER = "<other>"


def _as_numbers(series: pd.Series) -> tuple[np.ndarray, int]:
    """Float values (NaN = missing) and how many non-missing values were not numbers."""
    if pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype):
        return numeric_values(series), 0
    coerced = pd.to_numeric(series.astype(object).where(series.notna(), None), errors="coerce")
    values = coerced.to_numpy(dtype="float64", na_value=np.nan)
    return values, int(series.notna().sum() - (~np.isnan(values)).sum())


def _effects_exceeded(effects: dict[str, float | None], config: DriftConfig) -> list[str]:
    thresholds = {
        "psi": config.psi_threshold,
        "jensen_shannon": config.js_threshold,
        "hellinger": config.hellinger_threshold,
        "wasserstein_norm": config.wasserstein_threshold,
        "linf": config.linf_threshold,
    }
    return [name for name, value in effects.items() if value is None or value > thresholds[name]]


def numeric_drift(name: str, reference: pd.Series, current: pd.Series, config: DriftConfig) -> ColumnDrift:
    """KS test, missing-share test and distances of one numeric column."""
    ref_values, _ = _as_numbers(reference)
    cur_values, not_numbers = _as_numbers(current)
    ref_missing, cur_missing = int(np.isnan(ref_values).sum()), int(np.isnan(cur_values).sum())
    a, b = ref_values[np.isfinite(ref_values)], cur_values[np.isfinite(cur_values)]
    a.sort()  # in place: the filtered arrays are already copies
    b.sort()
    result = ColumnDrift(
        column=name, kind="numeric", test="ks", n_reference=int(ref_values.size), n_current=int(cur_values.size),
        missing_reference=ref_missing / max(ref_values.size, 1), missing_current=cur_missing / max(cur_values.size, 1),
    )
    notes = []
    if not_numbers:
        notes.append(f"{not_numbers} non-numeric value(s) in current treated as missing")
    infinite = int(ref_values.size - ref_missing - a.size + cur_values.size - cur_missing - b.size)
    if infinite:
        notes.append(f"{infinite} infinite value(s) left out")
    if a.size == 0 or b.size == 0:
        result.test = "none"
        result.note = "; ".join(notes + ["no finite values on one side: not tested"])
        return result
    max_s, min_s, wasserstein = t.ecdf_comparison(a, b)
    if max(a.size, b.size) <= t.EXACT_KS_MAX_N:
        result.statistic, ks_p = t.ks_two_sample(a, b)
    else:
        result.statistic, ks_p = t.ks_asymptotic(max_s, min_s, a.size, b.size)
    p_values = [ks_p]
    if ref_missing or cur_missing:
        result.missing_p_value = t.missing_share_test(ref_missing, ref_values.size, cur_missing, cur_values.size)
        p_values.append(result.missing_p_value)
    result.p_value = float(min(1.0, min(p_values) * len(p_values)))
    inner = np.unique(quantiles_of_sorted(a, np.linspace(0, 1, config.quantile_bins + 1)[1:-1]))
    p_ref, p_cur = t.proportions_in_bins(a, inner), t.proportions_in_bins(b, inner)
    std = float(a.std())
    result.effects = {
        "psi": t.psi(p_ref, p_cur, config.psi_epsilon),
        "jensen_shannon": t.jensen_shannon(p_ref, p_cur),
        "hellinger": t.hellinger(p_ref, p_cur),
        "wasserstein_norm": wasserstein / std if std > 0 else (0.0 if wasserstein == 0 else None),
    }
    if inner.size + 1 < config.quantile_bins:
        notes.append(f"{inner.size + 1} quantile bins (tied reference quantiles merged)")
    edges = histogram_edges(float(min(a[0], b[0])), float(max(a[-1], b[-1])), config.plot_bins)
    result.distribution = {
        "edges": edges.tolist(),
        "reference": (counts_in_bins(a, edges) / a.size).tolist(),
        "current": (counts_in_bins(b, edges) / b.size).tolist(),
    }
    result.note = "; ".join(notes)
    return result


def _category_counts(series: pd.Series) -> pd.Series:
    text = category_values(series)
    counts = text.value_counts(dropna=True, sort=False)
    missing = int(series.isna().sum())
    if missing:
        counts = pd.concat([counts, pd.Series({MISSING: missing})])
    return counts


def categorical_drift(name: str, reference: pd.Series, current: pd.Series, config: DriftConfig) -> ColumnDrift:
    """Chi-square test and distances of one categorical column (missing is a category)."""
    return categorical_drift_from_counts(
        name, _category_counts(reference), _category_counts(current), int(len(reference)), int(len(current)),
        float(reference.isna().mean()) if len(reference) else 0.0,
        float(current.isna().mean()) if len(current) else 0.0, config,
    )


def categorical_drift_from_counts(name: str, ref_counts: pd.Series, cur_counts: pd.Series, n_reference: int,
                                  n_current: int, missing_reference: float, missing_current: float,
                                  config: DriftConfig) -> ColumnDrift:
    """:func:`categorical_drift` from frequency tables (missing counted under ``MISSING``).

    Tables merge exactly, so drift computed from the merged tables of a
    partitioned data set equals the in-memory result.
    """
    table = pd.concat([ref_counts.rename("reference"), cur_counts.rename("current")], axis=1).fillna(0)
    table.index = table.index.astype(str)
    table = table.sort_index()
    result = ColumnDrift(
        column=name, kind="categorical", test="chi2", n_reference=n_reference, n_current=n_current,
        missing_reference=missing_reference, missing_current=missing_current,
    )
    result.new_categories = [str(c) for c in table.index[(table["reference"] == 0) & (table["current"] > 0)]]
    notes = []
    if len(table) > config.max_categories:
        pooled = (table["reference"] + table["current"]).sort_values(ascending=False, kind="stable")
        keep = pooled.index[: config.max_categories - 1]
        other = table.drop(index=keep).sum().rename(OTHER)
        table = pd.concat([table.loc[sorted(keep)], other.to_frame().T])
        notes.append(f"{len(pooled) - len(keep)} rare categories merged into {OTHER}")
    if table["reference"].sum() == 0 or table["current"].sum() == 0:
        result.test = "none"
        result.note = "; ".join(notes + ["no values on one side: not tested"])
        return result
    counts = table[["reference", "current"]].to_numpy(dtype="float64").T
    result.statistic, result.p_value, _ = t.chi_square(counts)
    p_ref, p_cur = counts[0] / counts[0].sum(), counts[1] / counts[1].sum()
    result.effects = {
        "linf": float(np.max(np.abs(p_ref - p_cur))),
        "psi": t.psi(p_ref, p_cur, config.psi_epsilon),
        "jensen_shannon": t.jensen_shannon(p_ref, p_cur),
    }
    result.distribution = {"categories": table.index.tolist(), "reference": p_ref.tolist(), "current": p_cur.tolist()}
    result.note = "; ".join(notes)
    return result


def _column_drift(name: str, reference: pd.Series, current: pd.Series, config: DriftConfig) -> ColumnDrift:
    """Dispatch on the reference column's kind (the current side is read the same way)."""
    kind = column_kind(reference)
    if reference.isna().all():
        kind = column_kind(current)
    if is_numeric(kind):
        return numeric_drift(name, reference, current, config)
    return categorical_drift(name, reference, current, config)


def _decide(columns: list[ColumnDrift], config: DriftConfig) -> None:
    """Adjust p-values across tested columns and set each column's verdict."""
    tested = [c for c in columns if c.p_value is not None]
    adjusted = adjust(np.array([c.p_value for c in tested]), config.correction)
    for column, p in zip(tested, adjusted):
        column.p_value_adjusted = float(p)
        column.significant = bool(p <= config.alpha)
    for column in columns:
        column.effects_exceeded = _effects_exceeded(column.effects, config) if column.effects else []
        large = bool(column.effects_exceeded)
        if config.decision == "test":
            column.drifted = column.significant
        elif config.decision == "effect":
            column.drifted = large
        else:
            column.drifted = column.significant and large


def detect_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    config: DriftConfig | None = None,
    columns: list[str] | None = None,
) -> DriftReport:
    """Compare ``current`` with ``reference`` column by column (default: the columns both have)."""
    for label, frame in (("reference", reference), ("current", current)):
        if not isinstance(frame, pd.DataFrame):
            raise TypeError(f"detect_drift expects pandas DataFrames, got {type(frame).__name__} for {label}")
        if len(frame) == 0:
            raise ReprobookError(f"the {label} data set is empty: nothing to compare")
    config = config or DriftConfig()
    ref_names, cur_names = [str(c) for c in reference.columns], [str(c) for c in current.columns]
    columns = columns_to_compare(ref_names, cur_names, columns)
    results = parallel_map(lambda c: _column_drift(c, reference[c], current[c], config), columns)
    _decide(results, config)
    return DriftReport(
        columns=results, config=config, n_reference=int(len(reference)), n_current=int(len(current)),
        only_in_reference=[c for c in ref_names if c not in cur_names],
        only_in_current=[c for c in cur_names if c not in ref_names],
    )


def columns_to_compare(ref_names: list[str], cur_names: list[str], columns: list[str] | None) -> list[str]:
    """The columns asked for (default: those both data sets have), each checked to be in both."""
    if columns is None:
        columns = [c for c in ref_names if c in cur_names]
    else:
        absent = [c for c in columns if c not in ref_names or c not in cur_names]
        if absent:
            raise ReprobookError(f"column(s) {absent} requested for drift are not in both data sets")
    if not columns:
        raise ReprobookError(f"reference and current data have no column in common (reference: {ref_names[:10]})")
    return columns
