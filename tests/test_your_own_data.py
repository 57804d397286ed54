"""Bringing your own data: every error a new data set can raise names the key and the next step.

The data here is not the loan generator: scikit-learn's wine data written to
CSV/Parquet by the test, or small frames made by hand, as a user's file would be.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_wine

from reprobook import quality
from reprobook.errors import ReprobookError
from reprobook.ml.datasets import (
    INFERRED_SCHEMA,
    infer_task,
    load_dataset,
    load_saved_schema,
    schema_mismatch_error,
)
from reprobook.ml.error_analysis import fairness_gaps
from reprobook.project.params import DataParams, DeclaredParams, Params, UndeclaredParamError, parse_params

TEMPLATES = Path(__file__).resolve().parents[1] / "src" / "reprobook" / "project" / "templates" / "notebooks"
MISSING_ROWS = [3, 40, 150]


def _wine() -> pd.DataFrame:
    """The wine data as a user's export would have it: a 'cultivar' label and plain column names."""
    frame = load_wine(as_frame=True).frame.rename(columns={"target": "cultivar"})
    frame.columns = [str(c).replace("/", "_") for c in frame.columns]
    return frame


@pytest.fixture
def wine_csv(tmp_path: Path) -> Path:
    _wine().to_csv(tmp_path / "wine.csv", index=False)
    return tmp_path


@pytest.fixture
def wine_with_missing_labels(tmp_path: Path) -> Path:
    frame = _wine()
    frame["cultivar"] = frame["cultivar"].astype(float)
    frame.loc[MISSING_ROWS, "cultivar"] = np.nan
    frame.to_csv(tmp_path / "wine.csv", index=False)
    return tmp_path


def _error(call, *args, **kwargs) -> str:
    with pytest.raises(ReprobookError) as caught:
        call(*args, **kwargs)
    return str(caught.value)


# ---------------------------------------------------------------- missing target


def test_missing_target_error_offers_drop_missing_target(wine_with_missing_labels):
    message = _error(load_dataset, DataParams(source="csv:wine.csv", target="cultivar"), wine_with_missing_labels)
    assert "data.target: column 'cultivar' has 3 missing values" in message
    assert "set data.drop_missing_target: true in params.yaml to drop those rows" in message


def test_drop_missing_target_drops_and_counts_the_rows(wine_with_missing_labels):
    params = DataParams(source="csv:wine.csv", target="cultivar", drop_missing_target=True)
    dataset = load_dataset(params, wine_with_missing_labels)
    expected = pd.read_csv(wine_with_missing_labels / "wine.csv").drop(index=MISSING_ROWS).reset_index(drop=True)
    assert dataset.dropped_missing_target == len(MISSING_ROWS)
    pd.testing.assert_frame_equal(dataset.frame, expected)


def test_complete_target_drops_nothing(wine_csv):
    dataset = load_dataset(DataParams(source="csv:wine.csv", target="cultivar", drop_missing_target=True), wine_csv)
    assert dataset.dropped_missing_target == 0 and len(dataset.frame) == len(_wine())


def test_drop_missing_target_is_a_data_param_off_by_default():
    assert DataParams().drop_missing_target is False
    assert parse_params({"data": {"drop_missing_target": True}}).data.drop_missing_target is True


def test_target_missing_everywhere_points_at_data_target(tmp_path):
    pd.DataFrame({"x": [1.0, 2.0, 3.0], "label": [None, None, None]}).to_csv(tmp_path / "d.csv", index=False)
    params = DataParams(source="csv:d.csv", target="label", drop_missing_target=True)
    message = _error(load_dataset, params, tmp_path)
    assert "'label' is missing in all 3 rows" in message and "check that data.target in params.yaml" in message


def test_flag_is_read_only_when_a_target_is_missing(wine_with_missing_labels):
    """A stage that does not declare data.drop_missing_target still loads complete data."""
    _wine().to_csv(wine_with_missing_labels / "complete.csv", index=False)
    declared = ("data.source", "data.target", "data.n_rows", "data.seed", "data.drop_columns")

    def view(file: str) -> DeclaredParams:
        params = Params(data=DataParams(source=f"csv:{file}", target="cultivar"))
        return DeclaredParams(params, declared, "my_stage").data

    # roles=False: a stage like scoping, which needs the target only, leaves data.columns unread too
    assert load_dataset(view("complete.csv"), wine_with_missing_labels, roles=False).dropped_missing_target == 0
    with pytest.raises(UndeclaredParamError, match="add 'data.drop_missing_target' under the stage's params"):
        load_dataset(view("wine.csv"), wine_with_missing_labels, roles=False)
    with pytest.raises(UndeclaredParamError, match="add 'data.columns' under the stage's params"):
        load_dataset(view("complete.csv"), wine_with_missing_labels)


# ---------------------------------------------------------------- target and drop_columns


def test_absent_target_suggests_the_near_column_and_the_key(wine_csv):
    message = _error(load_dataset, DataParams(source="csv:wine.csv", target="Cultivar"), wine_csv)
    assert "column 'Cultivar' not found in csv:wine.csv (did you mean 'cultivar'?)" in message
    assert "columns are: alcohol, malic_acid" in message
    assert "set data.target in params.yaml to the label column" in message


def test_file_source_without_target_lists_the_columns(wine_csv):
    message = _error(load_dataset, DataParams(source="csv:wine.csv"), wine_csv)
    assert "set data.target in params.yaml to the label column, one of: alcohol, malic_acid" in message


def test_semicolon_separated_csv_is_explained(tmp_path):
    (tmp_path / "d.csv").write_text("a;b;label\n1;2;0\n3;4;1\n")
    message = _error(load_dataset, DataParams(source="csv:d.csv", target="label"), tmp_path)
    assert "';'" in message and "comma-separated" in message and "parquet:<path>" in message


def test_dropping_the_target_is_refused_clearly(wine_csv):
    params = DataParams(source="csv:wine.csv", target="cultivar", drop_columns=["proline", "cultivar"])
    message = _error(load_dataset, params, wine_csv)
    assert "data.drop_columns: lists 'cultivar', which is the target (data.target)" in message
    assert "remove it from data.drop_columns in params.yaml" in message


def test_absent_drop_columns_are_named_with_the_columns_that_exist(wine_csv):
    params = DataParams(source="csv:wine.csv", target="cultivar", drop_columns=["colour", "proline"])
    message = _error(load_dataset, params, wine_csv)
    assert "data.drop_columns: 'colour' not found in csv:wine.csv" in message
    assert "columns are: alcohol" in message and "color_intensity" in message
    assert "in data.drop_columns in params.yaml" in message


def test_wide_file_column_list_is_cut(tmp_path):
    pd.DataFrame({f"c{i}": [0, 1] for i in range(40)}).to_csv(tmp_path / "wide.csv", index=False)
    message = _error(load_dataset, DataParams(source="csv:wide.csv", target="label"), tmp_path)
    assert "c29, ... (10 more)" in message and "c39" not in message


def test_file_of_the_other_format_names_the_other_prefix(wine_csv):
    (wine_csv / "wine.parquet").write_bytes((wine_csv / "wine.csv").read_bytes())
    message = _error(load_dataset, DataParams(source="parquet:wine.parquet", target="cultivar"), wine_csv)
    assert "not a readable PARQUET file" in message and "set data.source: csv:wine.parquet in params.yaml" in message


def test_absent_file_says_where_to_put_it(tmp_path):
    message = _error(load_dataset, DataParams(source="parquet:data/raw/mine.parquet", target="y"), tmp_path)
    assert "mine.parquet not found" in message and "dvc pull" in message and "data.source in params.yaml" in message


def test_single_class_target_points_at_data_target():
    message = _error(infer_task, pd.Series(["red"] * 5, name="colour"), "auto")
    assert "single class ['red']" in message and "check that data.target in params.yaml" in message


# ---------------------------------------------------------------- schema


def _mismatch(tmp_path: Path, params: DataParams):
    """A schema of the wine data and a new export where 'alcohol' holds text and 'hue' is gone."""
    dataset = load_dataset(params, tmp_path)
    schema = quality.infer_schema(dataset.frame, label=dataset.target)
    changed = dataset.frame.drop(columns=["hue"]).astype({"alcohol": object})
    changed.loc[:4, "alcohol"] = "n/a"
    report = quality.validate(changed, schema)
    assert report.has_errors
    return report, dataset


def test_schema_mismatch_names_file_key_command_and_skip(wine_csv):
    params = DataParams(source="csv:data/raw/wine.csv", target="cultivar", schema_file="schemas/wine.yaml")
    (wine_csv / "data" / "raw").mkdir(parents=True)
    (wine_csv / "wine.csv").rename(wine_csv / "data" / "raw" / "wine.csv")
    report, dataset = _mismatch(wine_csv, params)
    message = str(schema_mismatch_error(report, dataset, params))
    assert message.startswith("data.schema_file: the data of csv:data/raw/wine.csv violates the schema schemas/wine.yaml")
    assert report.to_text() in message  # every anomaly, as validate reported it
    assert "reprobook infer-schema data/raw/wine.csv -o schemas/wine.yaml --label cultivar" in message
    assert "review it" in message
    assert "set data.schema_file: null in params.yaml to skip validation" in message


def test_a_dropped_column_the_saved_schema_still_lists_is_not_expected(wine_csv):
    full = load_dataset(DataParams(source="csv:wine.csv", target="cultivar"), wine_csv)
    quality.infer_schema(full.frame, label="cultivar").to_yaml(wine_csv / "s.yaml")
    params = DataParams(source="csv:wine.csv", target="cultivar", schema_file="s.yaml", drop_columns=["proline"])
    dataset = load_dataset(params, wine_csv)
    saved = load_saved_schema(dataset, params, wine_csv)
    assert "proline" not in saved.columns and "hue" in saved.columns
    assert not quality.validate(dataset.checked, saved).has_errors
    report, dataset = _mismatch(wine_csv, params)
    message = str(schema_mismatch_error(report, dataset, params))
    assert "delete the columns of data.drop_columns" not in message and f"cp {INFERRED_SCHEMA} s.yaml" in message


def test_schema_mismatch_of_a_generated_source_offers_the_inferred_schema(tmp_path):
    params = DataParams(source="sklearn:wine", schema_file="schemas/wine.yaml")
    report, dataset = _mismatch(tmp_path, params)
    message = str(schema_mismatch_error(report, dataset, params))
    assert f"cp {INFERRED_SCHEMA} schemas/wine.yaml" in message and "infer-schema DATA" not in message
    assert "data.schema_file: null" in message


def test_absent_schema_file_says_how_to_create_it(wine_csv):
    params = DataParams(source="csv:wine.csv", target="cultivar", schema_file="schemas/wine.yaml")
    dataset = load_dataset(params, wine_csv)
    message = _error(load_saved_schema, dataset, params, wine_csv)
    assert "data.schema_file: schema file" in message and "wine.yaml not found" in message
    assert "reprobook infer-schema wine.csv -o schemas/wine.yaml --label cultivar" in message
    assert "data.schema_file: null" in message
    quality.infer_schema(dataset.frame, label="cultivar").to_yaml(wine_csv / "schemas" / "wine.yaml")
    assert "cultivar" in load_saved_schema(dataset, params, wine_csv).columns


# ---------------------------------------------------------------- sensitive features


def test_absent_sensitive_feature_names_key_column_columns_and_fix():
    features = _wine().drop(columns=["cultivar"]).head(60)
    y = np.tile([0, 1], 30)
    message = _error(fairness_gaps, features, y, y, sensitive=["alcohl", "region"], task="classification",
                     min_group_size=5, numeric_bins=4)
    assert message.startswith("error_analysis.sensitive_features: columns 'alcohl', 'region' are not in the features")
    assert "(did you mean 'alcohol'?)" in message
    assert "available columns: alcohol, malic_acid" in message
    assert "in error_analysis.sensitive_features in params.yaml" in message


# ---------------------------------------------------------------- the data stage notebook


def _code(notebook: str) -> str:
    cells = json.loads((TEMPLATES / notebook).read_text())["cells"]
    assert all(not c.get("outputs") for c in cells if c["cell_type"] == "code"), "store notebooks without outputs"
    return "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")


def test_data_stage_reports_dropped_rows_and_uses_the_guiding_errors():
    code = _code("02_data.ipynb")
    assert '"dropped_missing_target": dataset.dropped_missing_target' in code  # reports/data/metrics.json
    assert "dataset.dropped_missing_target}" in code  # the printed summary
    assert "datasets.schema_mismatch_error(report, dataset, ctx.params.data)" in code
    assert "datasets.load_saved_schema(dataset, ctx.params.data, ctx.root)" in code


# ---------------------------------------------------------------- numbers with stray text


@pytest.fixture
def wine_with_stray_text(tmp_path: Path) -> Path:
    frame = _wine()
    frame["alcohol"] = frame["alcohol"].astype(object)
    frame.loc[[5, 77], "alcohol"] = ["?", "unknown"]
    frame.to_csv(tmp_path / "wine.csv", index=False)
    return tmp_path


def test_a_numeric_column_with_a_few_text_values_is_an_error_with_examples(wine_with_stray_text):
    message = _error(load_dataset, DataParams(source="csv:wine.csv", target="cultivar"), wine_with_stray_text)
    assert "csv:wine.csv: column 'alcohol' is numeric except 2 value(s) such as '?', 'unknown' (lines 7, 79)" in message
    assert "data.numeric_text" in message and "'missing'" in message


def test_numeric_text_missing_makes_them_missing_and_counts_them(wine_with_stray_text):
    params = DataParams(source="csv:wine.csv", target="cultivar", numeric_text="missing")
    dataset = load_dataset(params, wine_with_stray_text)
    assert dataset.numeric_text_to_missing == 2
    assert dataset.frame["alcohol"].dtype == "float64" and dataset.frame["alcohol"].isna().sum() == 2
    assert dataset.frame["alcohol"].iloc[0] == pytest.approx(_wine()["alcohol"].iloc[0])


def test_numeric_text_text_keeps_the_column_as_it_was_read(wine_with_stray_text):
    params = DataParams(source="csv:wine.csv", target="cultivar", numeric_text="text")
    dataset = load_dataset(params, wine_with_stray_text)
    assert dataset.numeric_text_to_missing == 0 and not pd.api.types.is_numeric_dtype(dataset.frame["alcohol"])


def test_a_real_text_column_is_not_mistaken_for_numbers(tmp_path):
    frame = _wine()
    frame["region"] = ["north", "south", "11"] * 59 + ["east"]
    frame.to_csv(tmp_path / "wine.csv", index=False)
    dataset = load_dataset(DataParams(source="csv:wine.csv", target="cultivar"), tmp_path)
    assert dataset.frame["region"].nunique() == 4
