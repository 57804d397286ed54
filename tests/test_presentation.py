"""What the MLflow UI shows: names, notes, experiment tags and dataset inputs (the pure parts; the
server-backed check is in test_team_e2e.py)."""

import hashlib
import json

import pandas as pd
import pytest

from reprobook.tracking import presentation as ui


def test_pipeline_runs_are_named_after_what_differs():
    assert ui.short_overrides(["model.hyperparameters.max_depth=6"]) == "max_depth=6"
    # The last part alone would be ambiguous: both keys stay whole.
    assert ui.short_overrides(["model.a.seed=1", "data.seed=2"]) == "model.a.seed=1, data.seed=2"
    assert ui.pipeline_name(overrides="max_depth=6", experiment="fuzzy-bees", commit="abcdef123") == "max_depth=6"
    assert ui.pipeline_name(experiment="fuzzy-bees", commit="abcdef123") == "fuzzy-bees"
    assert ui.pipeline_name(commit="abcdef1234567") == "commit abcdef1"
    assert ui.pipeline_name(commit="abcdef1234567", dirty=True) == "commit abcdef1 + uncommitted changes"
    assert ui.pipeline_name(reproduction_of="0123456789abcdef", overrides="x=1") == "reproduction of 01234567"
    token = "ghp_" + "R8zq1XkL" * 4 + "abcd"
    assert token not in ui.pipeline_name(overrides=ui.short_overrides([f"model.registered_name={token}"]))
    assert ui.stage_name("modeling", "max_depth=6") == "modeling · max_depth=6"
    assert ui.stage_name("modeling", None, "0123456789") == "modeling · reproduction of 01234567"
    assert ui.batch_name(3, "loans v2 (@champion)") == "monitoring · batch 3 · loans v2 (@champion)"


def test_the_experiment_is_a_training_experiment_and_a_users_description_stays():
    wanted = ui.experiment_tags("loans", "classification", "approved", "loans-model")
    assert wanted[ui.TAG_EXPERIMENT_KIND] == "custom_model_development"
    assert "classification of `approved`" in wanted[ui.TAG_NOTE] and "reprobook reproduce" in wanted[ui.TAG_NOTE]
    token = "ghp_" + "R8zq1XkL" * 4 + "abcd"  # a registered name that is a secret never reaches the description
    assert token not in ui.experiment_tags("loans", "classification", "approved", token)[ui.TAG_NOTE]
    assert ui.missing_experiment_tags({}, wanted) == wanted
    assert ui.missing_experiment_tags(wanted, wanted) == {}
    mine = {ui.TAG_NOTE: "my own notes", ui.TAG_EXPERIMENT_KIND: "forecasting"}
    assert ui.missing_experiment_tags(mine, wanted) == {}
    stale = {ui.TAG_NOTE: ui.NOTE_MARK + " an older description", ui.TAG_EXPERIMENT_KIND: "custom_model_development"}
    assert ui.missing_experiment_tags(stale, wanted) == {ui.TAG_NOTE: wanted[ui.TAG_NOTE]}


def test_the_primary_metric_sorts_first_and_the_note_says_the_verdict(monkeypatch):
    metrics = {"comparison": {"primary_metric": "roc_auc", "value": 0.9, "baseline_score": 0.5, "beats_baseline": True,
                              "meets_threshold": True, "suspicious": False}, "cv": {"roc_auc_mean": 0.88}}
    primary = ui.primary_metrics(metrics)
    assert primary == {"_primary.test_roc_auc": 0.9, "_primary.cv_roc_auc_mean": 0.88}
    assert sorted([*primary, "comparison.baseline_score", "accuracy"])[:2] == sorted(primary)
    monkeypatch.setenv("MY_API_TOKEN", "s3cr3t-value-123456")
    note = ui.stage_note("modeling", "abc123", metrics, promotion={
        "model": "loans", "version": "2", "decision": "@champion", "reason": "first version; key s3cr3t-value-123456"})
    assert "roc_auc 0.9000 on the test rows; beats the baseline (0.5000) by +0.4000" in note
    assert "version 2: **@champion**" in note and "reprobook reproduce abc123" in note
    assert "s3cr3t-value-123456" not in note
    failed = ui.stage_note("data", "abc", {}, error="cell 3: ValueError: bad\ntraceback...")
    assert "**data FAILED**: cell 3: ValueError: bad" in failed and "traceback" not in failed


def test_datasets_carry_the_dvc_md5_schema_and_rows(tmp_path):
    frame = pd.DataFrame({"age": [30, 40, 50], "income": [1.5, 2.5, None], "city": ["a", "b", "c"]})
    (tmp_path / "data" / "processed").mkdir(parents=True)
    parquet = tmp_path / "data" / "processed" / "train.parquet"
    frame.to_parquet(parquet)
    csv = tmp_path / "batch.csv"
    frame.to_csv(csv, index=False)
    inputs = ui.dataset_inputs(tmp_path, [(parquet, ui.data_context("data/processed/train.parquet")),
                                          (csv, "batch"), (tmp_path / "missing.csv", "batch")], {})
    assert len(inputs) == 2
    train, batch = (i.dataset for i in inputs)
    assert train.digest == hashlib.md5(parquet.read_bytes()).hexdigest()
    assert json.loads(train.source) == {"uri": "data/processed/train.parquet", "dvc_md5": train.digest}
    assert [c["name"] for c in json.loads(train.schema)["mlflow_colspec"]] == ["age", "income", "city"]
    assert [c["type"] for c in json.loads(batch.schema)["mlflow_colspec"]] == ["long", "double", "string"]
    assert json.loads(train.profile)["num_rows"] == 3 and json.loads(batch.profile)["num_rows"] == 3
    assert [t.value for i in inputs for t in i.tags] == ["training", "batch"]


@pytest.mark.parametrize("path, context", [("data/processed/test.parquet", "test"), ("data/raw/loans.csv", "source"),
                                           ("data/production/rows.parquet", "production")])
def test_data_contexts(path, context):
    assert ui.data_context(path) == context
