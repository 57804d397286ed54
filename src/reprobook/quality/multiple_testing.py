"""Adjusted p-values for testing many columns at once.

A column drifts when its adjusted p-value is at most alpha. Adjusting rather
than lowering alpha keeps every report in the same units.
"""

from __future__ import annotations

import numpy as np


def bonferroni(p_values: np.ndarray) -> np.ndarray:
    """min(1, m * p): family-wise error rate at most alpha under any dependence."""
    return np.minimum(1.0, p_values * p_values.size)


def benjamini_hochberg(p_values: np.ndarray) -> np.ndarray:
    """Step-up BH adjusted p-values: min over k >= rank of m * p_(k) / k (false discovery rate)."""
    m = p_values.size
    if m == 0:
        return p_values.copy()
    order = np.argsort(p_values, kind="stable")
    scaled = p_values[order] * m / np.arange(1, m + 1)
    adjusted = np.minimum.accumulate(scaled[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(1.0, adjusted)
    return out


def adjust(p_values: np.ndarray, correction: str) -> np.ndarray:
    """Adjusted p-values for 'bonferroni', 'bh' or 'none'."""
    p_values = np.asarray(p_values, dtype="float64")
    if correction == "bonferroni":
        return bonferroni(p_values)
    if correction == "bh":
        return benjamini_hochberg(p_values)
    if correction == "none":
        return p_values.copy()
    raise ValueError(f"unknown correction {correction!r}; expected bonferroni, bh or none")
