"""Data sources, task inference and their bad inputs."""

from pathlib import Path

import pandas as pd
import pytest

from reprobook.errors import ReprobookError
from reprobook.ml.datasets import infer_task, load_dataset
from reprobook.ml.loans import make_loans
from reprobook.project.params import DataParams


def test_loans_is_seeded_and_realistic():
    a, b = make_loans(2000, seed=7), make_loans(2000, seed=7)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(make_loans(2000, seed=8))
    assert a["income"].isna().any() and a["region"].isna().any()
    assert {"gender", "region", "employment", "purpose"} <= set(a.select_dtypes(exclude="number").columns)
    assert 0.2 < a["approved"].mean() < 0.8


@pytest.mark.parametrize("name,task", [("breast_cancer", "classification"), ("iris", "classification"), ("diabetes", "regression")])
def test_sklearn_sources_and_inferred_task(name, task, tmp_path):
    dataset = load_dataset(DataParams(source=f"sklearn:{name}"), tmp_path)
    assert dataset.target == "target"
    assert infer_task(dataset.frame["target"], "auto")[0] == task


def test_unknown_sklearn_dataset(tmp_path):
    with pytest.raises(ReprobookError, match="unknown scikit-learn data set 'mnist'.*breast_cancer"):
        load_dataset(DataParams(source="sklearn:mnist"), tmp_path)


def test_csv_and_parquet_sources(tmp_path):
    frame = make_loans(300, seed=1)
    frame.to_csv(tmp_path / "loans.csv", index=False)
    frame.to_parquet(tmp_path / "loans.parquet", index=False)
    from_csv = load_dataset(DataParams(source="csv:loans.csv", target="approved"), tmp_path)
    from_parquet = load_dataset(DataParams(source="parquet:loans.parquet", target="approved"), tmp_path)
    assert len(from_csv.frame) == len(from_parquet.frame) == 300


def test_missing_file_names_path(tmp_path):
    with pytest.raises(ReprobookError, match=r"file .*nope\.csv not found.*dvc pull"):
        load_dataset(DataParams(source="csv:nope.csv", target="y"), tmp_path)


def test_corrupt_csv_names_file(tmp_path):
    (tmp_path / "bad.csv").write_text('a,b\n1,2\n3,4,5,6\n"unterminated\n')
    with pytest.raises(ReprobookError, match=r"bad\.csv: not a readable CSV file"):
        load_dataset(DataParams(source="csv:bad.csv", target="a"), tmp_path)


def test_corrupt_parquet_names_file(tmp_path):
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(ReprobookError, match=r"bad\.parquet: not a readable PARQUET file"):
        load_dataset(DataParams(source="parquet:bad.parquet", target="a"), tmp_path)


def test_absent_target_lists_columns(tmp_path):
    pd.DataFrame({"x": [1, 2], "y": [0, 1]}).to_csv(tmp_path / "d.csv", index=False)
    with pytest.raises(ReprobookError, match=r"column 'label' not found .* columns are: x, y"):
        load_dataset(DataParams(source="csv:d.csv", target="label"), tmp_path)


def test_single_class_target():
    with pytest.raises(ReprobookError, match=r"'y' has a single class \[1\]"):
        infer_task(pd.Series([1, 1, 1], name="y"), "auto")


def test_float_target_is_regression_with_reason():
    task, reason = infer_task(pd.Series([0.5, 1.25, 3.0], name="price"), "auto")
    assert task == "regression" and "inferred" in reason


def test_a_repeated_header_column_is_refused_by_name(tmp_path):
    """pandas would rename the copy `approved.1`: a copy of the target would leak it as a feature."""
    path = tmp_path / "dup.csv"
    path.write_text("age,approved,income,approved\n30,1,100.0,1\n40,0,200.0,0\n")
    with pytest.raises(ReprobookError, match="repeats column 'approved'"):
        load_dataset(DataParams(source=f"csv:{path}", target="approved"), tmp_path)
