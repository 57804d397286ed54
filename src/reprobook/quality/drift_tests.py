"""Two-sample tests and distances on arrays: the statistics behind drift detection.

Numeric columns are compared through their sorted values: one linear-time
merge of the two sorted samples gives both empirical CDFs at every value, from
which the Kolmogorov-Smirnov statistic and the Wasserstein distance follow as
scipy computes them.
"""

from __future__ import annotations

import numpy as np
from scipy import special, stats

EXACT_KS_MAX_N = 10_000  # scipy's ks_2samp(method="auto") uses the exact distribution up to this size
# Above n*D^2 = 11.8 the p-value is below 1.2e-10: scipy's exact tail sum can take a second there
# (n near 1e6), so the p-value is Massart's bound 2*exp(-2*n*D^2) instead: an upper bound on
# the true tail that is itself below 1.2e-10, hence within 1e-9 of scipy's figure.
MASSART_CUTOFF = 11.8
SMIRNOV_EXACT_N = (140, 1_000_000)  # where scipy's smirnov sums the exact series term by term


MERGE_BLOCK = 1 << 18  # values per merge block: temporaries stay cache-sized and are reused, not re-faulted


def _block_cuts(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Increasing cut values: evenly spaced order statistics of both samples, plus the overall maximum.

    A block holds the values in (previous cut, cut], so ties never straddle
    two blocks, and each block has at most about MERGE_BLOCK values unless
    one value alone is that frequent.
    """
    blocks = max(1, (a.size + b.size) // MERGE_BLOCK)
    picks = [x[np.linspace(0, x.size - 1, blocks + 1).astype(np.int64)[1:]] for x in (a, b)]
    return np.unique(np.concatenate(picks + [[max(a[-1], b[-1])]]))


def ecdf_comparison(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """(max of F_a - F_b, max of F_b - F_a, Wasserstein-1) for sorted samples ``a`` and ``b``.

    The two sorted samples are merged block by block (a stable argsort of two
    sorted runs is a linear-time timsort merge) and the ECDF difference at each
    merged position is count_a/n_a - count_b/n_b, the same floating-point
    expression scipy's ks_2samp evaluates, so the KS statistic is
    bit-identical. Only positions that end a run of tied values count for KS;
    for the Wasserstein area the width to the next value is zero inside a tie
    anyway. Blocks keep every temporary array small: large fresh arrays cost
    more in page faults than the arithmetic on them.
    """
    na, nb = a.size, b.size
    cuts = _block_cuts(a, b)
    a_ends = np.searchsorted(a, cuts, side="right")
    b_ends = np.searchsorted(b, cuts, side="right")
    max_s, min_s, area = 0.0, 0.0, 0.0
    a_start = b_start = 0
    previous_last, previous_diff = None, 0.0
    for a_end, b_end in zip(a_ends.tolist(), b_ends.tolist()):
        if a_end == a_start and b_end == b_start:
            continue
        block = np.concatenate([a[a_start:a_end], b[b_start:b_end]])
        order = np.argsort(block, kind="stable")
        merged = block[order]
        from_b = np.cumsum(order >= a_end - a_start, dtype=np.int32)  # blocks are far below 2**31 values
        count_a = np.arange(a_start + 1, a_start + 1 + merged.size, dtype=np.int64)
        count_a -= from_b
        from_b += b_start
        diff = count_a / na - from_b / nb
        step = np.diff(merged)
        ends = diff[:-1][step != 0]
        last = float(diff[-1])  # the block's last position ends a tie run: blocks are cut between values
        max_s = max(max_s, last, float(ends.max()) if ends.size else last)
        min_s = min(min_s, last, float(ends.min()) if ends.size else last)
        if previous_last is not None:
            area += abs(previous_diff) * (float(merged[0]) - previous_last)
        area += float(np.dot(np.abs(diff[:-1]), step))
        previous_last, previous_diff = float(merged[-1]), float(diff[-1])
        a_start, b_start = a_end, b_end
    return max_s, -min_s, area


def ks_two_sample(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Two-sided KS statistic and p-value as ``scipy.stats.ks_2samp(a, b)`` (method='auto') gives them.

    Up to 10,000 values per side scipy's exact distribution is used (by calling
    scipy); above, the statistic comes from :func:`ecdf_comparison` and the
    p-value from scipy's asymptotic ``kstwo.sf(d, round(n*m/(n+m)))``, as scipy
    does (with the two faster tails described at ``MASSART_CUTOFF``).
    """
    if max(a.size, b.size) <= EXACT_KS_MAX_N:
        result = stats.ks_2samp(a, b)
        return float(result.statistic), float(result.pvalue)
    max_s, min_s, _ = ecdf_comparison(a, b)
    return ks_asymptotic(max_s, min_s, a.size, b.size)


def ks_asymptotic(max_s: float, min_s: float, na: int, nb: int) -> tuple[float, float]:
    """KS statistic from the two one-sided maxima, and scipy's asymptotic two-sided p-value."""
    min_s = float(np.clip(min_s, 0, 1))
    d = min_s if min_s > max_s else max_s
    m, n = sorted([float(na), float(nb)], reverse=True)
    en = np.round(m * n / (m + n))
    if en * d * d >= MASSART_CUTOFF:
        return d, float(2.0 * np.exp(-2.0 * en * d * d))
    if SMIRNOV_EXACT_N[0] < en <= SMIRNOV_EXACT_N[1] and en * d * d >= 2.2:
        return d, float(np.clip(2.0 * smirnov_exact(en, d), 0, 1))
    return d, float(np.clip(stats.kstwo.sf(d, en), 0, 1))


def smirnov_exact(n: float, x: float) -> float:
    """One-sided KS tail P(D+_n >= x) by the exact Birnbaum-Tingey sum, vectorised in log space.

    scipy.stats.kstwo.sf uses 2 * scipy.special.smirnov(n, x) when n > 140 and
    n * x**2 >= 2.2; for n up to 1e6 scipy sums the same series one term at a
    time (up to 1.5 s). The vectorised sum agrees with it to about 1e-11.
    """
    j = np.arange(0, np.floor(n * (1 - x)) + 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = (
            special.gammaln(n + 1) - special.gammaln(j + 1) - special.gammaln(n - j + 1)
            + (j - 1) * np.log(x + j / n) + (n - j) * np.log1p(-x - j / n)
        )
    return float(x * np.exp(special.logsumexp(logs[np.isfinite(logs)])))


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
