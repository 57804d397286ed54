"""Target leaks: features (and row orders) that give the target away, each named with the fix.

A model trained on a column that *is* the answer looks perfect and is useless
where that column is not available. :func:`find_leaks` looks for the ways a
table gives its target away:

``copy``
    a feature equal to the target (numeric up to float rounding, or value by value);
``many_to_one``
    a feature each of whose repeated values maps to a single target value
    (``decision = "accepted"/"declined"`` next to ``approved``);
``monotone``
    a numeric feature that is a monotone function of a numeric target
    (regression): ``log(wage)``, ``2 * wage + 3`` (:data:`MONOTONE_RANK_CORRELATION`);
``single_feature``
    one feature alone reaching a near-perfect cross-validated score
    (:data:`NEAR_PERFECT`) with a shallow tree (:class:`_Scorer`);
``row_order``
    the label follows the file's row order or an id: the same check on the
    row position (column ``(row order)``) and on each ``id`` column;
``time_order``
    under a time split, test rows earlier than the last training row
    (:func:`split_order_leak`).

Every finding is ``{"column", "kind", "why", "fix"}``; ``why`` reads after the
quoted column name (``'{column}' {why}``) and ``fix`` says what to do: set the
column's role to ``ignored`` in ``params.yaml`` (``data.columns``), or, when it
is fine, say why in ``data.acknowledged_leaks`` (:func:`blocking` then lets it
through). A column is reported once, under the first kind found.

Deterministic and fast: at most :data:`SAMPLE_ROWS` rows (seeded), a depth
:data:`TREE_DEPTH` tree (:data:`REGRESSION_DEPTH` for a numeric target) per
candidate column on its value order, 3 seeded folds: under a second on 50,000
rows x 30 columns on one core (scikit-learn already imported).
"""

from __future__ import annotations

import warnings
from typing import Any, Mapping

import numpy as np
import pandas as pd

FEATURE_ROLES = ("numeric", "categorical", "boolean", "datetime")
"""Roles that are model features (:data:`reprobook.ml.roles.FEATURE_ROLES`); ``text`` joins them on request."""
SAMPLE_ROWS = 20_000
"""Rows read at most (a seeded sample, kept in file order)."""
MIN_ROWS = 10
"""Fewer rows with both the column and the target present say nothing."""
MIN_SHARED_ROWS = 0.9
"""A feature value must repeat for this share of rows before "it determines the target" means anything:
an id column determines every target too, one row per value (as :func:`reprobook.ml.prep.target_leaks`)."""
MONOTONE_RANK_CORRELATION = 0.999
"""|Spearman rank correlation| with a numeric target at or above which a feature is a (near-)deterministic
monotone function of it: log, affine and other monotone transforms reach 1.0 up to rounding and ties; a
target plus noise reaches 0.999 only with noise under ~4% of the target's spread (R² ~0.998), a near-copy.
A strong honest regressor (R² 0.9) has rank correlation ~0.95."""
NEAR_PERFECT = 0.995
"""A single column's cross-validated score at or above which it gives the target away: ROC AUC (binary),
balanced accuracy (multiclass), R² (regression). Honest features, even the strongest, leave room for the
noise any real label has; a label drifting with time or an id leaves far more."""
TREE_DEPTH = 6
"""Depth of the single-column tree (classification): up to 64 intervals of the column's values, enough
to read a label a column determines, non-monotonically too."""
REGRESSION_DEPTH = 8
"""Depth for a numeric target: a step function of 64 steps fits even a smooth deterministic function
(``t = x**2``) only to R² ~0.996, at the threshold; 256 steps fit it to ~0.999. Scored out of fold, a
deeper tree does not lift an honest feature (it fits noise the held-out fold does not share)."""
MIN_LEAF = 5
FOLDS = 3
MAX_CLASSES = 200
"""A classification target with more classes than this is not scored by single-column trees (an id-like
or continuous label: a tree of 64 leaves cannot tell that many classes apart)."""
ROW_ORDER = "(row order)"
"""The column name a finding about the file's row order carries (also its key in ``data.acknowledged_leaks``)."""


def find_leaks(frame: pd.DataFrame, target: str, roles: Mapping[str, str], *, task: str, seed: int,
               text: bool = False) -> list[dict[str, str]]:
    """Every way ``frame`` gives ``target`` away: a list of ``{"column", "kind", "why", "fix"}``, in column order.

    ``roles`` give each column's role (a column not listed is numeric); the
    features are the numeric, categorical, boolean and datetime columns (and
    text with ``text=True``); ``id`` columns are checked for the row order
    only. ``task`` is ``classification`` or ``regression``. The file order is
    the frame's integer index when it has one (a split keeps the raw file's row
    numbers), else its row order. Rows whose target is missing are left out.
    """
    if target not in frame.columns:
        return []
    sample, position = _sample(frame, seed)
    keep = sample[target].notna().to_numpy()
    sample, position = sample[keep], position[keep]
    if len(sample) < MIN_ROWS:
        return []
    y = sample[target]
    wanted = FEATURE_ROLES + (("text",) if text else ())
    features = [c for c in sample.columns if c != target and roles.get(str(c), "numeric") in wanted]
    ids = [c for c in sample.columns if c != target and roles.get(str(c), "numeric") == "id"]
    regression = task == "regression"
    found: dict[str, dict[str, str]] = {}

    for column in features:
        finding = _determined(sample[column], y, str(column), target)
        if finding is None and regression:
            finding = _monotone(sample[column], y, str(column), target)
        if finding is not None:
            found[str(column)] = finding

    labels = _labels(y, regression)
    if labels is not None and (regression or labels.max() < MAX_CLASSES):
        scorer = _Scorer(labels, regression, seed)
        for column in features:
            if str(column) in found:
                continue
            role = roles.get(str(column), "numeric")
            score = scorer.score(_order_codes(sample[column], role), unordered=role in ("categorical", "text"))
            if score is not None and score >= NEAR_PERFECT:
                found[str(column)] = _finding(
                    str(column), "single_feature",
                    f"alone predicts '{target}' (a depth-{scorer.depth} tree on it scores {scorer.metric} {score:.3f} "
                    f"in {FOLDS}-fold cross-validation)")
        sorted_by = "label" if not regression else f"the target '{target}'"
        orders = [(ROW_ORDER, "the row order", "the row position", _order_codes(pd.Series(position), "numeric"))]
        orders += [(str(c), f"'{c}'", "it", _order_codes(sample[c], "id")) for c in ids]
        for column, follows, alone, codes in orders:
            if column in found:
                continue
            # a file sorted by a numeric target: the order is a monotone function of it, however skewed the
            # target (a step function of the order fits a long tail badly, a rank correlation does not care)
            rho = _rank_correlation(np.where(codes >= 0, codes, np.nan), labels) if regression else None
            if rho is not None and abs(rho) >= MONOTONE_RANK_CORRELATION:
                found[column] = _row_order(column, f"the target follows {follows} (rank correlation {rho:.4f}): "
                                                   f"the file is sorted by {sorted_by}")
                continue
            score = scorer.score(codes)
            if score is not None and score >= NEAR_PERFECT:
                found[column] = _row_order(
                    column, f"the label follows {follows} (a tree on {alone} alone scores {scorer.metric} "
                    f"{score:.3f}): the file is sorted by {sorted_by}")

    order = [str(c) for c in features] + [ROW_ORDER] + [str(c) for c in ids]
    return [found[c] for c in order if c in found]


def split_order_leak(train: pd.DataFrame | pd.Series, test: pd.DataFrame | pd.Series,
                     column: str) -> dict[str, str] | None:
    """Under a time split on ``column``: test rows earlier than the last training row, as a ``time_order``
    finding, or None. ``train``/``test`` are the split frames (or their ``column`` already); missing times
    are not counted; a tie with the last training time is not earlier."""
    before = train[column] if isinstance(train, pd.DataFrame) else train
    after = test[column] if isinstance(test, pd.DataFrame) else test
    before, after = _as_time(before), _as_time(after)
    before, after = before.dropna(), after.dropna()
    if before.empty or after.empty:
        return None
    last = before.max()
    earlier = int((after < last).sum())
    if not earlier:
        return None
    return {
        "column": str(column),
        "kind": "time_order",
        "why": (f"has {earlier} of {len(after)} test rows earlier than the last training row ({last}): "
                "a time split must test on rows later than every training row"),
        "fix": (f"split on a column that orders the rows in time (data.split.column) and check '{column}' for "
                f"wrong or backfilled times; acknowledge with data.acknowledged_leaks: {{{column}: \"why it is "
                "fine\"} if the overlap is intended"),
    }


def blocking(findings: list[dict[str, Any]],
             acknowledged: Mapping[str, str] | None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The findings that still block promotion, and those ``data.acknowledged_leaks`` names by column
    (copies, each with ``"acknowledged"``: the reason given)."""
    reasons = {str(k).strip(): str(v) for k, v in (acknowledged or {}).items()}
    still, accepted = [], []
    for finding in findings:
        column = str(finding.get("column", "")).strip()
        if column in reasons:
            accepted.append({**finding, "acknowledged": reasons[column]})
        else:
            still.append(dict(finding))
    return still, accepted


DOMINANT_SHARE = 0.9
"""Share of the positive permutation importance one feature must carry to dominate."""
DOMINANT_SCORE = 0.99
"""A score (of a metric bounded by 1, higher is better) at or above which a dominant feature is suspicious."""


def dominant_feature(importances: Mapping[str, float], score: float, metric_name: str,
                     higher_is_better: bool) -> str | None:
    """Why a near-perfect score looks read off one column, or None.

    Suspicious when the score is near-perfect (>= :data:`DOMINANT_SCORE`, for a
    higher-is-better metric bounded by 1: roc_auc, accuracy, f1, r2 ...) and one
    feature carries at least :data:`DOMINANT_SHARE` of the positive permutation
    importance. Error metrics (rmse, mae, log_loss) are skipped: a "tiny" error
    means nothing without the target's scale.
    """
    if not higher_is_better or not np.isfinite(score) or score < DOMINANT_SCORE or score > 1 + 1e-9:
        return None
    if len(importances) < 2:
        return None
    positive = {str(k): float(v) for k, v in importances.items() if np.isfinite(v) and v > 0}
    total = sum(positive.values())
    if total <= 0:
        return None
    column, top = max(sorted(positive.items()), key=lambda item: item[1])
    share = top / total
    if share < DOMINANT_SHARE:
        return None
    return (f"{metric_name} = {score:.4g} comes almost all from '{column}' ({share:.0%} of the permutation "
            f"importance): check that '{column}' is known when predicting and is not the target in disguise; "
            f"set its role to ignored in params.yaml (data.columns: {{{column}: ignored}}) or say why it is fine "
            f"(data.acknowledged_leaks: {{{column}: \"why it is fine\"}})")


# --- the checks -------------------------------------------------------------------------------------------


def _finding(column: str, kind: str, why: str) -> dict[str, str]:
    return {"column": column, "kind": kind, "why": why,
            "fix": (f"if '{column}' is not known when predicting, set its role to ignored in params.yaml "
                    f"(data.columns: {{{column}: ignored}}); if it is, and is this strong honestly, say why in "
                    f"data.acknowledged_leaks: {{{column}: \"why it is fine\"}}")}


def _row_order(column: str, why: str) -> dict[str, str]:
    return {"column": column, "kind": "row_order", "why": why,
            "fix": ("if ids were assigned after labelling, the model must not see them (role id keeps it out); "
                    "shuffle/re-export the file; acknowledge with data.acknowledged_leaks: "
                    f"{{'{column}': \"why it is fine\"}} if the order is meaningful")}


def _determined(x: pd.Series, y: pd.Series, column: str, target: str) -> dict[str, str] | None:
    """A copy of the target, or a many-to-one mapping onto it (the logic of ``prep.target_leaks``)."""
    present = (x.notna() & y.notna()).to_numpy()
    if present.sum() < MIN_ROWS:
        return None
    xs, ys = x[present], y[present]
    if _same_values(xs, ys):
        return _finding(column, "copy", f"equals the target '{target}'")
    x_codes, x_values = _factorize(xs)
    y_codes, y_values = _factorize(ys)
    if len(x_values) < 2 or len(y_values) < 2:
        return None
    counts = np.bincount(x_codes, minlength=len(x_values))
    repeated = counts > 1
    if counts[repeated].sum() < MIN_SHARED_ROWS * len(xs):
        return None
    pairs = np.unique(x_codes.astype(np.int64) * len(y_values) + y_codes)
    labels_per_value = np.bincount(pairs // len(y_values), minlength=len(x_values))
    if (labels_per_value[repeated] == 1).all():
        return _finding(column, "many_to_one",
                        f"each of its {len(x_values)} values maps to a single value of '{target}'")
    return None


def _same_values(x: pd.Series, y: pd.Series) -> bool:
    numeric = (pd.api.types.is_numeric_dtype(x) and pd.api.types.is_numeric_dtype(y)
               and not pd.api.types.is_bool_dtype(x))
    if numeric:
        return bool(np.allclose(x.to_numpy(dtype=float), y.to_numpy(dtype=float), rtol=1e-9, atol=1e-12))
    if x.nunique() != y.nunique():  # cheap: a copy has as many distinct values as the target
        return False
    return bool((x.to_numpy(dtype=object).astype(str) == y.to_numpy(dtype=object).astype(str)).all())


def _monotone(x: pd.Series, y: pd.Series, column: str, target: str) -> dict[str, str] | None:
    if not (_plain_numeric(x) and _plain_numeric(y)):
        return None
    rho = _rank_correlation(x.to_numpy(dtype=float), y.to_numpy(dtype=float))
    if rho is None or abs(rho) < MONOTONE_RANK_CORRELATION:
        return None
    return _finding(column, "monotone", f"is a monotone function of the target '{target}' (rank correlation {rho:.4f})")


def _rank_correlation(x: np.ndarray, y: np.ndarray) -> float | None:
    """Spearman's rank correlation on the rows where both are finite; None with too few rows or a constant."""
    present = np.isfinite(x) & np.isfinite(y)
    if present.sum() < MIN_ROWS:
        return None
    rx = pd.Series(x[present]).rank().to_numpy()
    ry = pd.Series(y[present]).rank().to_numpy()
    if rx.std() == 0 or ry.std() == 0:
        return None
    return float(np.corrcoef(rx, ry)[0, 1])


def _plain_numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


class _Scorer:
    """Cross-validated score of a shallow tree on one column (its value order, missing lowest).

    The column is first cut into at most :data:`BINS` bins of equal row counts
    (a column with fewer distinct values keeps each value as its own bin), and
    each fold's training rows are collapsed to one weighted row per bin and
    label (per bin, with the mean target, for regression): the tree a
    :class:`~sklearn.tree.DecisionTreeClassifier` grows on the rows themselves,
    at a fraction of the cost. Scores are computed with numpy (ROC AUC from
    the class counts per predicted score, balanced accuracy, R²), as
    :mod:`sklearn.metrics` defines them.
    """

    def __init__(self, labels: np.ndarray, regression: bool, seed: int):
        from sklearn.model_selection import KFold, StratifiedKFold

        self.labels, self.regression, self.seed = labels, regression, seed
        self.n_classes = 0 if regression else int(labels.max()) + 1
        self.depth = REGRESSION_DEPTH if regression else TREE_DEPTH
        self.metric = "r2" if regression else ("roc_auc" if self.n_classes == 2 else "balanced_accuracy")
        fake = np.zeros((len(labels), 1))
        if not regression and np.bincount(labels).min() >= FOLDS:
            folds = StratifiedKFold(FOLDS, shuffle=True, random_state=seed).split(fake, labels)
        else:
            folds = KFold(FOLDS, shuffle=True, random_state=seed).split(fake)
        self.folds = [(train, test) for train, test in folds]

    def score(self, codes: np.ndarray, *, unordered: bool = False) -> float | None:
        """The mean fold score, or None when the column has a single value (or no fold can be scored).

        ``unordered`` (categories, text): the order of the values is not theirs
        but their training fold's mean target (binary and regression), so a
        tree of 64 leaves reads a category-determined target however many
        categories there are; the held-out fold is scored as usual.
        """
        bins = _bins(codes)
        if bins.max() < 1:
            return None
        n_bins = int(bins.max()) + 1
        scores = []
        for train, test in self.folds:
            y_train, y_test = self.labels[train], self.labels[test]
            if np.ptp(y_test) == 0 or np.ptp(y_train) == 0:
                continue
            per_bin = self._fit(bins[train], y_train, n_bins, len(train), unordered and self.n_classes <= 2)
            predicted = per_bin[bins[test]]
            if self.regression:
                scores.append(_r2(y_test, predicted))
            elif self.metric == "roc_auc":
                scores.append(_roc_auc(y_test, predicted))
            else:
                scores.append(_balanced_accuracy(y_test, predicted))
        return float(np.mean(scores)) if scores else None

    def _fit(self, bins: np.ndarray, y: np.ndarray, n_bins: int, n_rows: int, by_mean: bool) -> np.ndarray:
        """The tree's prediction for every bin (P(class 1) for binary, the class otherwise, the value for
        regression), grown on one weighted row per bin (and label); ``by_mean``: the bins placed in the order
        of their mean target in these rows (a bin not seen here in the middle, at the overall mean)."""
        from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

        place = np.arange(n_bins)
        if by_mean:
            count = np.bincount(bins, minlength=n_bins)
            total = np.bincount(bins, weights=y.astype(np.float64), minlength=n_bins)
            mean = np.where(count > 0, total / np.maximum(count, 1), y.mean())
            place = np.empty(n_bins, dtype=np.int64)
            place[np.lexsort((np.arange(n_bins), mean))] = np.arange(n_bins)
        grid = place.astype(np.float32).reshape(-1, 1)  # the tree's own dtype: no input checks needed
        leaf = {"max_depth": self.depth, "min_weight_fraction_leaf": min(MIN_LEAF / n_rows, 0.5), "random_state": self.seed}
        if self.regression:
            weight = np.bincount(bins, minlength=n_bins).astype(np.float64)
            total = np.bincount(bins, weights=y, minlength=n_bins)
            seen = weight > 0
            tree = DecisionTreeRegressor(**leaf)
            tree.fit(grid[seen], total[seen] / weight[seen], sample_weight=weight[seen], check_input=False)
            return tree.predict(grid, check_input=False)
        cells = np.bincount(bins * self.n_classes + y, minlength=n_bins * self.n_classes)
        seen = np.flatnonzero(cells)
        tree = DecisionTreeClassifier(**leaf)
        tree.fit(np.ascontiguousarray(grid[seen // self.n_classes]), seen % self.n_classes,
                 sample_weight=cells[seen].astype(np.float64), check_input=False)
        if self.metric == "roc_auc":
            classes = list(tree.classes_)
            return (tree.predict_proba(grid, check_input=False)[:, classes.index(1)] if 1 in classes
                    else np.zeros(n_bins))
        return tree.predict(grid, check_input=False)


BINS = 1024
"""Bins a column's values are cut into for the single-column tree (a depth-6 tree has 64 leaves)."""


def _bins(codes: np.ndarray) -> np.ndarray:
    """Bin numbers 0..b-1 in the order of ``codes`` (value ranks, -1 missing): each distinct value its own
    bin when there are at most :data:`BINS`, else bins of about equal row counts (missing always its own)."""
    uniques, inverse, counts = np.unique(codes, return_inverse=True, return_counts=True)
    if len(uniques) <= BINS:
        return inverse.astype(np.int64)
    missing = uniques[0] < 0
    before = np.cumsum(counts) - counts
    present = len(codes) - (counts[0] if missing else 0)
    start = counts[0] if missing else 0
    per_value = np.floor((before - start) / present * (BINS - 1)).astype(np.int64) + (1 if missing else 0)
    if missing:
        per_value[0] = 0
    _, per_value = np.unique(per_value, return_inverse=True)
    return per_value[inverse].astype(np.int64)


def _roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC of ``score`` for class 1 (the Mann-Whitney statistic, ties counted half), from the counts of
    each class per distinct score (a tree gives at most one score per leaf)."""
    values, group = np.unique(score, return_inverse=True)
    positive = np.bincount(group, weights=(y == 1).astype(np.float64), minlength=len(values))
    negative = np.bincount(group, minlength=len(values)) - positive
    n_pos, n_neg = positive.sum(), negative.sum()
    below = np.cumsum(negative) - negative
    return float((positive * below + 0.5 * positive * negative).sum() / (n_pos * n_neg))


def _balanced_accuracy(y: np.ndarray, predicted: np.ndarray) -> float:
    """The mean recall over the classes present in ``y``."""
    classes = np.unique(y)
    return float(np.mean([(predicted[y == c] == c).mean() for c in classes]))


def _r2(y: np.ndarray, predicted: np.ndarray) -> float:
    total = float(((y - y.mean()) ** 2).sum())
    return 1.0 - float(((y - predicted) ** 2).sum()) / total if total > 0 else 0.0


def _labels(y: pd.Series, regression: bool) -> np.ndarray | None:
    """The target as the tree reads it (floats for regression, class codes 0..k-1), or None if constant."""
    if regression:
        if not _plain_numeric(y):
            return None
        values = y.to_numpy(dtype=float)
        if not np.isfinite(values).all() or values.std() == 0:
            return None
        return values
    codes, uniques = _factorize(y)
    return codes if len(uniques) >= 2 else None


def _order_codes(series: pd.Series, role: str) -> np.ndarray:
    """The column as the ranks of its values (a tree reads only their order): numbers and times in their
    order, categories, booleans and text in sorted order; missing (and non-finite) values are -1."""
    timelike = pd.api.types.is_numeric_dtype(series) or pd.api.types.is_datetime64_any_dtype(series)
    if role == "datetime" and not timelike:
        parsed = _parse_times(series)
        if parsed is not None:
            series = parsed
    if _plain_numeric(series):
        values = series.to_numpy(dtype=float)
        values = np.where(np.isfinite(values), values, np.nan)
        series = pd.Series(values)
    codes, _ = _factorize(series, sort=True, keep_missing=True)
    return codes


def _factorize(series: pd.Series, *, sort: bool = False, keep_missing: bool = False) -> tuple[np.ndarray, Any]:
    """Integer codes of the values (missing -1 with ``keep_missing``), by value, or by text when values of
    mixed types do not sort."""
    try:
        codes, uniques = pd.factorize(series, sort=sort)
    except TypeError:
        text = series.astype(object).where(series.notna(), None)
        text = text.map(lambda v: v if v is None else str(v))
        codes, uniques = pd.factorize(text, sort=sort)
    if not keep_missing and (codes < 0).any():
        raise ValueError("missing values must be removed before factorizing")
    return np.asarray(codes), uniques


def _parse_times(series: pd.Series) -> pd.Series | None:
    present = series.notna()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parsed = pd.to_datetime(series, errors="coerce")
    if present.sum() and parsed[present].notna().mean() < 0.95:
        return None
    return parsed


def _as_time(series: pd.Series) -> pd.Series:
    if (pd.api.types.is_numeric_dtype(series) or pd.api.types.is_datetime64_any_dtype(series)) \
            and not pd.api.types.is_bool_dtype(series):
        return series
    parsed = _parse_times(series)
    return parsed if parsed is not None else series.astype(str).where(series.notna())


def _sample(frame: pd.DataFrame, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """At most :data:`SAMPLE_ROWS` rows, seeded, kept in the frame's row order, and each one's place in the
    file: the frame's integer index when it has a unique one (a split keeps the raw file's row numbers),
    else its position in the frame."""
    index = frame.index
    if pd.api.types.is_integer_dtype(index) and index.is_unique:
        places = index.to_numpy(dtype=np.int64)
    else:
        places = np.arange(len(frame), dtype=np.int64)
    if len(frame) <= SAMPLE_ROWS:
        return frame, places
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(frame), SAMPLE_ROWS, replace=False))
    return frame.iloc[rows], places[rows]
