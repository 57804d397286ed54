"""Drift: statistics equal scipy's, verdicts follow the data, multiple testing as documented."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon

from reprobook.errors import ReprobookError
from reprobook.quality import DriftConfig, detect_drift
from reprobook.quality import drift_tests as t
from reprobook.quality.multiple_testing import benjamini_hochberg, bonferroni


@pytest.mark.parametrize(("n_ref", "n_cur"), [(300, 200), (5000, 4000), (30_000, 20_000), (50, 15_000)])
def test_ks_equals_scipy_ks_2samp(n_ref, n_cur):
    rng = np.random.default_rng(n_ref)
    ref = pd.DataFrame({"x": rng.normal(0, 1, n_ref).round(2)})  # rounding makes ties
    cur = pd.DataFrame({"x": rng.normal(0.05, 1.1, n_cur).round(2)})
    column = detect_drift(ref, cur).columns[0]
    expected = stats.ks_2samp(ref["x"], cur["x"])
    assert column.test == "ks"
    assert abs(column.statistic - expected.statistic) < 1e-9
    assert abs(column.p_value - expected.pvalue) < 1e-9


def test_wasserstein_and_distances_equal_scipy():
    rng = np.random.default_rng(1)
    a, b = np.sort(rng.exponential(size=20_000)), np.sort(rng.exponential(1.1, size=15_000))
    assert abs(t.ecdf_comparison(a, b)[2] - stats.wasserstein_distance(a, b)) < 1e-9
    p, q = np.array([0.1, 0.4, 0.5, 0.0]), np.array([0.2, 0.2, 0.3, 0.3])
    assert abs(t.jensen_shannon(p, q) - jensenshannon(p, q, base=2)) < 1e-12
    assert t.hellinger(p, p) == pytest.approx(0.0, abs=1e-7) and 0 < t.hellinger(p, q) < 1


@pytest.mark.parametrize("n_categories", [2, 5])
def test_chi_square_equals_scipy_chi2_contingency(n_categories):
    rng = np.random.default_rng(n_categories)
    cats = [f"c{i}" for i in range(n_categories)]
    ref = pd.DataFrame({"c": rng.choice(cats, 3000)})
    cur = pd.DataFrame({"c": rng.choice(cats, 2000, p=np.linspace(1, 2, n_categories) / np.linspace(1, 2, n_categories).sum())})
    column = detect_drift(ref, cur).columns[0]
    table = pd.crosstab(np.r_[np.zeros(3000), np.ones(2000)], np.r_[ref["c"], cur["c"]]).to_numpy()
    expected = stats.chi2_contingency(table)
    assert column.test == "chi2"
    assert abs(column.statistic - expected.statistic) < 1e-9 and abs(column.p_value - expected.pvalue) < 1e-9
    linf = np.max(np.abs(table[0] / 3000 - table[1] / 2000))
    assert column.effects["linf"] == pytest.approx(linf, abs=1e-12)


def data(n: int, seed: int, shift: float = 0.0, south: float = 0.3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "income": rng.normal(shift, 1, n),
        "age": rng.integers(18, 80, n),
        "region": rng.choice(["north", "south", "east"], n, p=[0.7 - south, south, 0.3]),
    })


def test_same_distribution_is_not_drift_and_shift_is():
    assert not detect_drift(data(5000, 1), data(5000, 2)).drifted
    report = detect_drift(data(5000, 1), data(5000, 2, shift=0.2, south=0.4))
    assert report.drifted and report.drifted_columns == ["income", "region"]
    psi_edges = report.config.quantile_bins
    assert f"{psi_edges} reference-quantile bins" in report.method()


def test_new_category_and_more_missing_values_are_detected():
    ref, cur = data(5000, 1), data(5000, 2)
    cur.loc[:300, "region"] = "islands"
    cur.loc[:500, "income"] = np.nan
    report = detect_drift(ref, cur)
    by_name = {c.column: c for c in report.columns}
    assert by_name["region"].new_categories == ["islands"] and by_name["region"].drifted
    assert by_name["income"].drifted and by_name["income"].missing_current == pytest.approx(501 / 5000)


def test_corrections_follow_their_definitions():
    p = np.array([0.01, 0.04, 0.03, 0.005])
    assert bonferroni(p).tolist() == pytest.approx([0.04, 0.16, 0.12, 0.02])
    assert benjamini_hochberg(p).tolist() == pytest.approx([0.02, 0.04, 0.04, 0.02])
    ref, cur = data(3000, 1), data(3000, 2, shift=0.09)
    loose = detect_drift(ref, cur, config=DriftConfig(correction="none"))
    strict = detect_drift(ref, cur, config=DriftConfig(correction="bonferroni"))
    income_p = loose.columns[0].p_value
    assert strict.columns[0].p_value_adjusted == pytest.approx(min(1, 3 * income_p))


def test_effect_decision_uses_thresholds():
    ref, cur = data(20_000, 1), data(20_000, 2, shift=0.05)
    assert detect_drift(ref, cur).drifted_columns == ["income"]  # significant at this size
    assert not detect_drift(ref, cur, config=DriftConfig(decision="both")).drifted  # but small


def test_mismatched_columns_are_reported_and_requested_ones_checked():
    ref, cur = data(500, 1), data(500, 2).drop(columns="age").assign(extra=1)
    report = detect_drift(ref, cur)
    assert [c.column for c in report.columns] == ["income", "region"]
    assert report.only_in_reference == ["age"] and report.only_in_current == ["extra"]
    with pytest.raises(ReprobookError, match="age"):
        detect_drift(ref, cur, columns=["age"])


def test_bad_inputs_give_clear_results():
    ref = data(500, 1)
    with pytest.raises(ReprobookError, match="current data set is empty"):
        detect_drift(ref, ref.iloc[:0])
    cur = data(500, 2)
    cur["income"] = np.nan
    column = detect_drift(ref, cur).columns[0]
    assert column.test == "none" and not column.drifted and "not tested" in column.note
    cur = data(500, 2)
    cur["age"] = cur["age"].astype(object)
    cur.loc[:9, "age"] = "unknown"
    age = [c for c in detect_drift(ref, cur).columns if c.column == "age"][0]
    assert "10 non-numeric" in age.note


def test_outputs_are_deterministic_and_name_drifted_columns(tmp_path):
    ref, cur = data(3000, 1), data(3000, 2, shift=0.3)
    first = json.dumps(detect_drift(ref, cur).to_dict(), sort_keys=True)
    assert first == json.dumps(detect_drift(ref, cur).to_dict(), sort_keys=True)
    report = detect_drift(ref, cur)
    html = report.to_html(tmp_path / "drift.html").read_text()
    assert "Drifted columns" in html and "<b>income</b>" in html and "<script" not in html
    assert "DRIFT" in report.to_text() and "income" in report.to_text().splitlines()[0]
    paths = report.plot(tmp_path / "plots")
    assert [p.name for p in paths] == ["drift_summary.png", "drift_income.png"]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in paths)


@pytest.mark.parametrize(("n", "nx2"), [(300, 2.5), (120_000, 2.3), (120_000, 9.0), (141, 3.0), (2_000_000, 3.0)])
def test_ks_p_value_fast_paths_equal_scipy_kstwo(n, nx2):
    """The tail of the KS distribution where scipy is slow (n up to 1e6, small p) is computed faster, same value."""
    d = float(np.sqrt(nx2 / n))
    _, p = t.ks_asymptotic(d, 0.0, 2 * n, 2 * n)
    assert abs(p - stats.kstwo.sf(d, n)) < 1e-9


def test_ks_p_value_below_massart_cutoff_is_within_1e_9():
    n, d = 50_000, float(np.sqrt(12.5 / 50_000))
    _, p = t.ks_asymptotic(d, 0.0, 2 * n, 2 * n)
    assert p < 1e-10 and abs(p - stats.kstwo.sf(d, n)) < 1e-9


def test_blocked_merge_equals_scipy_with_ties_across_many_blocks(monkeypatch):
    monkeypatch.setattr(t, "MERGE_BLOCK", 500)
    rng = np.random.default_rng(9)
    a, b = np.sort(rng.integers(0, 300, 20_000).astype(float)), np.sort(rng.integers(5, 310, 16_000).astype(float))
    max_s, min_s, area = t.ecdf_comparison(a, b)
    assert max(max_s, min_s) == stats.ks_2samp(a, b).statistic
    assert abs(area - stats.wasserstein_distance(a, b)) < 1e-9
