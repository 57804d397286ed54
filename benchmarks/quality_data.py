"""Synthetic benchmark data shared by the quality benchmarks: 15 numeric and 5 categorical columns.

Columns mimic tabular business data: normal, skewed (lognormal), heavy-tailed,
integer and bounded columns, some with missing values; categoricals with 3 to
20 categories of unequal frequency. ``shift`` arguments inject known changes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

N_NUMERIC = 15
N_CATEGORICAL = 5
CATEGORY_SIZES = (3, 4, 6, 10, 20)


def category_probabilities(k: int) -> np.ndarray:
    """Unequal but not tiny frequencies (Zipf-like with exponent 0.7)."""
    weights = 1.0 / np.arange(1, k + 1) ** 0.7
    return weights / weights.sum()


def numeric_column(i: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """Column i of the numeric block; the family cycles through five shapes."""
    family = i % 5
    if family == 0:
        return rng.normal(50.0, 10.0, n)
    if family == 1:
        return rng.lognormal(10.0, 0.6, n)
    if family == 2:
        return rng.standard_t(5, n)
    if family == 3:
        return rng.integers(0, 1000, n).astype("float64")
    return rng.beta(2.0, 5.0, n)


def make_frame(n: int, seed: int) -> pd.DataFrame:
    """A reference-like frame of n rows (column num_3, num_8 and cat_1 have ~5% missing)."""
    rng = np.random.default_rng(seed)
    data: dict[str, object] = {}
    for i in range(N_NUMERIC):
        values = numeric_column(i, n, rng)
        if i in (3, 8):
            values[rng.random(n) < 0.05] = np.nan
        data[f"num_{i}"] = values
    for j, k in enumerate(CATEGORY_SIZES):
        labels = np.array([f"c{j}_{v}" for v in range(k)], dtype=object)
        codes = rng.choice(k, size=n, p=category_probabilities(k))
        values = labels[codes]
        if j == 1:
            values = values.copy()
            values[rng.random(n) < 0.05] = None
        data[f"cat_{j}"] = pd.Series(values, dtype="str")
    return pd.DataFrame(data)
