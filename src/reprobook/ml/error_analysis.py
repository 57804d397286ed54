"""Where the model fails: per-class metrics, slices, worst cohorts, fairness gaps.

The error-analysis stage asks "what should we work on next?". An overall
metric hides that answer; these functions break it down by class, by slice of
every feature, and by sensitive group, and rank the slices by what they cost
(how many errors, or how much absolute error, they add over the overall rate),
so that a large, mildly bad slice outranks a tiny, terrible one.

Conventions shared by every function:

* ``y_true``/``y_pred`` are aligned with ``features`` by position, not by index.
* Classification labels may be ints, bools or strings (not a mixture); they are
  ordered with ``sorted``. Regression targets are numbers.
* Every returned frame has a deterministic row order and a fresh ``RangeIndex``,
  so CSV/JSON written from it is byte-identical across runs.
"""

from __future__ import annotations

import difflib
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from reprobook.errors import ReprobookError

TASKS = ("classification", "regression")
MISSING = "missing"
COHORT_FEATURE = "error cohort"
"""The ``feature`` of the rows that error cohorts (:mod:`reprobook.ml.cohorts`) add to the worst slices."""
SLICE_COLUMNS = ["feature", "slice", "size", "metric_name", "metric", "overall", "gap", "cost", "errors"]
FAIRNESS_COLUMNS = [
    "attribute", "metric_name", "groups", "skipped_groups",
    "best_group", "best_metric", "worst_group", "worst_metric", "gap",
    "positive_class", "selection_rate_gap", "tpr_gap",
]
FIGSIZE = (8.0, 5.0)
DPI = 100
_REL_TOL = 1e-12  # gaps this small (relative to the metric) are float noise, not a slice being worse


# ---------------------------------------------------------------- validation


def _labels(y: Any, name: str) -> np.ndarray:
    """1-D numpy array of ``y``; missing labels are refused because no metric can use them."""
    arr = np.asarray(y.to_numpy() if isinstance(y, (pd.Series, pd.Index)) else y)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr.ravel()
    if arr.dtype.kind in "US":  # numpy strings would silently coerce numbers to text on comparison
        arr = arr.astype(object)
    if arr.ndim != 1:
        raise ReprobookError(f"{name}: expected a one-dimensional array of labels, found shape {arr.shape}")
    n_missing = int(pd.isna(arr).sum()) if arr.size else 0
    if n_missing:
        raise ReprobookError(f"{name}: expected no missing values, found {n_missing} of {arr.size}")
    return arr


def _pair(y_true: Any, y_pred: Any, n_rows: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    true, pred = _labels(y_true, "y_true"), _labels(y_pred, "y_pred")
    if len(true) != len(pred):
        raise ReprobookError(f"y_true and y_pred: expected the same length, found {len(true)} and {len(pred)}")
    if n_rows is not None and len(true) != n_rows:
        raise ReprobookError(f"features and y_true: expected the same number of rows, found {n_rows} and {len(true)}")
    return true, pred


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise ReprobookError(f"task: expected one of {', '.join(TASKS)}, found {task!r}")


def _python(value: Any) -> Any:
    """Plain Python scalar, so labels serialise the same way to CSV and JSON."""
    return value.item() if isinstance(value, np.generic) else value


def _classes(y_true: np.ndarray, y_pred: np.ndarray) -> list[Any]:
    """Sorted union of the labels; a str/number mixture is refused (sklearn could not score it)."""
    values = {_python(v) for v in np.concatenate([y_true.astype(object), y_pred.astype(object)])}
    kinds = {"string" if isinstance(v, str) else "number" for v in values}
    if len(kinds) > 1:
        raise ReprobookError("y_true/y_pred: expected labels of one kind, found a mixture of strings and numbers")
    return sorted(values)


def _regression_pair(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    try:
        return y_true.astype(float), y_pred.astype(float)
    except (TypeError, ValueError) as exc:
        raise ReprobookError(f"y_true/y_pred: regression expects numeric targets ({exc})") from None


# ---------------------------------------------------------------- per class


def per_class_report(y_true: Any, y_pred: Any) -> pd.DataFrame:
    """Precision, recall, F1 and support per class, one row per class in sorted order.

    Classes that only occur in the predictions are listed too (support 0): a model
    inventing a class is worth seeing. Undefined ratios are 0, not a warning.
    """
    true, pred = _pair(y_true, y_pred)
    classes = _classes(true, pred)
    precision, recall, f1, support = precision_recall_fscore_support(
        true, pred, labels=classes, zero_division=0
    )
    return pd.DataFrame({
        "class": classes,
        "precision": precision.astype(float),
        "recall": recall.astype(float),
        "f1": f1.astype(float),
        "support": support.astype(int),
    })


def confusion_table(y_true: Any, y_pred: Any) -> pd.DataFrame:
    """Confusion matrix in long format (actual, predicted, count), as ``dvc plots`` wants.

    Every (actual, predicted) pair of the sorted classes is present, zeros included,
    so the plot's axes and the file's rows do not depend on which mistakes occurred.
    """
    true, pred = _pair(y_true, y_pred)
    classes = _classes(true, pred)
    matrix = confusion_matrix(true, pred, labels=classes)
    return pd.DataFrame({
        "actual": [a for a in classes for _ in classes],
        "predicted": [p for _ in classes for p in classes],
        "count": matrix.ravel().astype(int),
    })


# ---------------------------------------------------------------- binning


def _fmt(x: float) -> str:
    """Shortest readable form: ``30`` not ``30.0``, ``0.312`` not ``3.12e-01``."""
    x = float(x)
    if x.is_integer() and abs(x) < 1e16:
        return str(int(x))
    return np.format_float_positional(x, trim="-")


def _round_sig(x: float, digits: int, mode: str = "nearest") -> float:
    """``x`` to ``digits`` significant digits, rounded to nearest, down (floor) or up (ceil)."""
    if x == 0 or not math.isfinite(x):
        return float(x)
    places = digits - 1 - math.floor(math.log10(abs(x)))
    if mode == "nearest":
        return round(float(x), places)
    step = math.floor if mode == "floor" else math.ceil
    value = step(x * 10**places) / 10**places if places >= 0 else step(x / 10**-places) * 10**-places
    # a float rounding slip must never move a bound inside the data
    return float(value) if (value <= x if mode == "floor" else value >= x) else float(x)


def _interior_edges(finite: np.ndarray, n_bins: int) -> list[float]:
    """Quantile cut points, rounded to as few significant digits as keep them apart.

    Rounded edges make labels exact *and* readable (``[40100, 52000)`` rather than
    ``[40123.457, ...)``): a row's bin is decided by the printed edge. A cut point
    at the minimum (a point mass, e.g. many zeros) moves up to the next distinct
    value so that the mass gets a bin of its own instead of swallowing the column.
    """
    distinct = np.unique(finite)
    low, high = float(distinct[0]), float(distinct[-1])
    raw = np.quantile(finite, np.linspace(0, 1, n_bins + 1))[1:-1]
    wanted = sorted({float(e) if e > low else float(distinct[1]) for e in raw if e <= high})
    for digits in range(3, 16):
        rounded = sorted({_round_sig(e, digits) for e in wanted})
        rounded = [e for e in rounded if low < e <= high]
        if len(rounded) == len(wanted):
            return rounded
    return wanted


def bin_numeric(series: pd.Series, n_bins: int) -> pd.Series:
    """Quantile bins of a numeric column, labelled like ``[30, 45)``; missing values -> ``"missing"``.

    Quantiles keep bins comparable in size, so no slice is too small to judge by
    construction. Bins are half-open, the last one closed; the outer bounds are the
    data's minimum and maximum rounded outwards to readable numbers. A bin that
    holds a single value is labelled with that value (``"0"``, ``"850"``), and a
    column with at most ``n_bins`` distinct values is not cut at all: each value is
    its own slice. Returns an ordered categorical aligned with ``series`` whose
    categories are the bins in numeric order, then ``"missing"``.
    """
    if n_bins < 1:
        raise ReprobookError(f"numeric_bins: expected at least 1, found {n_bins}")
    if not pd.api.types.is_numeric_dtype(series.dtype) or pd.api.types.is_bool_dtype(series.dtype):
        raise ReprobookError(f"column {series.name!r}: expected a numeric column to bin, found dtype {series.dtype}")
    values = series.to_numpy(dtype=float, na_value=np.nan)
    present = ~np.isnan(values)
    labels = np.full(len(values), MISSING, dtype=object)
    distinct = np.unique(values[present])
    finite = np.isfinite(values) & present
    if len(distinct) <= n_bins or np.unique(values[finite]).size < 2:
        categories = [_fmt(v) for v in distinct]
        labels[present] = [_fmt(v) for v in values[present]]
    else:
        edges = _interior_edges(values[finite], n_bins)
        bounds = [
            _round_sig(float(distinct[0]), 3, "floor"), *edges, _round_sig(float(distinct[-1]), 3, "ceil")
        ]
        index = np.searchsorted(np.asarray(edges, dtype=float), values[present], side="right")
        categories = []
        for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
            inside = np.unique(values[present][index == i])
            if len(inside) == 1:
                categories.append(_fmt(inside[0]))
            else:
                categories.append(f"[{_fmt(lo)}, {_fmt(hi)}{']' if i == len(edges) else ')'}")
        labels[present] = np.asarray(categories, dtype=object)[index]
    if not present.all():
        categories.append(MISSING)
    return pd.Series(pd.Categorical(labels, categories=categories, ordered=True), index=series.index, name=series.name)


def _slice_keys(series: pd.Series, numeric_bins: int) -> pd.Series | None:
    """Slice label per row as an ordered categorical, or None for a dtype that cannot be sliced.

    Categorical columns keep their category order, other text/bool columns sort
    their values as strings; missing values are always the last slice.
    """
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype) or isinstance(dtype, pd.CategoricalDtype) \
            or pd.api.types.is_object_dtype(dtype) or pd.api.types.is_string_dtype(dtype):
        missing = series.isna().to_numpy()
        as_text = np.array([str(v) for v in series.to_numpy(dtype=object)], dtype=object)
        if isinstance(dtype, pd.CategoricalDtype):
            order = list(dict.fromkeys(str(c) for c in dtype.categories))
        else:
            order = sorted(set(as_text[~missing]))
        missing_label = MISSING if MISSING not in order else f"<{MISSING}>"
        as_text[missing] = missing_label
        if missing.any():
            order.append(missing_label)
        return pd.Series(pd.Categorical(as_text, categories=order, ordered=True), index=series.index, name=series.name)
    if pd.api.types.is_numeric_dtype(dtype):
        return bin_numeric(series, numeric_bins)
    return None


# ---------------------------------------------------------------- slices


def _row_errors(true: np.ndarray, pred: np.ndarray, task: str) -> np.ndarray:
    """Per-row error: 1/0 for a wrong/right class, the absolute error for regression."""
    if task == "classification":
        return (true.astype(object) != pred.astype(object)).astype(float)
    true_f, pred_f = _regression_pair(true, pred)
    return np.abs(true_f - pred_f)


def _metric(errors_sum: np.ndarray | float, size: np.ndarray | float, task: str):
    """Accuracy from the error count, or MAE from the summed absolute error."""
    return (size - errors_sum) / size if task == "classification" else errors_sum / size


def _gap(metric: np.ndarray, overall: float, task: str) -> np.ndarray:
    """How much worse than overall (positive = worse) in both metric directions; float noise -> 0."""
    gap = overall - metric if task == "classification" else metric - overall
    scale = np.maximum(np.maximum(np.abs(metric), abs(overall)), 1.0 if task == "classification" else 0.0)
    return np.where(np.abs(gap) <= _REL_TOL * scale, 0.0, gap)


def _grouped(keys: pd.Series, row_errors: np.ndarray) -> pd.DataFrame:
    """size and summed error per slice, in the keys' category order (empty slices dropped)."""
    frame = pd.DataFrame({"slice": keys.array, "err": row_errors})  # categorical: keeps bin order
    grouped = frame.groupby("slice", observed=True, sort=True)["err"].agg(["size", "sum"])
    return grouped.reset_index()


def slice_metrics(
    features: pd.DataFrame,
    y_true: Any,
    y_pred: Any,
    *,
    task: str,
    min_slice_size: int,
    numeric_bins: int,
) -> pd.DataFrame:
    """The metric on every slice of every feature, with its gap to overall and its cost.

    Slices are the values of each categorical (object/category/bool/string) column
    and the quantile bins of each numeric column, missing values as a slice of their
    own. The metric is accuracy for classification and mean absolute error for
    regression. ``gap`` is how much worse the slice is than overall (positive =
    worse, whatever the metric's direction) and ``cost = gap * size``: the errors
    (or absolute error) the slice adds over what the overall rate predicts, which
    ranks slices by how much fixing them would help. ``errors`` is the number of
    misclassified rows (classification) or the summed absolute error (regression).

    Slices with fewer than ``min_slice_size`` rows are left out, because their
    metric is noise; how many were left out is in ``attrs["skipped_small_slices"]``,
    and columns of unsupported dtypes (e.g. datetimes) in ``attrs["skipped_columns"]``.
    Rows: features in column order, slices in their natural order, missing last.
    """
    _check_task(task)
    if min_slice_size < 1:
        raise ReprobookError(f"min_slice_size: expected at least 1, found {min_slice_size}")
    true, pred = _pair(y_true, y_pred, len(features))
    row_errors = _row_errors(true, pred, task)
    overall = float(_metric(row_errors.sum(), len(row_errors), task)) if len(row_errors) else float("nan")
    metric_name = "accuracy" if task == "classification" else "mae"

    parts, skipped_small, skipped_columns = [], 0, []
    for column in features.columns:
        keys = _slice_keys(features[column], numeric_bins)
        if keys is None:
            skipped_columns.append(str(column))
            continue
        grouped = _grouped(keys, row_errors)
        small = grouped["size"] < min_slice_size
        skipped_small += int(small.sum())
        grouped = grouped[~small]
        if grouped.empty:
            continue
        size = grouped["size"].to_numpy(dtype=int)
        errors_sum = grouped["sum"].to_numpy(dtype=float)
        metric = _metric(errors_sum, size, task).astype(float)
        gap = _gap(metric, overall, task)
        parts.append(pd.DataFrame({
            "feature": str(column),
            "slice": grouped["slice"].astype(str).to_numpy(),
            "size": size,
            "metric_name": metric_name,
            "metric": metric,
            "overall": overall,
            "gap": gap,
            "cost": gap * size,
            "errors": np.rint(errors_sum).astype(int) if task == "classification" else errors_sum,
        }))
    result = pd.concat(parts, ignore_index=True) if parts else _empty_slices(task)
    result.attrs["skipped_small_slices"] = skipped_small
    result.attrs["skipped_columns"] = skipped_columns
    result.attrs["min_slice_size"] = int(min_slice_size)
    return result


def _empty_slices(task: str) -> pd.DataFrame:
    errors_dtype = int if task == "classification" else float
    return pd.DataFrame({
        "feature": pd.Series([], dtype=object), "slice": pd.Series([], dtype=object),
        "size": pd.Series([], dtype=int), "metric_name": pd.Series([], dtype=object),
        "metric": pd.Series([], dtype=float), "overall": pd.Series([], dtype=float),
        "gap": pd.Series([], dtype=float), "cost": pd.Series([], dtype=float),
        "errors": pd.Series([], dtype=errors_dtype),
    })


def worst_slices(slices: pd.DataFrame, top_k: int) -> pd.DataFrame:
    """The ``top_k`` slices that cost the most, with a 1-based ``rank`` column first.

    Only slices worse than overall (positive cost) are listed. Ties are broken by
    larger gap, then feature and slice name, so the ranking never depends on row
    order. Accepts its own output again (the old rank is recomputed).
    """
    if top_k < 0:
        raise ReprobookError(f"top_k: expected zero or more, found {top_k}")
    absent = [c for c in SLICE_COLUMNS if c not in slices.columns]
    if absent:
        raise ReprobookError(f"slices: expected the columns of slice_metrics, missing {', '.join(absent)}")
    frame = slices.drop(columns=["rank"], errors="ignore")
    frame = frame[frame["cost"] > 0]
    frame = frame.sort_values(
        ["cost", "gap", "feature", "slice"], ascending=[False, False, True, True], kind="mergesort"
    ).head(top_k).reset_index(drop=True)
    frame.insert(0, "rank", np.arange(1, len(frame) + 1, dtype=int))
    frame.attrs = dict(slices.attrs)
    return frame


# ---------------------------------------------------------------- fairness


def fairness_gaps(
    features: pd.DataFrame,
    y_true: Any,
    y_pred: Any,
    *,
    sensitive: list[str],
    task: str,
    min_group_size: int,
    numeric_bins: int,
    positive_label: Any = None,
) -> pd.DataFrame:
    """For each sensitive attribute, the best and worst group and the gap between them.

    The metric is accuracy (classification) or MAE (regression); ``gap`` is always
    non-negative (best minus worst in the better direction). For binary
    classification two group-fairness gaps are added: the selection-rate gap
    (demographic parity difference: max minus min share predicted positive) and
    the true-positive-rate gap (equal opportunity difference, over groups that
    have positives). The positive class is the larger of the two sorted labels
    (``1``, ``True``, ``"yes"`` over ``"no"``) unless ``positive_label`` is given.
    Groups smaller than ``min_group_size`` are left out (``skipped_groups``);
    with fewer than two groups left, the gaps are NaN. Numeric attributes are
    binned like slices. One row per attribute, in the order given.
    """
    _check_task(task)
    absent = [name for name in sensitive if name not in features.columns]
    if absent:
        raise ReprobookError(_absent_sensitive_message(absent, features.columns))
    true, pred = _pair(y_true, y_pred, len(features))
    row_errors = _row_errors(true, pred, task)
    positive = _positive_class(true, pred, task, positive_label)
    metric_name = "accuracy" if task == "classification" else "mae"

    rows = []
    for name in sensitive:
        keys = _slice_keys(features[name], numeric_bins)
        if keys is None:
            raise ReprobookError(f"sensitive attribute {name!r}: cannot group a column of dtype {features[name].dtype}")
        frame = pd.DataFrame({
            "group": keys.array, "err": row_errors,
            "selected": (pred == positive) if positive is not None else False,
            "actual_pos": (true == positive) if positive is not None else False,
        })
        frame["hit"] = frame["selected"] & frame["actual_pos"]
        stats = frame.groupby("group", observed=True, sort=True).agg(
            size=("err", "size"), err=("err", "sum"), selected=("selected", "sum"),
            actual_pos=("actual_pos", "sum"), hit=("hit", "sum"),
        ).reset_index()
        kept = stats[stats["size"] >= min_group_size].reset_index(drop=True)
        row = dict.fromkeys(FAIRNESS_COLUMNS)
        row.update(attribute=str(name), metric_name=metric_name, groups=len(kept),
                   skipped_groups=int(len(stats) - len(kept)),
                   positive_class=None if positive is None else str(positive))
        if len(kept):
            metric = _metric(kept["err"].to_numpy(float), kept["size"].to_numpy(float), task)
            # goodness: larger is better in both directions; first group wins ties (stable order)
            goodness = metric if task == "classification" else -metric
            best, worst = int(np.argmax(goodness)), int(np.argmin(goodness))
            row.update(best_group=str(kept["group"][best]), best_metric=float(metric[best]),
                       worst_group=str(kept["group"][worst]), worst_metric=float(metric[worst]))
            if len(kept) >= 2:
                row["gap"] = float(goodness[best] - goodness[worst])
                if positive is not None:
                    row["selection_rate_gap"] = _spread(kept["selected"] / kept["size"])
                    has_pos = kept["actual_pos"] > 0
                    tpr = kept.loc[has_pos, "hit"] / kept.loc[has_pos, "actual_pos"]
                    row["tpr_gap"] = _spread(tpr) if len(tpr) >= 2 else float("nan")
        rows.append(row)
    result = pd.DataFrame(rows, columns=FAIRNESS_COLUMNS)
    for column in ("best_metric", "worst_metric", "gap", "selection_rate_gap", "tpr_gap"):
        result[column] = result[column].astype(float)
    return result


def _absent_sensitive_message(absent: list[str], columns: pd.Index) -> str:
    """Which sensitive features are not features, which columns are, and the params key to fix.

    A foreign data set's column names rarely match a copied params file, and the
    error only shows up after training, so the message says exactly what to change.
    """
    names = [str(c) for c in columns]
    available = ", ".join(names) or "(none)"
    near = difflib.get_close_matches(str(absent[0]), names, n=1)
    hint = f" (did you mean '{near[0]}'?)" if near else ""
    noun, verb = ("column", "is") if len(absent) == 1 else ("columns", "are")
    return (
        f"error_analysis.sensitive_features: {noun} {', '.join(map(repr, absent))} {verb} not in the features{hint}; "
        f"available columns: {available}; correct or remove {'it' if len(absent) == 1 else 'them'} in "
        "error_analysis.sensitive_features in params.yaml (the target and the columns of data.drop_columns "
        "are not features)"
    )


def _spread(rates: pd.Series) -> float:
    return float(rates.max() - rates.min())


def _positive_class(true: np.ndarray, pred: np.ndarray, task: str, positive_label: Any) -> Any:
    """The positive class of a binary task (None otherwise): given, or the larger label."""
    if task != "classification":
        return None
    classes = _classes(true, pred)
    if positive_label is not None:
        if positive_label not in classes:
            raise ReprobookError(
                f"positive_label: expected one of {', '.join(map(repr, classes))}, found {positive_label!r}"
            )
        return positive_label if len(classes) == 2 else None
    return classes[-1] if len(classes) == 2 else None


# ---------------------------------------------------------------- plot


def plot_slices(slices: pd.DataFrame, path: str | Path, top_k: int = 10) -> Path:
    """Horizontal bars of the costliest slices, the worst on top; writes a PNG and returns its path.

    Takes the output of ``slice_metrics`` or ``worst_slices``. Drawn on a bare Agg
    figure (no pyplot state, so notebooks keep their own backend) with a fixed size,
    dpi and no software metadata, so the same slices give the same bytes.
    """
    from reprobook.ml.plots import save_figure

    worst = worst_slices(slices, top_k)
    fig = Figure(figsize=FIGSIZE, dpi=DPI)
    ax = fig.subplots()
    if worst.empty:
        ax.text(0.5, 0.5, "no slice is worse than overall", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
    else:
        labels = [_slice_label(f, s, n) for f, s, n in zip(worst["feature"], worst["slice"], worst["size"])]
        positions = np.arange(len(worst))[::-1]
        ax.barh(positions, worst["cost"], color="tab:red")
        ax.set_yticks(positions, labels, fontsize=8)
        unit = "excess errors" if worst["metric_name"].iloc[0] == "accuracy" else "excess absolute error"
        ax.set_xlabel(f"cost = gap x size ({unit})")
        ax.set_title(f"Worst slices by cost (overall {worst['metric_name'].iloc[0]} {worst['overall'].iloc[0]:.3g})")
    return save_figure(fig, path)


def _slice_label(feature: str, slice_: str, size: int) -> str:
    """``region = islands  (n=80)``; an error cohort's rule, wrapped, as ``cohort: <rule>``."""
    if feature != COHORT_FEATURE:
        return f"{feature} = {slice_}  (n={size})"
    import textwrap

    return textwrap.fill(f"cohort: {slice_}  (n={size})", width=60, subsequent_indent="  ")
