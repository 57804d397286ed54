"""Column roles and the encoders built from them, on generated tables of every shape a user's file may have."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from reprobook.errors import ReprobookError
from reprobook.ml import encoders, estimators, persistence
from reprobook.ml.datasets import load_dataset, load_saved_schema
from reprobook.ml.features import xy
from reprobook.ml.roles import infer_roles, resolve
from reprobook.project.params import DataParams, ModelParams
from reprobook import quality

N = 3000


def shapes(n: int = N, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    words = np.array(["loan", "late", "paid", "car", "house", "repair", "salary", "bonus", "debt", "fee"])
    return pd.DataFrame({
        "id": rng.permutation(n) + 10_000,
        "row": np.arange(n),
        "uuid": [str(uuid.UUID(int=int(v))) for v in rng.integers(0, 2**62, n)],
        "event_time": pd.date_range("2022-01-01", periods=n, freq="53min").strftime("%Y-%m-%d %H:%M:%S"),
        "epoch": 1_650_000_000 + np.sort(rng.integers(0, 10**7, n)),
        "dealer": [f"d{v}" for v in rng.integers(0, 5000, n)],
        "grade": rng.choice(list("ABCD"), n),
        "note": [" ".join(rng.choice(words, 7)) for _ in range(n)],
        "constant": "same",
        "empty": np.nan,
        "vip": rng.choice(["yes", "no"], n),
        "income": rng.lognormal(10, 0.4, n).round(2),
        "age": rng.integers(18, 80, n),
        "label": rng.integers(0, 2, n),
    })


@pytest.fixture(scope="module")
def inferred() -> dict:
    return {name: found.role for name, found in infer_roles(shapes(), "label").items()}


@pytest.mark.parametrize("column,role", [
    ("id", "id"), ("row", "id"), ("uuid", "id"), ("event_time", "datetime"), ("epoch", "datetime"),
    ("dealer", "categorical"), ("grade", "categorical"), ("note", "text"), ("constant", "ignored"),
    ("empty", "ignored"), ("vip", "boolean"), ("income", "numeric"), ("age", "numeric"), ("label", "target"),
])
def test_each_shape_gets_its_role(inferred, column, role):
    assert inferred[column] == role


def test_every_role_comes_with_its_reason():
    found = infer_roles(shapes(), "label")
    assert "sequence" in found["row"].reason and "UUID" in found["uuid"].reason
    assert "parse as dates" in found["event_time"].reason and "epoch seconds" in found["epoch"].reason
    assert "constant" in found["constant"].reason and "empty" in found["empty"].reason
    assert "free text" in found["note"].reason


def test_names_of_many_words_unique_per_row_are_text_not_categories():
    rng = np.random.default_rng(1)
    names = [f"{a}, {t} {b}" for a, t, b in zip(rng.choice(["Braund", "Cumings", "Heikkinen"], 1309),
                                                  rng.choice(["Mr.", "Mrs.", "Miss"], 1309), rng.permutation(1309))]
    assert infer_roles(pd.DataFrame({"name": names}), None)["name"].role == "text"


def test_a_repeated_entity_key_is_an_id():
    rng = np.random.default_rng(2)
    frame = pd.DataFrame({"customer_id": rng.integers(0, 300, N), "amount": rng.normal(size=N)})
    assert infer_roles(frame, None)["customer_id"].role == "id"


def test_declared_roles_win_and_undeclared_ones_are_said():
    frame = shapes(200)
    roles, notes = resolve(frame, "label", {"income": "ignored", "grade": "categorical"}, ["uuid"])
    assert roles["income"] == "ignored" and roles["uuid"] == "ignored" and roles["label"] == "target"
    assert any(n.startswith("column 'age' has no role in data.columns") for n in notes)
    assert not any("'grade'" in n for n in notes)


def test_features_never_hold_ids_text_or_ignored(inferred):
    x, _ = xy(shapes(), "label", inferred)
    assert set(x.columns) == {"event_time", "epoch", "dealer", "grade", "vip", "income", "age"}


def test_encoded_width_stays_small_and_the_model_round_trips(tmp_path, inferred):
    frame = shapes()
    x, y = xy(frame, "label", inferred)
    params = ModelParams(params={"max_iter": 20})
    model = estimators.build_pipeline(x, params, "classification", inferred).fit(x, y)
    names = list(model.named_steps["preprocess"].get_feature_names_out())
    assert len(names) < 40, names  # 5,000 dealers and a timestamp per row: one and six columns, not thousands
    assert any(n.startswith("datetime__event_time_") for n in names)
    assert "high_cardinality__dealer" in names
    path = persistence.save_model(model, tmp_path / "model.skops")
    again = persistence.load_model(path)
    np.testing.assert_array_equal(again.predict_proba(x), model.predict_proba(x))


def test_datetimes_parse_at_serving_as_in_training_and_bad_values_become_missing(inferred):
    frame = shapes(500)
    x, y = xy(frame, "label", inferred)
    parts = encoders.DatetimeFeatures().fit(x[["event_time", "epoch"]])
    batch = x[["event_time", "epoch"]].head(3).copy()
    batch.loc[1, "event_time"] = "not a date"
    out = parts.transform(batch)
    assert np.isnan(out[1, 0]) and not np.isnan(out[0, 0])
    expected_days = (pd.Timestamp(frame.loc[0, "event_time"]) - pd.Timestamp("1970-01-01")).total_seconds() / 86400
    assert out[0, 0] == pytest.approx(expected_days)


def test_free_text_is_a_feature_only_when_asked(inferred):
    x, y = xy(shapes(800), "label", inferred, text=True)
    off = estimators.build_pipeline(x, ModelParams(params={"max_iter": 5}), "classification", inferred).fit(x, y)
    on = estimators.build_pipeline(x, ModelParams(params={"max_iter": 5}, text_encoder="tfidf"), "classification",
                                   inferred).fit(x, y)
    assert not any("note" in n for n in off.named_steps["preprocess"].get_feature_names_out())
    assert any(n.startswith("text_note__") for n in on.named_steps["preprocess"].get_feature_names_out())


def test_a_design_matrix_over_the_memory_limit_is_refused_naming_the_column(inferred):
    x, _ = xy(shapes(), "label", inferred)
    x["dealer"] = x["dealer"].str[:4]  # under 1,000 levels: one-hot encoded with onehot_max_levels 1000
    params = ModelParams(params={}, onehot_max_levels=1000, max_memory_mb=16)
    with pytest.raises(ReprobookError) as caught:
        estimators.build_pipeline(x, params, "classification", inferred)
    message = str(caught.value)
    assert message.startswith("model.max_memory_mb:") and "'dealer'" in message and "onehot_max_levels" in message


def test_dropping_a_column_is_one_edit_with_a_schema_file(tmp_path):
    frame = shapes(300)
    frame.to_csv(tmp_path / "data.csv", index=False)
    quality.infer_schema(frame, label="label").to_yaml(tmp_path / "schema.yaml")
    for params in (DataParams(source="csv:data.csv", target="label", drop_columns=["grade"], schema_file="schema.yaml"),
                   DataParams(source="csv:data.csv", target="label", columns={"grade": "ignored"},
                              schema_file="schema.yaml")):
        dataset = load_dataset(params, tmp_path)
        assert "grade" not in dataset.checked.columns and "grade" in dataset.dropped
        assert dataset.roles["grade"] == "ignored" and "grade" in dataset.frame.columns  # kept for the champion
        report = quality.validate(dataset.checked, load_saved_schema(dataset, params, tmp_path), policy=params.validation)
        assert not report.has_errors, report.to_text()


def test_a_role_for_a_column_the_data_lacks_is_named(tmp_path):
    shapes(100).to_csv(tmp_path / "data.csv", index=False)
    with pytest.raises(ReprobookError, match="data.columns: 'incom' has a role .*did you mean 'income'"):
        load_dataset(DataParams(source="csv:data.csv", target="label", columns={"incom": "numeric"}), tmp_path)


def test_preflight_refuses_a_design_over_the_memory_limit_from_the_raw_file(tmp_path):
    from reprobook.project.params import Params
    from reprobook.project.preflight import design_problems

    frame = shapes()
    frame["dealer"] = frame["dealer"].str[:4]  # under 1,000 levels
    (tmp_path / "data").mkdir()
    frame.to_csv(tmp_path / "data" / "t.csv", index=False)
    roles = {name: found.role for name, found in infer_roles(frame, "label").items()}
    data = {"source": "csv:data/t.csv", "target": "label", "columns": roles}
    wide = Params.model_validate({"data": data, "model": {"onehot_max_levels": 1000, "max_memory_mb": 16}})
    problems = design_problems(tmp_path, wide)
    assert len(problems) == 1 and problems[0].startswith("model.max_memory_mb:") and "'dealer'" in problems[0]
    assert design_problems(tmp_path, Params.model_validate({"data": data, "model": {"max_memory_mb": 16}})) == []
