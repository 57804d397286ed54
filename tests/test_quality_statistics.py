"""Statistics: exact values in memory, and streamed files agree with in-memory frames."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from reprobook.quality import compute_statistics, statistics_from_file
from reprobook.quality.sketches import QuantileSketch
from reprobook.quality.statistics import QUANTILES


def frame(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    income = rng.lognormal(10, 0.5, n)
    income[rng.random(n) < 0.1] = np.nan
    return pd.DataFrame({
        "age": rng.integers(18, 80, n),
        "income": income,
        "score": rng.normal(600, 50, n).round(1),
        "region": rng.choice(["north", "south", "east", "west"], n, p=[0.4, 0.3, 0.2, 0.1]),
        "flag": rng.random(n) < 0.3,
    })


def test_numeric_statistics_equal_numpy_and_pandas():
    df = frame(5000)
    stats = compute_statistics(df)
    income = stats["income"]
    values = df["income"].dropna().to_numpy()
    assert income.kind == "float"
    assert income.count == 5000 and income.missing == int(df["income"].isna().sum())
    assert income.mean == pytest.approx(values.mean(), rel=1e-12)
    assert income.std == pytest.approx(values.std(ddof=1), rel=1e-12)
    assert income.min == values.min() and income.max == values.max()
    assert income.distinct == df["income"].nunique()
    expected_q = np.quantile(values, QUANTILES)
    assert list(income.quantiles.values()) == pytest.approx(expected_q, rel=1e-12)
    counts, edges = np.histogram(values, bins=20)
    assert income.histogram["counts"] == counts.tolist()
    assert income.histogram["edges"] == pytest.approx(edges.tolist())
    assert stats["age"].kind == "integer"


def test_categorical_top_values_in_frequency_order():
    df = frame(5000)
    region = compute_statistics(df)["region"]
    counts = df["region"].value_counts()
    assert region.distinct == 4
    assert [t["value"] for t in region.top_values] == counts.index.tolist()
    assert [t["count"] for t in region.top_values] == counts.tolist()
    assert compute_statistics(df)["flag"].kind == "boolean"


def test_same_input_gives_byte_identical_json():
    df = frame(3000)
    first = json.dumps(compute_statistics(df).to_dict(), sort_keys=True)
    assert first == json.dumps(compute_statistics(df.copy()).to_dict(), sort_keys=True)


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_streamed_file_equals_in_memory_frame(tmp_path, suffix):
    df = frame(3000, seed=1)
    path = tmp_path / f"data.{suffix}"
    df.to_csv(path, index=False) if suffix == "csv" else df.to_parquet(path)
    whole = pd.read_csv(path) if suffix == "csv" else pd.read_parquet(path)
    memory = compute_statistics(whole).to_dict()
    streamed = statistics_from_file(path, chunksize=257).to_dict()
    assert streamed["n_rows"] == memory["n_rows"] == 3000
    for mem, st in zip(memory["columns"], streamed["columns"]):
        for key in ("name", "kind", "count", "missing", "distinct", "min", "max", "histogram", "top_values", "quantiles"):
            assert st[key] == mem[key], (mem["name"], key)
        for key in ("mean", "std"):
            expected = None if mem[key] is None else pytest.approx(mem[key], rel=1e-10)
            assert st[key] == expected, (mem["name"], key)


def test_streamed_quantiles_of_large_file_within_stated_rank_error(tmp_path):
    rng = np.random.default_rng(2)
    df = pd.DataFrame({"x": rng.normal(size=200_000), "y": rng.exponential(size=200_000)})
    path = tmp_path / "big.parquet"
    df.to_parquet(path)
    streamed = statistics_from_file(path, chunksize=30_000)
    for name in ("x", "y"):
        column = streamed[name]
        assert column.quantiles_exact is False
        values = np.sort(df[name].to_numpy())
        for q, value in column.quantiles.items():
            rank = np.searchsorted(values, value) / values.size
            assert abs(rank - float(q)) < 0.002, (name, q)
        assert column.mean == pytest.approx(values.mean(), rel=1e-10)
        assert column.distinct == pytest.approx(200_000, rel=0.02)


def test_quantile_sketch_merging_is_deterministic():
    rng = np.random.default_rng(4)
    data = rng.normal(size=100_000)
    results = []
    for _ in range(2):
        sketch = QuantileSketch(capacity=1024)
        for chunk in np.array_split(data, 13):
            sketch.add(chunk)
        results.append(sketch.quantiles(np.array([0.1, 0.5, 0.9])))
    assert np.array_equal(results[0], results[1])


def test_empty_frame_and_all_missing_column():
    empty = compute_statistics(pd.DataFrame({"a": pd.Series([], dtype=float), "b": pd.Series([], dtype=str)}))
    assert empty.n_rows == 0 and empty["a"].count == 0 and empty["a"].mean is None
    json.dumps(empty.to_dict())
    stats = compute_statistics(pd.DataFrame({"gone": [np.nan] * 5, "x": [1.0, 2, 3, 4, np.inf]}))
    assert stats["gone"].missing == 5 and stats["gone"].min is None
    assert stats["x"].n_infinite == 1 and stats["x"].max == 4.0
    assert json.loads(json.dumps(stats.to_dict()))["columns"][1]["mean"] == 2.5


def test_missing_file_is_a_usage_error_naming_it(tmp_path):
    from reprobook.errors import UsageError

    with pytest.raises(UsageError, match="nope.csv"):
        statistics_from_file(tmp_path / "nope.csv")
