"""Statistics, drift and validation of partitioned Parquet data on a real Dask LocalCluster (two workers).

Exact figures must equal the single-process engine's on the concatenated
data; sketched figures must be within the error the report states; the
saved reference profile must be reused (nothing recomputed) and grow by the
new partitions only; the command line must take a directory and a scheduler,
and bad input must give one line and exit code 2.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from reprobook.quality import compute_statistics, detect_drift
from reprobook.quality.cluster import drift, profile_dataset
from reprobook.quality.partition_validation import validate_partitions
from reprobook.quality.runner import InProcess, OnDask
from reprobook.quality.schema import infer_schema
from reprobook.quality.summary import SketchConfig
from reprobook.quality.validation import validate

REPROBOOK = Path(sys.executable).parent / "reprobook"
FILES, ROWS = 6, 1500
SMALL_SKETCHES = SketchConfig(quantile_capacity=256, distinct_k=128)
"""Small enough that 9,000 rows overflow both sketches: their figures become estimates."""


def make_partition(rng: np.random.Generator, index: int, shift: float) -> pd.DataFrame:
    x = rng.normal(shift, 1.0, ROWS)
    x[rng.random(ROWS) < 0.05] = np.nan
    if index == 2:
        x[:2] = [np.inf, -np.inf]
    colour = rng.choice(["red", "green", "blue"], ROWS, p=[0.5, 0.3, 0.2]).astype(object)
    colour[rng.random(ROWS) < 0.1] = None
    return pd.DataFrame({
        "x": x,
        "k": rng.integers(0, 40, ROWS),
        "u": rng.random(ROWS) * (index + 1),
        "colour": pd.Series(colour, dtype="str"),
        "flag": rng.random(ROWS) < 0.3,
    })


def write_dataset(folder: Path, seed: int, shift: float) -> pd.DataFrame:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    frames = [make_partition(rng, i, shift) for i in range(FILES)]
    for i, frame in enumerate(frames):
        frame.to_parquet(folder / f"part-{i}.parquet", row_group_size=ROWS // 2)
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def client():
    from dask.distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None, silence_logs=40) as cluster, Client(cluster) as dask_client:
        yield dask_client


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("partitioned")
    ref = write_dataset(root / "ref", seed=1, shift=0.0)
    cur = write_dataset(root / "cur", seed=2, shift=0.4)
    return {"root": root, "ref": root / "ref", "cur": root / "cur", "ref_frame": ref, "cur_frame": cur}


def test_exact_statistics_equal_the_single_process_engine(client, data):
    profile = profile_dataset(data["ref"], runner=OnDask(client))
    ours, theirs = profile.statistics.to_dict(), compute_statistics(data["ref_frame"]).to_dict()
    assert ours["n_rows"] == theirs["n_rows"] == FILES * ROWS
    assert profile.summary.n_partitions == FILES  # a file of two row groups is one partition (below TARGET_ROWS)
    for mine, single in zip(ours["columns"], theirs["columns"]):
        for figure in ("name", "kind", "count", "missing", "distinct", "distinct_exact", "n_infinite", "min", "max",
                       "histogram", "top_values", "quantiles", "quantiles_exact"):
            assert mine[figure] == single[figure], (mine["name"], figure)
        for figure in ("mean", "std"):
            if single[figure] is None:
                assert mine[figure] is None
            else:
                assert mine[figure] == pytest.approx(single[figure], rel=1e-12), (mine["name"], figure)


def assert_same(ours: object, expected: object, where: str = "") -> None:
    """Equal, except floats that are equal up to rounding (numpy's sums depend on memory alignment)."""
    if isinstance(expected, dict):
        assert isinstance(ours, dict) and sorted(ours) == sorted(expected), where
        for key in expected:
            assert_same(ours[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(ours, list) and len(ours) == len(expected), where
        for i, (a, b) in enumerate(zip(ours, expected)):
            assert_same(a, b, f"{where}[{i}]")
    elif isinstance(expected, float) and not isinstance(ours, bool):
        assert ours == pytest.approx(expected, rel=1e-12, abs=1e-300), where
    else:
        assert ours == expected, where


def test_drift_equals_the_single_process_engine_while_sketches_hold_every_value(client, data, tmp_path):
    report, _, _ = drift(data["ref"], data["cur"], runner=OnDask(client), reference_profile=tmp_path / "profile")
    expected = detect_drift(data["ref_frame"], data["cur_frame"])
    assert_same(json.loads(json.dumps(report.to_dict())), json.loads(json.dumps(expected.to_dict())))
    for ours, single in zip(report.columns, expected.columns):  # counts and tests: equal, not just close
        assert (ours.n_reference, ours.n_current, ours.missing_reference, ours.missing_current) == (
            single.n_reference, single.n_current, single.missing_reference, single.missing_current)
        assert (ours.statistic, ours.p_value, ours.missing_p_value) == (
            single.statistic, single.p_value, single.missing_p_value), ours.column
    assert "x" in report.drifted_columns


def finite(frame: pd.DataFrame, column: str) -> np.ndarray:
    values = frame[column].to_numpy(dtype="float64")
    return np.sort(values[np.isfinite(values)])


def test_sketched_figures_are_within_the_stated_error(client, data):
    ref = profile_dataset(data["ref"], runner=OnDask(client), config=SMALL_SKETCHES)
    for name in ("x", "k", "u"):
        column, values = ref.summary.column(name), finite(data["ref_frame"], name)
        stats_ = column.statistics()
        bound = column.error_bounds()["quantiles_rank_error"]
        assert stats_.quantiles_exact is False and 0 < bound < 0.1
        for probability, value in stats_.quantiles.items():
            below = np.searchsorted(values, value, side="left") / values.size
            at_most = np.searchsorted(values, value, side="right") / values.size
            assert below - bound <= float(probability) <= at_most + bound, (name, probability)
    u = ref.summary.column("u")
    true_distinct = np.unique(data["ref_frame"]["u"]).size
    assert not u.distinct.exact
    assert abs(u.distinct.estimate() - true_distinct) <= 4 * u.error_bounds()["distinct_relative_std_error"] * true_distinct

    report, _, _ = drift(data["ref"], data["cur"], runner=OnDask(client), sketches=SMALL_SKETCHES)
    expected = detect_drift(data["ref_frame"], data["cur_frame"])
    for ours, exact in zip(report.columns, expected.columns):
        if ours.kind == "categorical":  # exact frequency tables: the same chi-square
            assert_same(ours.to_dict(), exact.to_dict(), ours.column)
            assert (ours.statistic, ours.p_value) == (exact.statistic, exact.p_value)
            continue
        bound = ours.error_bounds["statistic"]
        true_d = stats.ks_2samp(finite(data["ref_frame"], ours.column), finite(data["cur_frame"], ours.column)).statistic
        assert exact.statistic == pytest.approx(true_d, abs=1e-12)
        assert abs(ours.statistic - true_d) <= bound, ours.column
        assert ours.missing_p_value == exact.missing_p_value
        wasserstein = ours.effects["wasserstein_norm"] - exact.effects["wasserstein_norm"]
        assert abs(wasserstein) <= ours.error_bounds["wasserstein_norm"], ours.column
        assert "error at most statistic" in ours.reason()
    assert report.drifted_columns == expected.drifted_columns


def test_a_cluster_and_this_process_write_the_same_profile_bytes(client, data, tmp_path):
    profile_dataset(data["ref"], runner=OnDask(client), folder=tmp_path / "cluster")
    profile_dataset(data["ref"], runner=InProcess(), folder=tmp_path / "here")
    names = sorted(p.relative_to(tmp_path / "here") for p in (tmp_path / "here").rglob("*") if p.is_file())
    assert len(names) == FILES + 2
    for name in names:
        assert (tmp_path / "cluster" / name).read_bytes() == (tmp_path / "here" / name).read_bytes(), name


def test_the_saved_profile_is_reused_and_new_partitions_only_add(client, data, tmp_path):
    folder = tmp_path / "ref"
    shutil.copytree(data["ref"], folder)
    runner = OnDask(client)
    first = profile_dataset(folder, runner=runner, folder=folder / ".reprobook-profile")
    assert len(first.computed) == FILES and first.reused == []
    index = folder / ".reprobook-profile" / "index.json"
    written = index.stat().st_mtime_ns, (folder / ".reprobook-profile" / "merged.npz").read_bytes()

    again = profile_dataset(folder, runner=runner, folder=folder / ".reprobook-profile")
    assert again.computed == [] and len(again.reused) == FILES
    assert (index.stat().st_mtime_ns, (folder / ".reprobook-profile" / "merged.npz").read_bytes()) == written

    extra = make_partition(np.random.default_rng(9), 7, 0.0).assign(k=lambda f: f["k"] * 10)  # widens k's range
    extra.to_parquet(folder / "part-9.parquet", row_group_size=ROWS)
    grown = profile_dataset(folder, runner=runner, folder=folder / ".reprobook-profile")
    assert grown.computed == ["part-9.parquet"] and len(grown.reused) == FILES
    assert "k" in grown.recounted
    everything = pd.concat([data["ref_frame"], extra], ignore_index=True)
    ours, theirs = grown.statistics.to_dict(), compute_statistics(everything).to_dict()
    for mine, single in zip(ours["columns"], theirs["columns"]):
        for figure in ("count", "missing", "min", "max", "histogram", "top_values", "quantiles"):
            assert mine[figure] == single[figure], (mine["name"], figure)
    fresh = profile_dataset(folder, runner=InProcess(), folder=tmp_path / "fresh")
    assert fresh.computed and (tmp_path / "fresh" / "merged.npz").read_bytes() == (
        folder / ".reprobook-profile" / "merged.npz").read_bytes()


def test_validation_counts_equal_the_single_process_engine(client, data):
    schema = infer_schema(data["ref_frame"].iloc[:ROWS])
    ours = validate_partitions(data["cur"], schema, runner=OnDask(client))
    single = validate(data["cur_frame"], schema)
    counts = {(a.kind, a.column): a.count for a in single.anomalies if a.kind != "duplicate_rows"}
    assert {(a.kind, a.column): a.count for a in ours.anomalies if a.kind != "duplicate_rows"} == counts
    assert ("out_of_range", "x") in counts and ours.has_errors == single.has_errors


def run_cli(*args: object) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "REPROBOOK_SCHEDULER"}
    return subprocess.run([str(REPROBOOK), *map(str, args)], capture_output=True, text=True, env=env, timeout=120)


def test_cli_profile_and_drift_on_a_local_cluster_and_on_the_fixture_cluster(client, data, tmp_path):
    result = run_cli("profile", data["ref"], "--scheduler", "local", "--profile", tmp_path / "p", "--format", "json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["n_rows"] == FILES * ROWS
    assert "6 computed, 0 reused" in result.stderr

    address = client.scheduler.address
    result = run_cli("drift", data["ref"], data["cur"], "--scheduler", address, "--profile", tmp_path / "p2",
                     "--format", "json")
    assert result.returncode == 1, result.stderr  # drift found
    expected = detect_drift(data["ref_frame"], data["cur_frame"]).to_dict()
    assert_same(json.loads(result.stdout), json.loads(json.dumps(expected)))
    result = run_cli("drift", data["ref"], data["cur"], "--scheduler", address, "--profile", tmp_path / "p2")
    assert "reference: 6 partition(s), 9000 rows: from the saved profile" in result.stderr


def test_cli_bad_input_is_one_line_and_exit_code_2(data, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    mixed = tmp_path / "mixed"
    shutil.copytree(data["ref"], mixed)
    make_partition(np.random.default_rng(3), 0, 0.0).astype({"x": "str"}).to_parquet(mixed / "part-7.parquet")
    cases = [
        (("profile", empty), "no Parquet files"),
        (("drift", mixed, data["cur"], "--profile", tmp_path / "p"), "part-7.parquet: column 'x' is"),
        (("profile", data["ref"], "--scheduler", "tcp://127.0.0.1:1", "--no-save"), "no Dask scheduler at tcp://127.0.0.1:1"),
    ]
    for args, message in cases:
        result = run_cli(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr and "Traceback" not in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
