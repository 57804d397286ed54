"""Validation: every anomaly kind is found on crafted data and absent on clean data."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from reprobook.errors import ReprobookError
from reprobook.quality import ANOMALY_KINDS, ValidationPolicy, infer_schema, validate


def clean(n: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "age": rng.integers(18, 70, n),
        "income": rng.normal(50_000, 5_000, n),
        "region": rng.choice(["north", "south", "east"], n),
        "approved": rng.integers(0, 2, n),
    })


@pytest.fixture()
def schema():
    return infer_schema(clean(), label="approved")


def kinds(report) -> set[str]:
    return {a.kind for a in report.anomalies}


def only(report, kind: str):
    found = [a for a in report.anomalies if a.kind == kind]
    assert len(found) == 1, report.to_text()
    return found[0]


def test_clean_data_has_no_anomalies(schema):
    report = validate(clean(seed=0), schema)
    assert report.anomalies == [] and not report.has_errors
    serving = validate(clean().drop(columns="approved"), schema, environment="SERVING")
    assert serving.anomalies == []


def test_every_anomaly_is_reported_not_just_the_first(schema):
    df = clean()
    df.loc[0:4, "age"] = 150
    df["region"] = df["region"].astype(object)
    df.loc[5:7, "region"] = "mars"
    df = df.drop(columns="income")
    report = validate(df, schema)
    assert {"out_of_range", "unexpected_category", "missing_column"} <= kinds(report)
    assert report.has_errors  # a missing column is an error by default


def test_missing_and_unexpected_columns(schema):
    df = clean().drop(columns="income").assign(extra=1)
    report = validate(df, schema)
    missing = only(report, "missing_column")
    assert missing.column == "income" and missing.severity == "error" and "income" in missing.message
    assert only(report, "unexpected_column").column == "extra"


def test_label_in_serving_data_is_unexpected(schema):
    anomaly = only(validate(clean(), schema, environment="SERVING"), "unexpected_column")
    assert anomaly.column == "approved" and "TRAINING" in anomaly.message


def test_text_in_numeric_column_is_a_type_mismatch_with_examples(schema):
    df = clean()
    df["income"] = df["income"].astype(object)
    df.loc[[3, 9], "income"] = ["n/a", "lots"]
    anomaly = only(validate(df, schema), "type_mismatch")
    assert anomaly.column == "income" and anomaly.count == 2 and anomaly.examples == ["n/a", "lots"]
    assert anomaly.share == pytest.approx(2 / 200) and anomaly.severity == "error"


def test_fractions_in_integer_column_are_a_type_mismatch(schema):
    df = clean()
    df["age"] = df["age"].astype(float)
    df.loc[0, "age"] = 30.5
    anomaly = only(validate(df, schema), "type_mismatch")
    assert anomaly.column == "age" and anomaly.examples == [30.5]


def test_out_of_range_counts_and_message(schema):
    df = clean()
    df.loc[[1, 2, 3], "age"] = [5, 200, 200]
    anomaly = only(validate(df, schema), "out_of_range")
    assert anomaly.count == 3 and anomaly.examples == [5, 200] and anomaly.severity == "warning"
    assert "'age'" in anomaly.message and "from 5 to 200" in anomaly.message


def test_unexpected_categories_listed_by_frequency(schema):
    df = clean()
    df.loc[0:9, "region"] = "mars"
    df.loc[10, "region"] = "venus"
    anomaly = only(validate(df, schema), "unexpected_category")
    assert anomaly.count == 11 and anomaly.examples == ["mars", "venus"]


def test_presence_below_minimum(schema):
    df = clean()
    df.loc[0:49, "income"] = np.nan
    anomaly = only(validate(df, schema), "presence_below_minimum")
    assert anomaly.column == "income" and anomaly.count == 50 and anomaly.share == 0.25
    assert "100%" in anomaly.message and "75%" in anomaly.message


def test_all_missing_column_is_reported(schema):
    df = clean()
    df["income"] = np.nan
    anomaly = only(validate(df, schema), "presence_below_minimum")
    assert anomaly.share == 1.0


def test_infinity_in_numeric_column(schema):
    df = clean()
    df.loc[[0, 1], "income"] = [np.inf, -np.inf]
    report = validate(df, schema)
    anomaly = only(report, "non_finite")
    assert anomaly.count == 2 and anomaly.severity == "error"
    assert json.loads(json.dumps(report.to_dict(), allow_nan=False))["anomalies"][0]["examples"] == ["inf", "-inf"]


def test_duplicate_rows(schema):
    df = pd.concat([clean(), clean().iloc[:3]], ignore_index=True)
    anomaly = only(validate(df, schema), "duplicate_rows")
    assert anomaly.column is None and anomaly.count == 3 and anomaly.examples == [200, 201, 202]


def test_empty_data_set(schema):
    report = validate(clean().iloc[:0], schema)
    assert kinds(report) == {"empty_dataset"} and report.has_errors


def test_policy_changes_severity_and_can_ignore(schema):
    df = clean()
    df.loc[0, "region"] = "mars"
    strict = validate(df, schema, policy=ValidationPolicy(unexpected_category="error"))
    assert strict.has_errors
    assert validate(df, schema, policy=ValidationPolicy(unexpected_category="ignore")).anomalies == []
    with pytest.raises(ValidationError):
        ValidationPolicy(unexpected_categroy="error")
    assert set(ValidationPolicy().model_dump()) - {"max_examples"} == set(ANOMALY_KINDS)


def test_unknown_environment_is_an_error(schema):
    with pytest.raises(ReprobookError, match="PROD"):
        validate(clean(), schema, environment="PROD")


def test_report_renderings_name_the_columns(schema, tmp_path):
    df = clean()
    df.loc[0, "region"] = "mars"
    report = validate(df.drop(columns="income"), schema)
    assert "income" in report.to_text() and "region" in report.to_text()
    html = report.to_html(tmp_path / "v.html").read_text()
    assert "income" in html and "mars" in html and "<script" not in html
    assert report.to_dict()["valid"] is False


def test_duplicates_need_every_column_equal():
    df = pd.DataFrame({"x": [1.0, 1.0, np.nan, np.nan], "t": ["a", "b", None, None]})
    schema = infer_schema(df)
    anomaly = only(validate(df, schema), "duplicate_rows")
    assert anomaly.count == 1 and anomaly.examples == [3]  # the two all-missing rows; 'a' != 'b'
    text_only = pd.DataFrame({"t": ["a", "b", "a"]})
    assert only(validate(text_only, infer_schema(text_only)), "duplicate_rows").examples == [2]
