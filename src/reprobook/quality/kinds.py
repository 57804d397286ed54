"""Column kinds: the small type vocabulary shared by statistics, schema and drift.

Pandas has many dtypes (int64, Int64, float32, str, object, category, ...); the
quality engine only needs to know whether a column is summarised as numbers or
as categories, and whether whole numbers are expected. Integers that pandas
widened to float because of missing values are still ``integer``.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

Kind = Literal["integer", "float", "boolean", "string"]
KINDS: tuple[str, ...] = ("integer", "float", "boolean", "string")
NUMERIC_KINDS: frozenset[str] = frozenset({"integer", "float"})


def column_kind(series: pd.Series) -> Kind:
    """The kind of a column from its dtype (and, for floats, whether all values are whole)."""
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return "boolean"
    if pd.api.types.is_integer_dtype(dtype):
        return "integer"
    if pd.api.types.is_float_dtype(dtype):
        values = numeric_values(series)
        head = values[:1000]
        if np.any(np.isfinite(head) & (head != np.floor(head))):
            return "float"  # most float columns show a fraction early: skip the full scan
        finite = values[np.isfinite(values)]
        if finite.size and np.array_equal(finite, np.floor(finite)):
            return "integer"
        return "float"
    return "string"


def merge_kinds(first: Kind, second: Kind) -> Kind:
    """The kind of a column read in chunks whose chunks disagree (int + float is float; else text)."""
    if first == second:
        return first
    if {first, second} <= NUMERIC_KINDS:
        return "float"
    return "string"


def is_numeric(kind: str) -> bool:
    """Whether a kind is summarised with numeric statistics and numeric drift tests."""
    return kind in NUMERIC_KINDS


def numeric_values(series: pd.Series) -> np.ndarray:
    """A float64 array with NaN for missing values, whatever the numeric dtype (nullable included).

    For a plain float64 column this is a read-only view, not a copy: callers must not modify it.
    """
    if series.dtype == np.float64:
        return series.to_numpy(copy=False)
    return series.to_numpy(dtype="float64", na_value=np.nan)


def category_values(series: pd.Series) -> pd.Series:
    """The column as text for category counting; missing values stay missing."""
    if isinstance(series.dtype, pd.StringDtype):
        return series  # already text (pandas 3's default for strings): no copy
    if isinstance(series.dtype, pd.CategoricalDtype):
        series = series.astype(object)
    mask = series.isna()
    text = series.astype(str)
    return text.where(~mask, None) if mask.any() else text
