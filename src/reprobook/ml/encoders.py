"""Encoders by column role: what turns a raw table into the model's design matrix, at a bounded width.

The design matrix is dense (every scikit-learn estimator takes it, and
HistGradientBoosting takes nothing else), so its width is what decides memory:
one dense one-hot column per distinct value made a 50,000-row table with a
timestamp string 40,000 columns wide (18.5 GB). Here every role has an encoder
whose width does not grow with the rows:

- ``numeric``: median imputation and scaling, one column each;
- ``categorical`` / ``boolean`` with at most ``model.onehot_max_levels``
  levels: one-hot, levels under 1% of rows grouped as "infrequent", unknown
  levels at serving mapped there; at most that many columns each;
- ``categorical`` with more levels: scikit-learn's ``TargetEncoder``
  (cross-fitted, seeded): one column (binary, regression) or one per class;
- ``datetime``: :class:`DatetimeFeatures`, calendar parts and the elapsed
  time: at most :data:`DATETIME_PARTS` columns each, from ISO strings, other
  date strings, datetimes or epoch seconds/milliseconds;
- ``text``: left out unless ``model.text_encoder: tfidf`` (:class:`TextVectors`,
  TF-IDF reduced to :data:`TEXT_COMPONENTS` columns).

The transformers of this module are reprobook's own classes, trusted by the
skops loader (:func:`reprobook.ml.persistence.is_trusted_by_default`): they
hold only data (strings, lists, dicts) and scikit-learn objects. Measured
choices are in docs/performance.md ("Encoders").
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from reprobook.errors import ReprobookError
from reprobook.ml.design import DATETIME_PARTS, TEXT_COMPONENTS, encoder, width

INFREQUENT_SHARE = 0.01
MISSING = "missing"


def _frame(x: Any) -> pd.DataFrame:
    return x if isinstance(x, pd.DataFrame) else pd.DataFrame(x)


# ---------------------------------------------------------------- datetimes


def epoch_unit(values: pd.Series) -> str:
    """``s`` or ``ms``: epoch numbers in milliseconds are a thousand times larger than any plausible seconds."""
    present = pd.to_numeric(values, errors="coerce").dropna()
    return "ms" if len(present) and present.abs().median() > 1e11 else "s"


def string_format(values: pd.Series) -> str:
    """``ISO8601`` when the values parse so (pandas' fast path), else ``mixed`` (any format, value by value)."""
    sample = values.dropna().astype(str).head(2000)
    try:
        parsed = pd.to_datetime(sample, format="ISO8601", errors="coerce", utc=True)
        if len(sample) == 0 or parsed.notna().mean() >= 0.95:
            return "ISO8601"
    except (ValueError, TypeError, OverflowError):
        pass
    return "mixed"


def parse_datetimes(values: pd.Series, how: str) -> pd.Series:
    """Values as UTC timestamps (missing where they do not parse); ``how`` from :func:`datetime_kind`."""
    if how in ("s", "ms"):
        return pd.to_datetime(pd.to_numeric(values, errors="coerce"), unit=how, utc=True, errors="coerce")
    if how == "datetime":
        parsed = pd.to_datetime(values, errors="coerce")
        return parsed.dt.tz_localize("UTC") if parsed.dt.tz is None else parsed.dt.tz_convert("UTC")
    return pd.to_datetime(values.astype("string"), format=how, errors="coerce", utc=True)


def datetime_kind(values: pd.Series) -> str:
    """How a datetime column is stored: ``datetime``, epoch ``s``/``ms``, or a string format."""
    if pd.api.types.is_datetime64_any_dtype(values):
        return "datetime"
    if pd.api.types.is_numeric_dtype(values):
        return epoch_unit(values)
    return string_format(values)


def calendar(parsed: pd.Series) -> dict[str, np.ndarray]:
    """Each part of :data:`DATETIME_PARTS` as floats (NaN where the time is missing)."""
    elapsed = (parsed - pd.Timestamp("1970-01-01", tz="UTC")).dt.total_seconds() / 86_400
    return {
        "elapsed_days": elapsed.to_numpy(dtype="float64", na_value=np.nan),
        "year": parsed.dt.year.to_numpy(dtype="float64", na_value=np.nan),
        "month": parsed.dt.month.to_numpy(dtype="float64", na_value=np.nan),
        "day": parsed.dt.day.to_numpy(dtype="float64", na_value=np.nan),
        "weekday": parsed.dt.weekday.to_numpy(dtype="float64", na_value=np.nan),
        "hour": parsed.dt.hour.to_numpy(dtype="float64", na_value=np.nan),
    }


class DatetimeFeatures(TransformerMixin, BaseEstimator):
    """Calendar parts and elapsed days of datetime columns, the parts that vary in training only.

    How each column is parsed (a string format, epoch unit, or a datetime
    dtype) is decided at fit and kept, so serving parses the raw values the
    same way; values that do not parse become missing, never an error.
    """

    def fit(self, x: Any, y: Any = None) -> "DatetimeFeatures":
        frame = _frame(x)
        self.columns_ = [str(c) for c in frame.columns]
        self.kinds_ = {}
        self.parts_ = {}
        for name in frame.columns:
            kind = datetime_kind(frame[name])
            parts = calendar(parse_datetimes(frame[name], kind))
            varying = [p for p in DATETIME_PARTS if p == "elapsed_days" or np.nanstd(parts[p]) > 0]
            self.kinds_[str(name)], self.parts_[str(name)] = kind, varying
        self.n_features_in_ = len(self.columns_)
        return self

    def transform(self, x: Any) -> np.ndarray:
        frame = _frame(x)
        blocks = []
        for name in self.columns_:
            parts = calendar(parse_datetimes(frame[name].reset_index(drop=True), self.kinds_[name]))
            blocks += [parts[p] for p in self.parts_[name]]
        return np.column_stack(blocks) if blocks else np.empty((len(frame), 0))

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        return np.array([f"{name}_{part}" for name in self.columns_ for part in self.parts_[name]], dtype=object)


# ---------------------------------------------------------------- categories and text


class CategoryText(TransformerMixin, BaseEstimator):
    """Category values as strings, missing ones as ``"missing"``: one type per column, whatever was read.

    A categorical column may hold numbers (a declared ``zip: categorical``),
    booleans or mixed types from a CSV; scikit-learn's encoders refuse mixed
    types and ``SimpleImputer`` refuses a string fill on numbers.
    """

    def fit(self, x: Any, y: Any = None) -> "CategoryText":
        self.n_features_in_ = _frame(x).shape[1]
        return self

    def transform(self, x: Any) -> np.ndarray:
        frame = _frame(x)
        return np.column_stack([_as_text(frame[c]) for c in frame.columns]) if frame.shape[1] else np.empty((len(frame), 0))

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        return np.asarray(input_features, dtype=object)


def _as_text(column: pd.Series) -> np.ndarray:
    text = column.astype("string").fillna(MISSING)
    return text.to_numpy(dtype=str)  # fixed-width unicode: scikit-learn's encoders skip their per-value NaN checks


class TextVectors(TransformerMixin, BaseEstimator):
    """Free text of one column: TF-IDF of words, reduced (seeded truncated SVD) to a few dense components."""

    def __init__(self, n_components: int = TEXT_COMPONENTS, max_features: int = 20_000, random_state: int = 0) -> None:
        self.n_components = n_components
        self.max_features = max_features
        self.random_state = random_state

    def fit(self, x: Any, y: Any = None) -> "TextVectors":
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer

        text = self._text(x)
        self.tfidf_ = TfidfVectorizer(max_features=self.max_features, dtype=np.float64).fit(text)
        vocabulary = len(self.tfidf_.vocabulary_)
        self.svd_ = TruncatedSVD(max(1, min(self.n_components, vocabulary - 1)), random_state=self.random_state)
        self.svd_.fit(self.tfidf_.transform(text))
        self.n_features_in_ = 1
        return self

    def transform(self, x: Any) -> np.ndarray:
        return self.svd_.transform(self.tfidf_.transform(self._text(x)))

    @staticmethod
    def _text(x: Any) -> list[str]:
        frame = _frame(x)
        return frame.iloc[:, 0].astype("string").fillna("").tolist()

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        name = str(input_features[0]) if input_features is not None and len(input_features) else "text"
        return np.array([f"{name}_{i}" for i in range(self.svd_.n_components)], dtype=object)


# ---------------------------------------------------------------- the preprocessing


def levels(column: pd.Series) -> int:
    """Distinct values, missing counted as one (it becomes the ``missing`` level)."""
    return int(column.nunique(dropna=True)) + int(column.isna().any())


def plan(features: pd.DataFrame, roles: dict[str, str], *, onehot_max_levels: int, text: bool) -> dict[str, list[str]]:
    """Which encoder each feature column gets: ``numeric``, ``onehot``, ``target``, ``datetime``, ``text``."""
    groups: dict[str, list[str]] = {"numeric": [], "onehot": [], "target": [], "datetime": [], "text": []}
    for name in map(str, features.columns):
        kind = encoder(roles.get(name, "numeric"), levels(features[name]), onehot_max_levels, text)
        if kind:
            groups[kind].append(name)
    return groups


def column_widths(features: pd.DataFrame, groups: dict[str, list[str]], *, onehot_max_levels: int,
                  n_classes: int) -> dict[str, int]:
    """Design-matrix columns each planned feature will take (:func:`reprobook.ml.design.width`)."""
    return {name: width(kind, levels(features[name]), onehot_max_levels, n_classes)
            for kind, names in groups.items() for name in names}


def preprocessor(features: pd.DataFrame, roles: dict[str, str], *, onehot_max_levels: int, text: bool, seed: int,
                 task: str) -> Any:
    """The ``ColumnTransformer`` for ``features`` by role (dense output; columns not planned are dropped)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler, TargetEncoder

    groups = plan(features, roles, onehot_max_levels=onehot_max_levels, text=text)
    numeric = lambda: Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])  # noqa: E731
    transformers: list[tuple[str, Any, Any]] = []
    if groups["numeric"]:
        transformers.append(("numeric", numeric(), groups["numeric"]))
    if groups["onehot"]:
        onehot = OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=INFREQUENT_SHARE,
                               max_categories=onehot_max_levels, sparse_output=False)
        transformers.append(("categorical", Pipeline([("text", CategoryText()), ("encode", onehot)]), groups["onehot"]))
    if groups["target"]:
        from sklearn.model_selection import KFold, StratifiedKFold

        folds = (StratifiedKFold if task == "classification" else KFold)(5, shuffle=True, random_state=seed)
        encoder = TargetEncoder(target_type="auto" if task == "classification" else "continuous", cv=folds)
        transformers.append(("high_cardinality", Pipeline([("text", CategoryText()), ("encode", encoder)]),
                             groups["target"]))
    if groups["datetime"]:
        transformers.append(("datetime", Pipeline([("parts", DatetimeFeatures()), *numeric().steps]), groups["datetime"]))
    for name in groups["text"]:
        transformers.append((f"text_{name}", TextVectors(random_state=seed), [name]))
    if not transformers:
        raise ReprobookError(
            "data.columns: no column is a feature (numeric, categorical, boolean or datetime); expected at least one; "
            f"roles found: {', '.join(f'{c}={r}' for c, r in roles.items())}"
        )
    return ColumnTransformer(transformers, remainder="drop", sparse_threshold=0.0)
