"""Error cohorts: a shallow decision tree on "is this prediction wrong", its leaves read as rules.

Slices look at one feature at a time; the rows a model gets wrong often share a
combination ("high credit score *and* the north region"). A shallow, seeded
tree fitted to the per-row error (wrong or right for classification, absolute
error for regression) over the test split's features finds such combinations;
every leaf is a cohort with a rule a person can read (two leaves whose errors
differ no more than chance allows are merged back into one), ranked by what it costs
exactly as slices are (gap to the overall rate x size), so the costliest
cohorts can join the worst-slices table.

Numeric features enter the tree as they are (missing values included: the
tree routes them itself), the others one-hot encoded, so a rule reads
``region = islands`` or ``region ≠ islands``. Thresholds are moved to the
roundest number that splits the rows the same way, and several thresholds on
one feature along a path are merged into one range: ``600 < credit_score ≤ 700``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from reprobook.errors import ReprobookError
from reprobook.ml.error_analysis import (
    COHORT_FEATURE,
    SLICE_COLUMNS,
    _check_task,
    _fmt,
    _gap,
    _metric,
    _pair,
    _row_errors,
    _slice_keys,
)

COHORT_COLUMNS = [
    "rank", "cohort", "rule", "size", "error_name", "error", "share_of_errors",
    "metric_name", "metric", "overall", "gap", "cost", "errors",
]
ALL_ROWS = "all rows"
SPLIT_ALPHA = 0.05
"""Significance a split must reach (after correcting for the splits searched) to keep two cohorts apart."""


@dataclass(frozen=True)
class _Column:
    """One column the tree sees: a numeric feature, or one category of a categorical feature."""

    feature: str
    category: str | None = None  # None: numeric


@dataclass(frozen=True)
class ErrorCohorts:
    """The cohort table (one row per leaf, ranked by cost) and the cohort of every test row."""

    table: pd.DataFrame
    cohort_of_row: np.ndarray
    """The ``cohort`` (leaf id) each row of the features falls in, by position."""

    def rows(self, rank: int = 1) -> np.ndarray:
        """Boolean mask of the rows in the cohort ranked ``rank`` (1 = the costliest)."""
        if not 1 <= rank <= len(self.table):
            raise ReprobookError(f"rank: expected 1 to {len(self.table)}, found {rank}")
        return self.cohort_of_row == self.table["cohort"].iloc[rank - 1]


# ---------------------------------------------------------------- encoding


def encode(features: pd.DataFrame, min_rows: int = 1) -> tuple[np.ndarray, list[_Column]]:
    """The features as a float matrix for the tree: numeric as is (NaN kept), categories one-hot.

    Missing categorical values are a category of their own (``missing``), as in
    slices; columns of other dtypes (datetimes) are left out. A category held
    by fewer than ``min_rows`` rows gets no column: a tree whose leaves need
    ``min_rows`` rows can never split on it, and a name or timestamp column
    (one category per row) would otherwise make the matrix rows x rows wide
    (10,000 test rows: 800 MB, and a minute to fit).
    """
    blocks, columns = [], []
    for name in features.columns:
        series = features[name]
        if pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype):
            blocks.append(series.to_numpy(dtype=float, na_value=np.nan)[:, None])
            columns.append(_Column(str(name)))
            continue
        keys = _slice_keys(series, numeric_bins=1)
        if keys is None:
            continue
        codes = keys.cat.codes.to_numpy()
        counts = np.bincount(codes[codes >= 0], minlength=len(keys.cat.categories))
        kept = np.flatnonzero(counts >= min_rows)
        if not len(kept):
            continue
        blocks.append((codes[:, None] == kept[None, :]).astype(float))
        columns.extend(_Column(str(name), str(keys.cat.categories[code])) for code in kept)
    matrix = np.hstack(blocks) if blocks else np.zeros((len(features), 0))
    return matrix, columns


# ---------------------------------------------------------------- rules


def readable_cut(low: float, high: float) -> float:
    """The roundest number ``c`` with ``low <= c < high``.

    ``low`` is the largest value a split sends left and ``high`` the smallest it
    sends right, so ``x ≤ c`` splits the rows exactly as the tree's own
    threshold (a midpoint such as 700.5) does, and reads better: ``≤ 700``.
    """
    span = max(abs(low), abs(high))
    if span == 0 or not (math.isfinite(low) and math.isfinite(high)) or low >= high:
        return float(low)
    for places in range(-math.floor(math.log10(span)), 16):  # unit 10**-places, coarse to fine
        unit = 10.0 ** -places
        cut = math.floor(high / unit) * unit
        if cut >= high:
            cut -= unit
        cut = round(cut, places)
        if low <= cut < high:
            return float(cut)
    return float(low)


def _numeric_text(name: str, low: float | None, high: float | None, missing: bool | None) -> str:
    if low is not None and high is not None:
        text = f"{_fmt(low)} < {name} ≤ {_fmt(high)}"
    elif high is not None:
        text = f"{name} ≤ {_fmt(high)}"
    elif low is not None:
        text = f"{name} > {_fmt(low)}"
    else:
        return f"{name} missing" if missing else ""
    return f"({text} or {name} missing)" if missing else text


def _categorical_text(name: str, equal: list[str], not_equal: list[str]) -> str:
    if equal:
        return " and ".join(f"{name} = {value}" for value in equal)
    if len(not_equal) == 1:
        return f"{name} ≠ {not_equal[0]}"
    return f"{name} ∉ {{{', '.join(not_equal)}}}"


def _rule(path: list[tuple[int, bool, float, bool]], columns: list[_Column], matrix: np.ndarray,
          has_missing: np.ndarray) -> str:
    """One leaf's rule: its path's conditions grouped by feature (in order of first use), ranges merged.

    ``path`` holds (column, went_left, threshold, missing_went_this_way) per split.
    """
    by_feature: dict[str, list[tuple[int, bool, float, bool]]] = {}
    for step in path:
        by_feature.setdefault(columns[step[0]].feature, []).append(step)
    parts = []
    for name, steps in by_feature.items():
        if columns[steps[0][0]].category is None:
            column = steps[0][0]
            values = matrix[:, column]
            values = values[~np.isnan(values)]
            low = high = None
            for _, left, threshold, _ in steps:
                below, above = values[values <= threshold], values[values > threshold]
                cut = readable_cut(float(below.max()), float(above.min())) if len(below) and len(above) else threshold
                if left:
                    high = cut if high is None else min(high, cut)
                else:
                    low = cut if low is None else max(low, cut)
            missing = bool(has_missing[column]) and all(step[3] for step in steps)
            parts.append(_numeric_text(name, low, high, missing))
        else:
            equal = [columns[c].category for c, left, _, _ in steps if not left]
            not_equal = list(dict.fromkeys(columns[c].category for c, left, _, _ in steps if left))
            parts.append(_categorical_text(name, equal, not_equal))
    return " and ".join(part for part in parts if part) or ALL_ROWS


def leaf_rules(tree: Any, columns: list[_Column], matrix: np.ndarray, stop: set[int] | None = None) -> dict[int, str]:
    """The readable rule of every leaf of a fitted scikit-learn tree, by node id.

    Nodes in ``stop`` count as leaves (their subtree merged into them).
    """
    structure = tree.tree_
    has_missing = np.isnan(matrix).any(axis=0) if matrix.size else np.zeros(matrix.shape[1], dtype=bool)
    missing_left = getattr(structure, "missing_go_to_left", np.zeros(structure.node_count, dtype=np.uint8))
    rules: dict[int, str] = {}
    stack: list[tuple[int, list[tuple[int, bool, float, bool]]]] = [(0, [])]
    while stack:
        node, path = stack.pop()
        left, right = structure.children_left[node], structure.children_right[node]
        if left == right or (stop is not None and int(node) in stop):  # a leaf
            rules[int(node)] = _rule(path, columns, matrix, has_missing)
            continue
        column, threshold = int(structure.feature[node]), float(structure.threshold[node])
        to_left = bool(missing_left[node])
        stack.append((right, [*path, (column, False, threshold, not to_left)]))
        stack.append((left, [*path, (column, True, threshold, to_left)]))
    return rules


# ---------------------------------------------------------------- cohorts


def error_cohorts(
    features: pd.DataFrame,
    y_true: Any,
    y_pred: Any,
    *,
    task: str,
    max_depth: int,
    min_samples_leaf: int,
    seed: int,
) -> ErrorCohorts:
    """Fit the error tree and report every leaf as a cohort, the costliest first.

    The tree is a ``DecisionTreeClassifier`` on "is this prediction wrong"
    (classification) or a ``DecisionTreeRegressor`` on the absolute error
    (regression), seeded, at most ``max_depth`` deep with at least
    ``min_samples_leaf`` rows per leaf; sibling leaves whose errors do not
    differ beyond chance are merged back (a depth-limited tree would otherwise
    cut a uniformly bad cohort on noise). Per cohort: its rule, size, ``error``
    (the error rate, or the mean absolute error), its ``share_of_errors`` (of
    all misclassified rows, or of the summed absolute error), and the columns
    of :func:`~reprobook.ml.error_analysis.slice_metrics` (``metric`` is
    accuracy or MAE, ``gap`` is how much worse than overall, ``cost = gap *
    size``). Ranked like worst slices: cost, then gap, then rule; every leaf is
    listed, those no worse than overall last.
    """
    _check_task(task)
    for key, value in (("max_depth", max_depth), ("min_samples_leaf", min_samples_leaf)):
        if value < 1:
            raise ReprobookError(f"{key}: expected at least 1, found {value}")
    true, pred = _pair(y_true, y_pred, len(features))
    row_errors = _row_errors(true, pred, task)
    matrix, columns = encode(features, min_samples_leaf)
    if task == "classification":
        tree = DecisionTreeClassifier(max_depth=max_depth, min_samples_leaf=min_samples_leaf, random_state=seed)
        target = row_errors.astype(int)
    else:
        tree = DecisionTreeRegressor(max_depth=max_depth, min_samples_leaf=min_samples_leaf, random_state=seed)
        target = row_errors
    if len(row_errors) and matrix.shape[1]:
        tree.fit(matrix, target)
        owner = _merge_noise_splits(tree, matrix, row_errors, task)
        cohort_of_row = owner[tree.apply(matrix)].astype(int)
        leaves = tree.tree_.children_left == tree.tree_.children_right
        rules = leaf_rules(tree, columns, matrix, stop={int(n) for n in owner[leaves]})
    else:  # no rows or no usable feature: one cohort, every row
        cohort_of_row, rules = np.zeros(len(row_errors), dtype=int), {0: ALL_ROWS}
    return ErrorCohorts(_table(cohort_of_row, rules, row_errors, task), cohort_of_row)


def _merge_noise_splits(tree: Any, matrix: np.ndarray, row_errors: np.ndarray, task: str) -> np.ndarray:
    """Undo the splits that only cut noise; return, per tree node, the node whose cohort it belongs to.

    A tree grown to its depth splits even a cohort that is uniformly bad (a
    50% error rate splits on whatever tilts it a little), which would break
    one real cohort into several. Bottom-up, two sibling leaves are merged back
    into their parent unless their mean errors differ significantly: a
    two-sample z test (pooled for error rates), at level ``SPLIT_ALPHA``
    Bonferroni-corrected for the number of candidate splits the tree searched,
    since the tree picked the best-looking of them.
    """
    from scipy.stats import norm

    structure = tree.tree_
    left, right = structure.children_left, structure.children_right
    paths = tree.decision_path(matrix).tocsc()
    count = np.asarray(paths.sum(axis=0)).ravel().astype(float)
    total = paths.T @ row_errors
    squares = paths.T @ (row_errors ** 2)
    candidates = sum(max(len(np.unique(col[~np.isnan(col)])) - 1, 0) for col in matrix.T)
    critical = norm.isf(SPLIT_ALPHA / (2 * max(candidates, 1)))
    is_leaf = left == right
    for node in range(structure.node_count - 1, -1, -1):  # children have larger ids than their parent
        a, b = left[node], right[node]
        if is_leaf[node] or not (is_leaf[a] and is_leaf[b]):
            continue
        mean_a, mean_b = total[a] / count[a], total[b] / count[b]
        if task == "classification":
            pooled = (total[a] + total[b]) / (count[a] + count[b])
            spread = np.sqrt(pooled * (1 - pooled) * (1 / count[a] + 1 / count[b]))
        else:
            var_a = max(squares[a] - count[a] * mean_a**2, 0.0) / max(count[a] - 1, 1)
            var_b = max(squares[b] - count[b] * mean_b**2, 0.0) / max(count[b] - 1, 1)
            spread = np.sqrt(var_a / count[a] + var_b / count[b])
        differ = abs(mean_a - mean_b) > critical * spread if spread > 0 else mean_a != mean_b
        if not differ:
            is_leaf[node] = True
    owner = np.arange(structure.node_count)
    for node in range(structure.node_count):  # parents first: a merged node owns its whole subtree
        for child in (left[node], right[node]):
            if child >= 0 and is_leaf[owner[node]]:
                owner[child] = owner[node]
    return owner


def _table(leaf_of_row: np.ndarray, rules: dict[int, str], row_errors: np.ndarray, task: str) -> pd.DataFrame:
    grouped = pd.DataFrame({"cohort": leaf_of_row, "err": row_errors}).groupby("cohort", sort=True)["err"]
    stats = grouped.agg(["size", "sum"]).reset_index()
    size = stats["size"].to_numpy(dtype=int)
    errors_sum = stats["sum"].to_numpy(dtype=float)
    total = float(row_errors.sum())
    overall = float(_metric(total, len(row_errors), task)) if len(row_errors) else float("nan")
    metric = _metric(errors_sum, size, task).astype(float)
    gap = _gap(metric, overall, task)
    table = pd.DataFrame({
        "cohort": stats["cohort"].to_numpy(dtype=int),
        "rule": [rules[int(leaf)] for leaf in stats["cohort"]],
        "size": size,
        "error_name": "error_rate" if task == "classification" else "mae",
        "error": errors_sum / size,
        "share_of_errors": errors_sum / total if total > 0 else np.zeros(len(size)),
        "metric_name": "accuracy" if task == "classification" else "mae",
        "metric": metric,
        "overall": overall,
        "gap": gap,
        "cost": gap * size,
        "errors": np.rint(errors_sum).astype(int) if task == "classification" else errors_sum,
    })
    table = table.sort_values(["cost", "gap", "rule"], ascending=[False, False, True], kind="mergesort")
    table = table.reset_index(drop=True)
    table.insert(0, "rank", np.arange(1, len(table) + 1, dtype=int))
    return table[COHORT_COLUMNS]


def as_slices(cohorts: pd.DataFrame, min_size: int = 1) -> pd.DataFrame:
    """The cohorts in the shape of ``slice_metrics`` (feature ``"error cohort"``, slice = the rule).

    Cohorts smaller than ``min_size`` are left out, as small slices are.
    """
    kept = cohorts[cohorts["size"] >= min_size]
    frame = kept[[c for c in SLICE_COLUMNS if c not in ("feature", "slice")]].copy()
    frame.insert(0, "slice", kept["rule"].to_numpy())
    frame.insert(0, "feature", COHORT_FEATURE)
    return frame.reset_index(drop=True)[SLICE_COLUMNS]


def with_cohorts(slices: pd.DataFrame, cohorts: pd.DataFrame, min_size: int = 1) -> pd.DataFrame:
    """Slices and cohorts in one table for ``worst_slices``, keeping the slices' attrs (skipped counts).

    A cohort that is exactly a slice (``employment = self_employed``) is left
    out: the slice already stands for it.
    """
    extra = as_slices(cohorts, min_size)
    known = {f"{feature} = {value}" for feature, value in zip(slices["feature"], slices["slice"])}
    extra = extra[~extra["slice"].isin(known)].reset_index(drop=True)
    combined = pd.concat([slices, extra], ignore_index=True) if len(extra) else slices.copy()
    combined.attrs = dict(slices.attrs)
    return combined


def summary(cohorts: pd.DataFrame) -> dict[str, Any]:
    """Headline numbers for the stage's metrics: how many cohorts, and the costliest one's size, error and share."""
    if cohorts.empty:
        return {"cohorts": 0, "worst_cohort_size": 0, "worst_cohort_error": 0.0, "worst_cohort_error_share": 0.0,
                "worst_cohort_cost": 0.0}
    worst = cohorts.iloc[0]
    return {
        "cohorts": int(len(cohorts)),
        "worst_cohort_size": int(worst["size"]),
        "worst_cohort_error": float(worst["error"]),
        "worst_cohort_error_share": float(worst["share_of_errors"]),
        "worst_cohort_cost": float(worst["cost"]),
    }
