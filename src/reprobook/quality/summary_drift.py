"""Drift between two data sets known only by their merged summaries (no raw data on the client).

Categorical columns: the frequency tables are exact, so chi-square, its
p-value and the distances equal the in-memory engine's. Numeric columns:
while both quantile sketches still hold every value, the values are rebuilt
and the in-memory test runs on them (equal results). Otherwise the two
empirical CDFs are read off the sketches, each within its rank error ε of the
exact CDF at every point, so

* the KS statistic is within ε_ref + ε_cur of the exact statistic; the
  p-value is that of the smallest statistic the bound allows, so a column is
  flagged only if drift is certain whatever the sketch's actual error (with
  100M rows the error can exceed the KS critical value: deciding on the
  estimate raised false alarms there), and the false-alarm rate stays at most
  alpha;
* the Wasserstein distance is within (ε_ref + ε_cur) x (max - min) of the
  exact one (the area between two CDFs each off by at most ε);
* each bin share used by PSI, Jensen-Shannon and Hellinger is within 2 ε of
  the exact share of that bin (bins at the sketched reference quantiles).

Every such column carries these bounds in ``ColumnDrift.error_bounds``; the
missing-share test uses exact counts.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from reprobook.errors import ReprobookError
from reprobook.quality import drift_tests as t
from reprobook.quality.drift import MISSING, _decide, categorical_drift_from_counts, columns_to_compare, numeric_drift
from reprobook.quality.drift_config import DriftConfig
from reprobook.quality.drift_report import ColumnDrift, DriftReport
from reprobook.quality.kinds import is_numeric
from reprobook.quality.parallel import parallel_map
from reprobook.quality.statistics import histogram_edges
from reprobook.quality.summary import ColumnSummary, DatasetSummary


def _rebuilt(column: ColumnSummary) -> pd.Series:
    """The column's values from an exact sketch (finite values, infinities, missing): order does not matter."""
    finite = column.quantiles.levels[0] if column.quantiles is not None and column.quantiles.levels else np.empty(0)
    return pd.Series(np.concatenate([finite, np.full(column.n_infinite, np.inf), np.full(column.missing, np.nan)]))


def _exact(column: ColumnSummary) -> bool:
    return column.quantiles is None or column.quantiles.exact


def _sketched_cdfs(ref: ColumnSummary, cur: ColumnSummary) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Both sketched CDFs on the union of the sketches' values (where either step function jumps)."""
    grid = np.unique(np.concatenate([ref.quantiles.weighted()[0], cur.quantiles.weighted()[0]]))
    return grid, ref.quantiles.cdf(grid), cur.quantiles.cdf(grid)


def sketched_numeric_drift(name: str, ref: ColumnSummary, cur: ColumnSummary, config: DriftConfig) -> ColumnDrift:
    """KS test, missing-share test and distances from quantile sketches, with their error bounds."""
    result = ColumnDrift(
        column=name, kind="numeric", test="ks", n_reference=ref.count, n_current=cur.count,
        missing_reference=ref.missing / max(ref.count, 1), missing_current=cur.missing / max(cur.count, 1),
    )
    notes = []
    infinite = ref.n_infinite + cur.n_infinite
    if infinite:
        notes.append(f"{infinite} infinite value(s) left out")
    na, nb = ref.moments.n, cur.moments.n
    if na == 0 or nb == 0:
        result.test = "none"
        result.note = "; ".join(notes + ["no finite values on one side: not tested"])
        return result
    eps_ref, eps_cur = ref.quantiles.rank_error, cur.quantiles.rank_error
    bound = eps_ref + eps_cur
    grid, f_ref, f_cur = _sketched_cdfs(ref, cur)
    difference = f_ref - f_cur
    max_s, min_s = float(max(difference.max(), 0.0)), float(max((-difference).max(), 0.0))
    result.statistic, estimate_p = t.ks_asymptotic(max_s, min_s, na, nb)
    # The test decides on the smallest statistic the bound allows: with millions of rows the sketch's
    # error can exceed the KS critical value, and the estimate's own p-value would then flag columns
    # that did not drift. Deciding on the bound keeps the batch false-alarm rate at most alpha.
    ks_p = t.ks_asymptotic(max(0.0, result.statistic - bound), 0.0, na, nb)[1]
    p_values = [ks_p]
    if ref.missing or cur.missing:
        result.missing_p_value = t.missing_share_test(ref.missing, ref.count, cur.missing, cur.count)
        p_values.append(result.missing_p_value)
    result.p_value = float(min(1.0, min(p_values) * len(p_values)))
    wasserstein = float(np.dot(np.abs(difference[:-1]), np.diff(grid)))
    std = float(np.sqrt(ref.moments.m2 / ref.moments.n))
    inner = np.unique(ref.quantiles.quantiles(np.linspace(0, 1, config.quantile_bins + 1)[1:-1]))
    p_ref, p_cur = (np.diff(np.concatenate([[0.0], s.quantiles.cdf(inner), [1.0]])) for s in (ref, cur))
    result.effects = {
        "psi": t.psi(p_ref, p_cur, config.psi_epsilon),
        "jensen_shannon": t.jensen_shannon(p_ref, p_cur),
        "hellinger": t.hellinger(p_ref, p_cur),
        "wasserstein_norm": wasserstein / std if std > 0 else (0.0 if wasserstein == 0 else None),
    }
    low, high = min(ref.low, cur.low), max(ref.high, cur.high)
    result.error_bounds = {
        "statistic": bound,
        "bin_share": 2 * max(eps_ref, eps_cur),
        "wasserstein_norm": bound * (high - low) / std if std > 0 else float("inf"),
    }
    notes.append(f"KS statistic from sketches; p-value at the smallest statistic the bound allows "
                 f"(conservative; the estimate's own p-value is {estimate_p:.3g})")
    if inner.size + 1 < config.quantile_bins:
        notes.append(f"{inner.size + 1} quantile bins (tied reference quantiles merged)")
    edges = histogram_edges(low, high, config.plot_bins)
    shares = []
    for side in (ref, cur):
        cumulative = side.quantiles.cdf(edges)
        cumulative[0] = 0.0
        shares.append(np.diff(cumulative).tolist())
    result.distribution = {"edges": edges.tolist(), "reference": shares[0], "current": shares[1]}
    result.note = "; ".join(notes)
    return result


def _category_table(column: ColumnSummary) -> pd.Series:
    counts = pd.Series(column.categories, dtype="int64")
    if column.missing:
        counts = pd.concat([counts, pd.Series({MISSING: column.missing})])
    return counts


def summary_column_drift(name: str, ref: ColumnSummary, cur: ColumnSummary, config: DriftConfig) -> ColumnDrift:
    """One column's drift, dispatched on the reference kind as the in-memory engine does."""
    kind = ref.kind if ref.kind is not None else cur.final_kind
    sides = {ref.mode, cur.mode} - {None}
    if len(sides) > 1:
        raise ReprobookError(f"column {name!r} is {ref.mode} in the reference and {cur.mode} in the current data")
    if is_numeric(kind):
        if _exact(ref) and _exact(cur):
            return numeric_drift(name, _rebuilt(ref), _rebuilt(cur), config)
        return sketched_numeric_drift(name, ref, cur, config)
    result = categorical_drift_from_counts(
        name, _category_table(ref), _category_table(cur), ref.count, cur.count,
        ref.missing / ref.count if ref.count else 0.0, cur.missing / cur.count if cur.count else 0.0, config,
    )
    if not (ref.categories_exact and cur.categories_exact):
        result.note = "; ".join(filter(None, [result.note, "only the most frequent categories were tracked"]))
    return result


def drift_from_summaries(reference: DatasetSummary, current: DatasetSummary, *, config: DriftConfig | None = None,
                         columns: list[str] | None = None) -> DriftReport:
    """:func:`~reprobook.quality.drift.detect_drift` for two summarised data sets."""
    for label, summary in (("reference", reference), ("current", current)):
        if summary.n_rows == 0:
            raise ReprobookError(f"the {label} data set is empty: nothing to compare")
    config = config or DriftConfig()
    ref_names, cur_names = reference.names, current.names
    columns = columns_to_compare(ref_names, cur_names, columns)
    results = parallel_map(
        lambda c: summary_column_drift(c, reference.column(c), current.column(c), config), columns)
    _decide(results, config)
    return DriftReport(
        columns=results, config=config, n_reference=reference.n_rows, n_current=current.n_rows,
        only_in_reference=[c for c in ref_names if c not in cur_names],
        only_in_current=[c for c in cur_names if c not in ref_names],
    )
