"""End to end: the real pipeline (DVC + papermill + MLflow) in a temporary git repository.

One project copy runs the default pipeline through `reprobook run`; the tests
then check its reports, metrics, MLflow record and registry, DVC's change
detection, determinism against the committed dvc.lock and metrics, and a
queued DVC experiment logging to the same store.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from conftest import BIN, ROOT, copy_project, set_params, sh

pytestmark = pytest.mark.e2e

STAGES = ("scoping", "data", "modeling", "error_analysis")


def mlflow_client(root: Path):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{root}/mlflow.db")


def stage_runs(root: Path, stage: str | None = None) -> list:
    client = mlflow_client(root)
    experiment = client.get_experiment_by_name("reprobook")
    query = f"tags.`reprobook.stage` = '{stage}'" if stage else "tags.`reprobook.stage` != 'pipeline'"
    return client.search_runs([experiment.experiment_id], filter_string=query, order_by=["attributes.start_time ASC"])


def lock_outs(root: Path) -> dict[str, str]:
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    return {out["path"]: out["md5"] for stage in lock["stages"].values() for out in stage.get("outs", [])}


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> dict:
    root = copy_project(tmp_path_factory.mktemp("e2e") / "project")
    result = sh([str(BIN / "reprobook"), "run"], root)
    return {"root": root, "output": result.stdout + result.stderr}


def test_run_reports_every_stage_and_where_to_look(pipeline):
    root = pipeline["root"]
    for stage in STAGES:
        for name in ("notebook.ipynb", "notebook.html", "metrics.json"):
            assert (root / "reports" / stage / name).is_file(), f"reports/{stage}/{name} missing"
    assert "mlflow ui" in pipeline["output"] and "reports" in pipeline["output"]
    executed = json.loads((root / "reports/modeling/notebook.ipynb").read_text())
    assert any(cell.get("outputs") for cell in executed["cells"] if cell["cell_type"] == "code")
    assert "injected-parameters" in json.dumps(executed)


def test_metrics_beat_dummy_baseline(pipeline):
    metrics = json.loads((pipeline["root"] / "reports/modeling/metrics.json").read_text())
    comparison = metrics["comparison"]
    assert comparison["beats_baseline"] and comparison["value"] > comparison["baseline_score"] + 0.1
    assert 0.6 < metrics["test"]["roc_auc"] < 0.99  # label noise: no model scores 1.0
    timings = json.loads((pipeline["root"] / "reports/modeling/timings.json").read_text())
    assert timings["latency_p95_ms"] > 0 and timings["throughput_rows_per_s"] > 0


def test_one_mlflow_run_per_stage_with_the_record(pipeline):
    root = pipeline["root"]
    client = mlflow_client(root)
    runs = stage_runs(root)
    assert [r.data.tags["reprobook.stage"] for r in runs] == list(STAGES)
    parent = {r.data.tags["mlflow.parentRunId"] for r in runs}
    assert len(parent) == 1, "the stage runs of one pipeline execution share one parent"
    assert client.get_run(parent.pop()).data.tags["reprobook.stage"] == "pipeline"
    commit = sh(["git", "rev-parse", "HEAD"], root).stdout.strip()
    for run in runs:
        tags, params = run.data.tags, run.data.params
        assert run.info.status == "FINISHED"
        assert tags["reprobook.git_commit"] == commit and tags["reprobook.git_dirty"] in ("true", "false")
        assert params["seed.data.seed"] == "42" and params["data.source"] == "builtin:loans"
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "record")}
        assert {"record/environment.json", "record/inputs.json", "record/params.yaml", "record/code.json"} <= artifacts
        notebook = {a.path for a in client.list_artifacts(run.info.run_id, "notebook")}
        assert {"notebook/notebook.ipynb", "notebook/notebook.html"} <= notebook
    modeling = runs[2]
    assert modeling.data.params["model.params.max_depth"] == "4"
    assert modeling.data.metrics["test.roc_auc"] > modeling.data.metrics["comparison.baseline_score"]
    assert len(modeling.data.tags["reprobook.prediction_digest"]) == 64
    env = json.loads(client.download_artifacts(modeling.info.run_id, "record/environment.json", str(root / ".tmp-env")) and
                     (root / ".tmp-env/environment.json").read_text())
    assert env["packages"]["mlflow"] == "3.17.2" and env["python"].startswith("3.11")
    inputs = json.loads(client.download_artifacts(modeling.info.run_id, "record/inputs.json", str(root / ".tmp-in")) and
                        (root / ".tmp-in/inputs.json").read_text())
    assert inputs["data/processed/train.parquet"]["md5"] == lock_outs(root)["data/processed/train.parquet"]


def test_model_registered_with_alias_and_signature(pipeline):
    import mlflow

    root = pipeline["root"]
    client = mlflow_client(root)
    version = client.get_model_version_by_alias("loans-approval", "challenger")
    assert client.get_model_version_by_alias("loans-approval", "champion").version == version.version
    assert version.tags["reprobook.promotion"] == "champion"
    assert "no champion yet" in version.tags["reprobook.promotion_reason"]
    mlflow.set_tracking_uri(f"sqlite:///{root}/mlflow.db")
    info = mlflow.models.get_model_info(f"models:/loans-approval@challenger")
    assert info.signature is not None and info.saved_input_example_info is not None


def test_quality_metrics_and_split_hashes_equal_committed(pipeline):
    """Determinism: a fresh run reproduces the committed dvc.lock hashes and metrics."""
    root = pipeline["root"]
    committed = lock_outs(ROOT)
    produced = lock_outs(root)
    for split in ("data/processed/train.parquet", "data/processed/test.parquet"):
        assert produced[split] == committed[split], f"{split} hash differs from the committed dvc.lock"
    for stage in STAGES:
        path = f"reports/{stage}/metrics.json"
        assert (root / path).read_text() == (ROOT / path).read_text(), f"{path} differs from the committed one"
    assert not sh(["git", "status", "--porcelain", "reports"], root).stdout.strip(), "committed outputs changed"


def test_notebooks_pass_nbval_and_match_the_pipeline(pipeline):
    """Run top to bottom as in Jupyter (params from params.yaml), each notebook gives the pipeline's result."""
    root = pipeline["root"]
    before = {stage: (root / f"reports/{stage}/metrics.json").read_text() for stage in STAGES}
    split_before = (root / "data/processed/test.parquet").read_bytes()
    result = sh([str(BIN / "python"), "-m", "pytest", "-n", "0", "-p", "no:cacheprovider", "--nbval-lax", "-q", "notebooks"], root, check=False)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "4 passed" in result.stdout or "passed" in result.stdout
    for stage in STAGES:
        assert (root / f"reports/{stage}/metrics.json").read_text() == before[stage], f"{stage} differs when run interactively"
    assert (root / "data/processed/test.parquet").read_bytes() == split_before
    sh([str(BIN / "dvc"), "checkout", "--force"], root)  # restore the executed-notebook outputs DVC tracks


def test_second_repro_is_a_noop(pipeline):
    root = pipeline["root"]
    before = len(stage_runs(root))
    result = sh([str(BIN / "dvc"), "repro"], root)
    assert "Running stage" not in result.stdout
    assert len(stage_runs(root)) == before


def test_model_param_change_reruns_modeling_and_error_analysis_only(pipeline):
    root = pipeline["root"]
    set_params(root, **{"model.params.max_depth": 3})
    result = sh([str(BIN / "dvc"), "repro"], root)
    ran = [stage for stage in STAGES if f"Running stage '{stage}'" in result.stdout]
    assert ran == ["modeling", "error_analysis"], result.stdout
    latest = stage_runs(root, "modeling")[-1]
    assert latest.data.params["model.params.max_depth"] == "3"
    set_params(root, **{"model.params.max_depth": 4})
    sh([str(BIN / "dvc"), "repro"], root)


def test_predictions_equal_committed_digest(pipeline):
    """Two runs (the committed reference run and this one) make byte-identical predictions."""
    root = pipeline["root"]
    digest = "reports/modeling/digest.json"
    produced = json.loads((root / digest).read_text())
    assert produced == json.loads((ROOT / digest).read_text())
    first_modeling_run = stage_runs(root, "modeling")[0]
    assert first_modeling_run.data.tags["reprobook.prediction_digest"] == produced["prediction_digest"]


def test_dvc_metrics_and_plots_commands_work(pipeline):
    root = pipeline["root"]
    shown = sh([str(BIN / "dvc"), "metrics", "show", "--json"], root).stdout
    assert "roc_auc" in shown
    sh([str(BIN / "dvc"), "metrics", "diff"], root)
    plots = sh([str(BIN / "dvc"), "plots", "show", "-o", str(root / ".plots")], root)
    assert (root / ".plots" / "index.html").is_file(), plots.stdout + plots.stderr


def test_queued_experiment_logs_to_project_store(pipeline):
    root = pipeline["root"]
    sh(["git", "add", "-A"], root)
    sh(["git", "commit", "-qm", "after first run"], root)
    sh([str(BIN / "dvc"), "exp", "run", "--queue", "-S", "model.params.max_depth=2"], root)
    sh([str(BIN / "dvc"), "queue", "start", "-j", "1"], root)
    import time

    deadline = time.time() + 300
    while time.time() < deadline:
        status = sh([str(BIN / "dvc"), "queue", "status"], root).stdout
        if "Queued" not in status and "Running" not in status:
            break
        time.sleep(2)
    assert "Success" in status, status
    runs = [r for r in stage_runs(root, "modeling") if r.data.params.get("model.params.max_depth") == "2"]
    assert runs, "the queued experiment's modeling run is missing from the project's mlflow.db"
    assert runs[-1].data.tags.get("reprobook.dvc_exp_name")
