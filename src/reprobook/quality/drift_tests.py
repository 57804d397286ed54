"""Two-sample tests and distances on arrays: the statistics behind drift detection.

Numeric columns are compared through their sorted values: one binary-search
merge of the two sorted samples gives both empirical CDFs at every distinct
value, from which the Kolmogorov-Smirnov statistic and the Wasserstein distance
follow exactly as scipy computes them, in O(n log n) with no second sort.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

EXACT_KS_MAX_N = 10_000  # scipy's ks_2samp(method="auto") uses the exact distribution up to this size


def merged_cdfs(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct values of a∪b (sorted) and the ECDFs of sorted ``a`` and ``b`` at each of them."""
    n = a.size + b.size
    position_b = np.searchsorted(a, b, side="right") + np.arange(b.size)
    is_b = np.zeros(n, dtype=bool)
    is_b[position_b] = True
    merged = np.empty(n)
    merged[position_b] = b
    merged[~is_b] = a
    ends = np.flatnonzero(np.append(merged[1:] != merged[:-1], True))
    count_b = np.cumsum(is_b)[ends]
    count_a = ends + 1 - count_b
    return merged[ends], count_a / a.size, count_b / b.size


def ks_two_sample(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Two-sided KS statistic and p-value as ``scipy.stats.ks_2samp(a, b)`` (method='auto') gives them.

    Up to 10,000 values per side scipy's exact distribution is used (by calling
    scipy); above, the statistic comes from :func:`merged_cdfs` and the p-value
    from scipy's asymptotic ``kstwo.sf(d, round(n*m/(n+m)))``, as scipy does.
    """
    if max(a.size, b.size) <= EXACT_KS_MAX_N:
        result = stats.ks_2samp(a, b)
        return float(result.statistic), float(result.pvalue)
    _, fa, fb = merged_cdfs(a, b)
    return ks_from_cdfs(fa, fb, a.size, b.size)


def ks_from_cdfs(fa: np.ndarray, fb: np.ndarray, na: int, nb: int) -> tuple[float, float]:
    """KS statistic and asymptotic p-value from ECDFs evaluated at the merged distinct values."""
    diffs = fa - fb
    max_s = float(diffs.max())
    min_s = float(np.clip(-diffs.min(), 0, 1))
    d = min_s if min_s > max_s else max_s
    m, n = sorted([float(na), float(nb)], reverse=True)
    p = float(np.clip(stats.kstwo.sf(d, np.round(m * n / (m + n))), 0, 1))
    return d, p


def wasserstein_from_cdfs(values: np.ndarray, fa: np.ndarray, fb: np.ndarray) -> float:
    """First Wasserstein distance: the area between the two ECDFs."""
    return float(np.sum(np.abs(fa[:-1] - fb[:-1]) * np.diff(values)))


def proportions_in_bins(sorted_values: np.ndarray, inner_edges: np.ndarray) -> np.ndarray:
    """Shares of values in (-inf, e1], (e1, e2], ..., (ek, inf)."""
    cuts = np.searchsorted(sorted_values, inner_edges, side="right")
    counts = np.diff(np.concatenate([[0], cuts, [sorted_values.size]]))
    return counts / sorted_values.size


def psi(reference: np.ndarray, current: np.ndarray, epsilon: float) -> float:
    """Population stability index, sum((c - r) * ln(c / r)), proportions floored at ``epsilon``."""
    r = np.maximum(reference, epsilon)
    c = np.maximum(current, epsilon)
    return float(np.sum((c - r) * np.log(c / r)))


def jensen_shannon(reference: np.ndarray, current: np.ndarray) -> float:
    """Jensen-Shannon distance, base 2 (as ``scipy.spatial.distance.jensenshannon(p, q, base=2)``)."""
    p = reference / reference.sum()
    q = current / current.sum()
    m = (p + q) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_p = np.where(p > 0, p * np.log2(p / m), 0.0).sum()
        kl_q = np.where(q > 0, q * np.log2(q / m), 0.0).sum()
    return float(np.sqrt(max(0.0, (kl_p + kl_q) / 2)))


def hellinger(reference: np.ndarray, current: np.ndarray) -> float:
    """Hellinger distance in [0, 1]: sqrt(1 - sum(sqrt(p * q)))."""
    p = reference / reference.sum()
    q = current / current.sum()
    return float(np.sqrt(max(0.0, 1.0 - np.sum(np.sqrt(p * q)))))


def chi_square(table: np.ndarray) -> tuple[float, float, int]:
    """Chi-square test of a 2 x k contingency table, as ``scipy.stats.chi2_contingency`` (Yates for 1 dof)."""
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        return 0.0, 1.0, 0
    result = stats.chi2_contingency(table)
    return float(result.statistic), float(result.pvalue), int(result.dof)


def missing_share_test(missing_ref: int, n_ref: int, missing_cur: int, n_cur: int) -> float:
    """p-value of a change in the share of missing values (chi-square on the 2 x 2 table)."""
    table = np.array([[missing_ref, n_ref - missing_ref], [missing_cur, n_cur - missing_cur]])
    return chi_square(table)[1]
