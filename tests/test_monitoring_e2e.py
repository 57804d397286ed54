"""Life after deployment, end to end: train, simulate production batches, monitor each, retrain.

Real components throughout: the pipeline (DVC, papermill, MLflow on SQLite)
trains and registers the champion; `reprobook simulate` writes seeded batches
of named scenarios; `reprobook monitor` runs the 05_monitoring notebook for each
batch in a fresh kernel and records an MLflow run; `reprobook retrain` adds the
labelled rows to the DVC-tracked training data and runs the pipeline again.
Every command is the installed console script.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient

from conftest import BIN, copy_project, set_params, sh

SCHEDULE = "none:2,covariate_sudden:1,broken_column:1,concept_drift:1"
NONE_1, NONE_2, SHIFT, BROKEN, CONCEPT = 1, 2, 3, 4, 5


def reprobook(root: Path, *args: str, check: bool = False):
    return sh([str(BIN / "reprobook"), *args], root, check=check)


def client(root: Path) -> MlflowClient:
    uri = f"sqlite:///{root / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


@pytest.fixture(scope="module")
def deployed(tmp_path_factory) -> Path:
    """A project whose champion was trained on little data (so more data can beat it), and its batches."""
    root = copy_project(tmp_path_factory.mktemp("monitoring") / "project")
    set_params(root, **{"data.n_rows": 2500, "model.cv_folds": 2, "model.latency_rows": 20,
                        "model.params.max_iter": 40})
    sh(["git", "commit", "-qam", "small data"], root)
    reprobook(root, "run", check=True)
    reprobook(root, "simulate", "batches", "--schedule", SCHEDULE, "--rows", "2500", "--seed", "5",
              "--shift-sd", "1.0", check=True)
    return root


def batch(root: Path, index: int) -> str:
    return str(root / "batches" / f"batch-{index:03d}.parquet")


def labels(root: Path, index: int) -> str:
    return str(root / "batches" / f"labels-{index:03d}.csv")


@pytest.fixture(scope="module")
def monitored(deployed: Path) -> dict[int, tuple[int, dict]]:
    """Each batch monitored once (labels for the unchanged and the concept-drift batches): exit code and report."""
    found = {}
    for index in (NONE_1, NONE_2, SHIFT, BROKEN, CONCEPT):
        extra = ["--labels", labels(deployed, index)] if index in (NONE_1, NONE_2, CONCEPT) else []
        done = reprobook(deployed, "monitor", batch(deployed, index), *extra, "--format", "json")
        assert done.returncode in (0, 1) and done.stdout.strip(), f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
        found[index] = (done.returncode, json.loads(done.stdout))
    return found


def test_an_unchanged_batch_is_healthy_with_estimate_and_realized_performance(monitored):
    code, report = monitored[NONE_1]
    assert (code, report["verdict"]) == (0, "healthy"), report["findings"]
    metrics = report["metrics"]
    assert metrics["labelled_rows"] == 2500
    estimated, realized = metrics["estimated"]["roc_auc"], metrics["realized"]["roc_auc"]
    assert estimated["low"] < estimated["value"] < estimated["high"]
    assert abs(estimated["value"] - realized["value"]) < 0.05


def test_a_covariate_shift_is_watched_naming_the_drifted_features(monitored):
    code, report = monitored[SHIFT]
    assert code == 1 and report["verdict"] in ("watch", "retrain")
    drifted = set(report["drift"]["drifted_columns"])
    assert {"credit_score", "debt_to_income"} <= drifted
    assert any(f["check"] == "feature drift" and "credit_score" in f["columns"] for f in report["findings"])


def test_a_broken_upstream_column_is_named(monitored):
    code, report = monitored[BROKEN]
    assert code == 1
    concerned = {c for f in report["findings"] for c in f["columns"]}
    assert "income" in concerned
    assert any(a["column"] == "income" and a["kind"] == "out_of_range" for a in report["quality"]["anomalies"])


def test_concept_drift_shows_as_realized_below_the_estimate(monitored):
    code, report = monitored[CONCEPT]
    assert code == 1 and report["verdict"] in ("watch", "retrain")
    # The features did not move (beyond the drift test's false-alarm rate): the label relation did.
    assert not {"credit_score", "debt_to_income"} & set(report["drift"]["drifted_columns"])
    assert any(f["check"] == "concept drift" for f in report["findings"]), report["findings"]
    realized = report["metrics"]["realized"]["roc_auc"]["value"]
    assert realized < report["metrics"]["estimated"]["roc_auc"]["low"]


def test_each_batch_is_an_mlflow_run_charted_by_batch_index(deployed, monitored):
    runs = client(deployed).search_runs(
        [client(deployed).get_experiment_by_name("reprobook").experiment_id],
        filter_string="tags.`reprobook.stage` = 'monitoring'")
    by_index = {int(r.data.tags["reprobook.batch_index"]): r for r in runs}
    assert sorted(by_index) == [1, 2, 3, 4, 5]
    for index, run in by_index.items():
        assert run.info.status == "FINISHED"
        assert run.data.tags["reprobook.batch_digest"] == monitored[index][1]["batch"]["digest"]
        assert run.data.tags["reprobook.model_version"] == "1"
        assert run.data.tags["reprobook.monitoring.verdict"] == monitored[index][1]["verdict"]
        assert "mlflow.parentRunId" not in run.data.tags  # a batch is not part of a pipeline run
        history = client(deployed).get_metric_history(run.info.run_id, "drift.drifted_features")
        assert [m.step for m in history] == [index]
        artifacts = {a.path for a in client(deployed).list_artifacts(run.info.run_id, "notebook")}
        assert {"notebook/notebook.ipynb", "notebook/notebook.html"} <= artifacts


def test_history_summary_and_capture_are_kept_per_batch(deployed, monitored):
    history = pd.read_csv(deployed / "monitoring" / "history.csv")
    assert history["batch"].tolist() == [1, 2, 3, 4, 5]
    assert history["verdict"].tolist() == [monitored[i][1]["verdict"] for i in range(1, 6)]
    summary = (deployed / "monitoring" / "summary.html").read_text()
    assert "data:image/png;base64," in summary and "batch-0005.html" in summary
    assert all((deployed / "reports" / "monitoring" / "batches" / f"batch-{i:04d}.html").is_file() for i in range(1, 6))
    capture = pd.read_parquet(deployed / "monitoring" / "captures" / "batch-001.parquet")
    assert {"id", "prediction", "score", "model_version", "batch_digest"} <= set(capture.columns)
    assert capture["id"].is_unique and len(capture) == 2500
    assert set(capture["model_version"]) == {"1"}


def test_monitoring_the_same_batch_again_keeps_its_index_and_labels(deployed, monitored):
    done = reprobook(deployed, "monitor", batch(deployed, NONE_2), "--format", "json")
    again = json.loads(done.stdout)
    assert again["index"] == NONE_2
    assert again["batch"]["labelled_rows"] == 2500  # the labels it was monitored with before
    assert len(list((deployed / "monitoring" / "history").glob("batch-*.json"))) == 5


def test_predict_writes_a_capture_that_labels_join_on(deployed, monitored, tmp_path):
    out = tmp_path / "capture.parquet"
    done = reprobook(deployed, "predict", batch(deployed, NONE_1), "--model", "reprobook-loans@champion",
                     "--out", str(out), check=True)
    assert done.stdout.strip() == str(out)
    capture = pd.read_parquet(out)
    truth = pd.read_csv(labels(deployed, NONE_1))
    joined = capture.merge(truth, on="id")
    assert len(joined) == len(capture) == 2500
    assert ((joined["score"] >= 0.5).astype(int) == joined["prediction"]).all()


@pytest.mark.parametrize("case", ["missing column", "empty batch", "labels of another batch", "unknown alias"])
def test_bad_input_is_one_message_and_changes_nothing(deployed, monitored, tmp_path, case):
    source = pd.read_parquet(batch(deployed, NONE_1))
    args, expected = [str(tmp_path / "batch.parquet")], ""
    if case == "missing column":
        source.drop(columns=["credit_score"]).to_parquet(args[0], index=False)
        expected = "credit_score"
    elif case == "empty batch":
        source.head(0).to_parquet(args[0], index=False)
        expected = "no rows"
    elif case == "labels of another batch":
        source.to_parquet(args[0], index=False)
        other = pd.read_csv(labels(deployed, CONCEPT))
        other.to_csv(tmp_path / "labels.csv", index=False)
        args += ["--labels", str(tmp_path / "labels.csv")]
        expected = "match a row"
    else:
        source.to_parquet(args[0], index=False)
        args += ["--model", "reprobook-loans@nonexistent"]
        expected = "@champion"
    before = sorted((deployed / "monitoring" / "history").iterdir())
    runs_before = len(client(deployed).search_runs([client(deployed).get_experiment_by_name("reprobook").experiment_id]))
    done = reprobook(deployed, "monitor", *args)
    assert done.returncode == 2, done.stderr
    assert expected in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert sorted((deployed / "monitoring" / "history").iterdir()) == before
    assert len(client(deployed).search_runs([client(deployed).get_experiment_by_name("reprobook").experiment_id])) == runs_before


def test_retrain_on_labelled_batches_promotes_a_better_challenger(deployed, monitored):
    registry = client(deployed)
    before = registry.get_model_version_by_alias("reprobook-loans", "champion").version
    done = reprobook(deployed, "retrain", "--batch", str(NONE_1), "--batch", str(NONE_2), check=True)
    assert "retrained on 5000 labelled production row(s) of batch(es) 1, 2" in done.stdout
    assert (deployed / "data" / "production" / "labelled.parquet.dvc").is_file()
    challenger = registry.get_model_version_by_alias("reprobook-loans", "challenger")
    assert int(challenger.version) > int(before)
    assert registry.get_model_version_by_alias("reprobook-loans", "champion").version == challenger.version, \
        challenger.tags.get("reprobook.promotion_reason")
    processed = pd.read_parquet(deployed / "data" / "processed" / "train.parquet")
    assert len(processed) > 2000  # the production rows joined the training data
    # The new champion is what monitoring now scores with, against its own reference.
    report = json.loads(reprobook(deployed, "monitor", batch(deployed, SHIFT), "--format", "json").stdout)
    assert report["model"]["version"] == str(challenger.version)
