"""Why the model predicts what it does: permutation importance, partial dependence, Shapley values, what-if.

The error-analysis stage says *where* the model fails; these say *what drives
it*, on the same test split: which features the primary metric depends on
(permutation importance, with its spread over repeats), how the prediction
moves with one feature on average and row by row (partial dependence with ICE
curves), which features drive the predictions overall and in the costliest
error cohort (Shapley values of tree models, with the optional extra
``reprobook[explain]``), and what one row's prediction would be were one
feature different (what-if).

Everything is seeded and single-threaded in its randomness (``n_jobs=1``),
tables come back with a deterministic row order, and plots are drawn on bare
matplotlib figures saved without software metadata: the same inputs give
byte-identical CSVs and PNGs.
"""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from reprobook.errors import ReprobookError
from reprobook.ml.estimators import feature_columns
from reprobook.ml.plots import save_figure as _save

FIGSIZE = (8.0, 5.0)
DPI = 100
SHAP_HINT = "Shapley values: not computed; enable them with pip install 'reprobook[explain]' (installs shap)"
TREE_MODELS = ("DecisionTree", "RandomForest", "ExtraTrees", "GradientBoosting", "XGB", "LGBM", "CatBoost")


# ---------------------------------------------------------------- permutation importance


def scorer_for(metric: str, task: str, n_classes: int = 2) -> str:
    """The scikit-learn scorer for the project's primary metric, multiclass-capable when needed.

    ``roc_auc`` becomes one-vs-rest for more than two classes; ``average_precision``,
    binary only, falls back to ``f1_macro``; an unknown metric to accuracy or R².
    """
    if task == "classification" and n_classes > 2:
        if metric == "roc_auc":
            return "roc_auc_ovr"
        if metric == "average_precision":
            return "f1_macro"
    from reprobook.ml.metrics import METRICS

    known = METRICS.get(metric)
    if known is None or known.task != task:
        return "accuracy" if task == "classification" else "r2"
    return known.scorer


def permutation_importances(model: Any, x: pd.DataFrame, y: Any, *, scoring: str, n_repeats: int,
                            seed: int) -> pd.DataFrame:
    """How much ``scoring`` drops when each feature's values are shuffled: mean, spread, rank.

    One row per feature (the model's input columns, categorical ones whole),
    the most important first (ties by name): ``importance_mean`` and
    ``importance_std`` over ``n_repeats`` seeded shuffles. A feature the model
    ignores scores exactly 0; a negative score means shuffling it helped (noise).
    """
    from sklearn.inspection import permutation_importance

    if n_repeats < 1:
        raise ReprobookError(f"permutation_repeats: expected at least 1, found {n_repeats}")
    result = permutation_importance(model, x, y, scoring=scoring, n_repeats=n_repeats, random_state=seed, n_jobs=1)
    frame = pd.DataFrame({
        "feature": [str(c) for c in x.columns],
        "importance_mean": result.importances_mean.astype(float),
        "importance_std": result.importances_std.astype(float),
        "scoring": scoring,
        "repeats": int(n_repeats),
    })
    frame = frame.sort_values(["importance_mean", "feature"], ascending=[False, True], kind="mergesort")
    frame = frame.reset_index(drop=True)
    frame.insert(0, "rank", np.arange(1, len(frame) + 1, dtype=int))
    return frame


def top_numeric(importances: pd.DataFrame, x: pd.DataFrame, k: int) -> list[str]:
    """The ``k`` most important numeric features that matter at all (mean importance above 0)."""
    numeric = set(feature_columns(x)[0])
    ranked = importances[importances["importance_mean"] > 0]["feature"]
    return [name for name in ranked if name in numeric][:k]


def plot_importances(importances: pd.DataFrame, path: str | Path, top_k: int = 20) -> Path:
    """Bars of the ``top_k`` most important features, the most important on top, ±1 std as error bars."""
    shown = importances.head(top_k)
    fig = Figure(figsize=FIGSIZE, dpi=DPI)
    ax = fig.subplots()
    positions = np.arange(len(shown))[::-1]
    ax.barh(positions, shown["importance_mean"], xerr=shown["importance_std"], color="tab:blue",
            error_kw={"ecolor": "black", "capsize": 3, "elinewidth": 1})
    ax.set_yticks(positions, shown["feature"].tolist(), fontsize=8)
    ax.axvline(0, color="grey", linewidth=0.8)
    scoring = shown["scoring"].iloc[0] if len(shown) else ""
    repeats = int(shown["repeats"].iloc[0]) if len(shown) else 0
    ax.set_xlabel(f"drop in {scoring} when the feature is shuffled (mean ± std over {repeats} repeats)")
    ax.set_title("Permutation importance on the test split")
    return _save(fig, path)


# ---------------------------------------------------------------- partial dependence and ICE


def feature_grid(column: pd.Series, points: int = 20) -> np.ndarray:
    """Values to vary a feature over: its distinct values if few, else evenly spaced from the 5th to 95th percentile.

    Categorical columns give their sorted distinct values; missing values never enter a grid.
    """
    values = column.dropna()
    numeric, _ = feature_columns(column.to_frame())
    if not numeric:
        return np.array(sorted(values.unique().tolist(), key=str), dtype=object)
    distinct = np.unique(values.to_numpy(dtype=float))
    if len(distinct) <= points:
        return distinct
    low, high = np.percentile(values.to_numpy(dtype=float), [5, 95])
    return np.unique(np.linspace(low, high, points))


def _output(model: Any, target_class: Any) -> tuple[int | None, str]:
    """Which output of ``partial_dependence`` to keep (None: the only one) and how to name it."""
    classes = getattr(model, "classes_", None)
    if classes is None:
        return None, "prediction"
    classes = list(classes)
    chosen = classes[-1] if target_class is None else target_class
    if chosen not in classes:
        raise ReprobookError(f"target_class: expected one of {', '.join(map(repr, classes))}, found {chosen!r}")
    kind = "probability" if hasattr(model, "predict_proba") else "decision function"  # what scikit-learn falls back to
    return (None if len(classes) == 2 else classes.index(chosen)), f"{kind} of class {chosen}"


def partial_dependence_table(model: Any, x: pd.DataFrame, features: Sequence[str], *, ice_rows: int, seed: int,
                             grid_points: int = 20, target_class: Any = None) -> pd.DataFrame:
    """Partial dependence and ICE curves of each feature, in one tidy table.

    ICE curves (one per row: the prediction as the feature alone varies) are
    drawn for ``ice_rows`` rows chosen with ``seed``; the partial dependence is
    their average, on a grid from :func:`feature_grid` over all rows. The
    numbers are those of scikit-learn's ``partial_dependence(kind="both",
    method="brute")`` on the same rows and grid, computed with one batched
    prediction per feature instead of one per grid value (ten times faster in
    the stage). Classifiers: the probability of ``target_class`` (default:
    the last class, the positive one of a binary task), or its decision
    function for a model without probabilities. Columns: feature, curve
    (``average`` or ``ice``), row (the row's index label; empty for the
    average), value, prediction; what the prediction is (``probability of
    class 1``) is in ``attrs["output"]``.
    """
    sample = x.sample(n=min(ice_rows, len(x)), random_state=seed).sort_index(kind="mergesort")
    output_index, output = _output(model, target_class)
    parts = []
    for feature in features:
        grid = feature_grid(x[feature], grid_points)
        individual = _response(model, what_if_rows(sample, feature, grid), output_index).reshape(len(sample), len(grid))
        n = len(grid)
        parts.append(pd.DataFrame({"feature": feature, "curve": "average", "row": [None] * n,
                                   "value": grid, "prediction": individual.mean(axis=0)}))
        parts.append(pd.DataFrame({"feature": feature, "curve": "ice", "row": np.repeat(sample.index.to_numpy(), n),
                                   "value": np.tile(grid, len(sample)), "prediction": individual.reshape(-1)}))
    columns = ["feature", "curve", "row", "value", "prediction"]
    table = pd.concat(parts, ignore_index=True)[columns] if parts else pd.DataFrame(columns=columns)
    table["row"] = table["row"].astype(object)  # row labels as they are; empty for the average
    table.attrs["output"] = output
    return table


def _response(model: Any, rows: pd.DataFrame, output_index: int | None) -> np.ndarray:
    """What partial dependence plots, per row: as scikit-learn's ``response_method="auto"`` chooses it."""
    if getattr(model, "classes_", None) is None:
        return np.asarray(model.predict(rows), dtype=float)
    scores = model.predict_proba(rows) if hasattr(model, "predict_proba") else model.decision_function(rows)
    scores = np.asarray(scores, dtype=float)
    if scores.ndim == 1:  # a binary decision function: the positive class's score
        return scores
    return scores[:, -1 if output_index is None else output_index]


def plot_partial_dependence(table: pd.DataFrame, path: str | Path) -> Path:
    """One panel per feature: thin grey ICE curves, the partial dependence in bold."""
    features = list(dict.fromkeys(table["feature"]))
    fig = Figure(figsize=(4.0 * max(1, len(features)), 4.0), dpi=DPI)
    axes = np.atleast_1d(fig.subplots(1, max(1, len(features)), sharey=True, squeeze=False)[0])
    if not features:
        axes[0].text(0.5, 0.5, "no numeric feature matters to the model", ha="center", va="center",
                     transform=axes[0].transAxes)
        axes[0].set_axis_off()
        return _save(fig, path)
    for ax, feature in zip(axes, features):
        rows = table[table["feature"] == feature]
        ice = rows[rows["curve"] == "ice"]
        curves = [np.column_stack([c["value"].to_numpy(float), c["prediction"].to_numpy(float)])
                  for _, c in ice.groupby("row", sort=True)]
        # one artist for every curve (fast), opaque and not antialiased (few shades: a light PNG)
        ax.add_collection(LineCollection(curves, colors="#c8c8c8", linewidths=0.8, antialiaseds=False))
        average = rows[rows["curve"] == "average"]
        ax.plot(average["value"].to_numpy(float), average["prediction"].to_numpy(float),
                color="tab:orange", linewidth=2.5, label="average (partial dependence)")
        ax.set_xlabel(feature)
    axes[0].set_ylabel(str(table.attrs.get("output", "prediction")))
    axes[0].legend(loc="best", fontsize=8)
    fig.suptitle(f"Partial dependence and ICE curves ({table['row'].nunique()} rows)")
    return _save(fig, path)


# ---------------------------------------------------------------- what-if


def what_if_rows(rows: pd.DataFrame, feature: str, values: Sequence[Any]) -> pd.DataFrame:
    """Each row repeated once per value, with only ``feature`` changed (row-major: row 1's values, then row 2's)."""
    if feature not in rows.columns:
        raise ReprobookError(f"feature: {feature!r} is not a column; expected one of {', '.join(map(str, rows.columns))}")
    values = list(values)
    repeated = rows.iloc[np.repeat(np.arange(len(rows)), len(values))].copy()
    repeated[feature] = pd.Series(values * len(rows), index=repeated.index, dtype=_value_dtype(rows[feature], values))
    return repeated


def _value_dtype(column: pd.Series, values: list[Any]) -> Any:
    """The column's own dtype when the values fit it, else float (numbers) or object."""
    try:
        pd.Series(values, dtype=column.dtype)
        return column.dtype
    except (TypeError, ValueError):
        return float if _numbers(values) else object


def _numbers(values: Sequence[Any]) -> bool:
    return all(isinstance(v, (int, float, np.number)) and not isinstance(v, (bool, np.bool_)) for v in values)


def what_if(model: Any, rows: pd.DataFrame, feature: str, values: Sequence[Any]) -> pd.DataFrame:
    """The prediction for each row as ``feature`` takes each of ``values`` (everything else as it is).

    One row per (row, value), in that order. ``prediction`` is the probability
    of the positive class (binary: the last class), of the class the model
    predicts for the row as it is (multiclass), or the predicted value
    (regression); ``predicted_label`` is the label it would predict
    (classification). ``current_value`` and ``current_prediction`` are the
    row as it is, to mark where it stands.
    """
    values = list(values)
    varied = what_if_rows(rows, feature, values)
    classes = getattr(model, "classes_", None)
    n = len(values)
    frame = pd.DataFrame({
        "row": np.repeat(np.asarray(rows.index), n),
        "feature": feature,
        "value": np.asarray(values * len(rows), dtype=float if _numbers(values) else object),
        "current_value": np.repeat(rows[feature].to_numpy(), n),
    })
    if classes is None or not hasattr(model, "predict_proba"):
        frame["output"] = "prediction" if classes is None else "predicted class"
        frame["prediction"] = model.predict(varied)
        frame["current_prediction"] = np.repeat(model.predict(rows), n)
        if classes is not None:
            frame["predicted_label"] = frame["prediction"]
        return frame
    classes = list(classes)
    current = model.predict_proba(rows)
    if len(classes) == 2:
        column = np.ones(len(rows), dtype=int)
    else:
        column = np.argmax(current, axis=1)
    probabilities = model.predict_proba(varied)
    per_value_column = np.repeat(column, n)
    frame["output"] = [f"probability of class {classes[c]}" for c in per_value_column]
    frame["prediction"] = probabilities[np.arange(len(varied)), per_value_column].astype(float)
    frame["current_prediction"] = np.repeat(current[np.arange(len(rows)), column], n).astype(float)
    frame["predicted_label"] = np.asarray(classes, dtype=object)[np.argmax(probabilities, axis=1)]
    return frame


def plot_what_if(frame: pd.DataFrame, path: str | Path) -> Path:
    """One line per row: the prediction against the feature's value, a dot where the row stands now."""
    fig = Figure(figsize=FIGSIZE, dpi=DPI)
    ax = fig.subplots()
    feature = str(frame["feature"].iloc[0]) if len(frame) else ""
    values = list(dict.fromkeys(frame["value"]))
    numeric = _numbers(values)
    position = (lambda v: float(v)) if numeric else {v: i for i, v in enumerate(values)}.get
    outputs = list(dict.fromkeys(frame["output"])) if len(frame) else []
    for i, (row, curve) in enumerate(frame.groupby("row", sort=False)):
        colour = f"C{i % 10}"
        label = f"row {row}" if len(outputs) == 1 else f"row {row}: {curve['output'].iloc[0]}"
        # predictions are numbers, or labels for a classifier without probabilities (a categorical axis)
        ax.plot([position(v) for v in curve["value"]], curve["prediction"].tolist(),
                marker="" if numeric else "o", color=colour, label=label)
        current = curve["current_value"].iloc[0]
        if not pd.isna(current) and (numeric or current in values):
            ax.plot([position(current)], [curve["current_prediction"].iloc[0]], "o", color=colour,
                    markersize=8, markeredgecolor="black")
    if not numeric:
        ax.set_xticks(range(len(values)), [str(v) for v in values], rotation=30, ha="right")
    ax.set_ylabel(outputs[0] if len(outputs) == 1 else "probability of the row's predicted class")
    ax.set_xlabel(feature)
    ax.set_title(f"What if {feature} were different? (dot: the row as it is)")
    if len(frame):
        ax.legend(loc="best", fontsize=8)
    return _save(fig, path)


# ---------------------------------------------------------------- Shapley values (optional)


def shap_available() -> bool:
    """Whether the optional ``shap`` package (``pip install 'reprobook[explain]'``) is installed."""
    return importlib.util.find_spec("shap") is not None


def shap_unavailable(model: Any) -> str | None:
    """Why Shapley values cannot be computed here (one line to print), or None when they can."""
    if not shap_available():
        return SHAP_HINT
    if not is_tree_model(model):
        name = type(_split(model)[1]).__name__
        return f"Shapley values: computed for tree models only; {name} is not one (permutation importance above covers it)"
    return None


def _split(model: Any) -> tuple[Any, Any]:
    """(preprocessing or None, final estimator) of a pipeline or a bare estimator."""
    steps = getattr(model, "steps", None)
    if steps:
        return (model[:-1] if len(steps) > 1 else None), steps[-1][1]
    return None, model


def is_tree_model(model: Any) -> bool:
    """Whether the model's final estimator is a tree or tree ensemble that shap's TreeExplainer reads."""
    name = type(_split(model)[1]).__name__
    return any(kind in name for kind in TREE_MODELS)


def _raw_feature(output_names: Sequence[str], inputs: Sequence[str]) -> list[str]:
    """The input column each transformed column comes from (``categorical__region_islands`` -> ``region``)."""
    by_length = sorted(inputs, key=len, reverse=True)
    sources = []
    for name in output_names:
        bare = name.split("__", 1)[1] if "__" in name else name
        sources.append(next((c for c in by_length if bare == c or bare.startswith(f"{c}_")), bare))
    return sources


def shap_importances(model: Any, x: pd.DataFrame, cohort: np.ndarray | None = None) -> pd.DataFrame | None:
    """Mean |SHAP value| per input feature, over all rows and over the ``cohort`` rows; None if not a tree model
    (or one shap cannot read: a warning says why).

    Needs ``shap``. The values of one-hot columns are summed back into their
    feature (Shapley values add up), so the table speaks of ``region``, not of
    ``region_islands``. For several outputs (classes) the mean runs over them too.
    """
    if not is_tree_model(model):
        return None
    import shap

    preprocess, estimator = _split(model)
    matrix = preprocess.transform(x) if preprocess is not None else x
    matrix = matrix.toarray() if hasattr(matrix, "toarray") else np.asarray(matrix, dtype=float)
    names = list(preprocess.get_feature_names_out()) if preprocess is not None else [str(c) for c in x.columns]
    try:
        values = shap.TreeExplainer(estimator).shap_values(matrix)
    except Exception as exc:  # shap's support varies by model and version: an optional extra must not fail the stage
        warnings.warn(f"shap could not explain {type(estimator).__name__}: {exc}", stacklevel=2)
        return None
    values = np.stack(values, axis=-1) if isinstance(values, list) else np.asarray(values)
    if values.ndim == 2:
        values = values[:, :, None]
    inputs = [str(c) for c in x.columns]
    sources = np.asarray(_raw_feature(names, inputs))
    per_feature = np.stack([values[:, sources == name, :].sum(axis=1) for name in inputs], axis=1)
    magnitude = np.abs(per_feature).mean(axis=2)  # rows x features
    frame = pd.DataFrame({
        "feature": inputs,
        "mean_abs_shap": magnitude.mean(axis=0),
        "mean_abs_shap_cohort": magnitude[cohort].mean(axis=0) if cohort is not None and cohort.any()
        else np.full(len(inputs), np.nan),
    })
    frame = frame.sort_values(["mean_abs_shap", "feature"], ascending=[False, True], kind="mergesort")
    frame = frame.reset_index(drop=True)
    frame.insert(0, "rank", np.arange(1, len(frame) + 1, dtype=int))
    return frame


def plot_shap(table: pd.DataFrame, path: str | Path, top_k: int = 15) -> Path:
    """Mean |SHAP| per feature over all rows beside the same over the worst cohort's rows."""
    shown = table.head(top_k)
    fig = Figure(figsize=FIGSIZE, dpi=DPI)
    ax = fig.subplots()
    positions = np.arange(len(shown))[::-1]
    ax.barh(positions + 0.2, shown["mean_abs_shap"], height=0.4, color="tab:blue", label="all test rows")
    if shown["mean_abs_shap_cohort"].notna().any():
        ax.barh(positions - 0.2, shown["mean_abs_shap_cohort"], height=0.4, color="tab:red",
                label="the costliest error cohort")
    ax.set_yticks(positions, shown["feature"].tolist(), fontsize=8)
    ax.set_xlabel("mean |SHAP value| (model output units)")
    ax.set_title("What drives the predictions: overall and in the costliest cohort")
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


# ---------------------------------------------------------------- helpers


def summary(importances: pd.DataFrame) -> dict[str, Any]:
    """Headline numbers for the stage's metrics: the most important feature and its importance."""
    if importances.empty:
        return {"top_feature": None, "top_feature_importance": 0.0}
    top = importances.iloc[0]
    return {"top_feature": str(top["feature"]), "top_feature_importance": float(top["importance_mean"])}
