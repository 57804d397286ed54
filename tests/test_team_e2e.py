"""The team set-up, with real servers on 127.0.0.1: `reprobook server` (PostgreSQL from pgserver and
`mlflow server` serving artifacts into an S3 bucket), an S3 DVC remote (moto in server mode), and
everything reprobook does against them: the pipeline, the registry, runs, compare, reproduce from a
fresh clone with an empty cache, monitoring, and eight queued experiments on four workers.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from conftest import BIN, copy_project, free_port, sh, stop, tool_env
from queued import assert_nothing_lost, queue_and_run

pytestmark = pytest.mark.e2e

BUCKET = "team"
# Credentials a test S3 endpoint accepts; they must never reach a committed file or MLflow.
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "reprobook-test-key", "AWS_SECRET_ACCESS_KEY": "s3cr3t-never-logged-7f3a",
               "AWS_DEFAULT_REGION": "us-east-1"}
SMALL = {"data.n_rows": 1500, "model.cv_folds": 2, "model.latency_rows": 20, "model.params.max_iter": 40}


def wait_for(url: str, process: subprocess.Popen, timeout_s: float) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        assert process.poll() is None, f"{process.args[:3]} exited {process.returncode}"
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.3)
    pytest.fail(f"{url} did not answer within {timeout_s:.0f} s")


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """moto's S3 server: the object store of the DVC remote and of the tracking server's artifacts."""
    import boto3

    port = free_port()
    process = subprocess.Popen([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], env=tool_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    wait_for(endpoint, process, 60)
    client = boto3.client("s3", endpoint_url=endpoint, **{k.lower(): v for k, v in CREDENTIALS.items()
                                                          if k != "AWS_DEFAULT_REGION"}, region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    yield {"endpoint": endpoint, "client": client}
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture(scope="module")
def server(tmp_path_factory, s3):
    """`reprobook server` as a user starts it, artifacts in the bucket; stopped by SIGTERM at the end."""
    data = tmp_path_factory.mktemp("server")
    port = free_port()
    process = subprocess.Popen(
        [str(BIN / "reprobook"), "server", "--data-dir", str(data), "--port", str(port),
         "--artifacts-destination", f"s3://{BUCKET}/mlflow"],
        env=tool_env(**CREDENTIALS, MLFLOW_S3_ENDPOINT_URL=s3["endpoint"]),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    exported = process.stdout.readline().strip()  # printed once the server answers
    assert exported == f"export MLFLOW_TRACKING_URI=http://127.0.0.1:{port}", exported + process.stderr.read()
    yield {"uri": exported.split("=", 1)[1], "process": process, "data": data}
    assert stop(process) == 0
    assert not (data / "postgres" / "postmaster.pid").exists(), "PostgreSQL stopped with it"
    deadline = time.time() + 30  # its last log line may trail the exit of the postmaster
    while "database system is shut down" not in (data / "postgres" / "log").read_text() and time.time() < deadline:
        time.sleep(0.2)
    assert "database system is shut down" in (data / "postgres" / "log").read_text(), "PostgreSQL stopped with it"


@pytest.fixture(scope="module")
def team(tmp_path_factory, server, s3):
    """A project whose default DVC remote is the bucket, run once against the server by `reprobook run`."""
    import yaml as _yaml

    base = tmp_path_factory.mktemp("team")
    root = copy_project(base / "project")
    params = _yaml.safe_load((root / "params.yaml").read_text())
    for key, value in SMALL.items():
        section, *rest = key.split(".")
        node = params[section]
        for part in rest[:-1]:
            node = node[part]
        node[rest[-1]] = value
    (root / "params.yaml").write_text(_yaml.safe_dump(params, sort_keys=False))
    dvc = str(BIN / "dvc")
    sh([dvc, "remote", "remove", "--local", "storage"], root)
    # The team set-up of the README: URL and endpoint committed, credentials from the environment.
    sh([dvc, "remote", "add", "-d", "team", f"s3://{BUCKET}/dvc"], root)
    sh([dvc, "remote", "modify", "team", "endpointurl", s3["endpoint"]], root)
    sh(["git", "add", "-A"], root)
    sh(["git", "commit", "-qm", "team remote, small params"], root)
    env = {"MLFLOW_TRACKING_URI": server["uri"], **CREDENTIALS}
    ran = sh([str(BIN / "reprobook"), "run"], root, **env)
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=server["uri"], registry_uri=server["uri"])
    experiment = client.get_experiment_by_name("reprobook")
    return {"root": root, "env": env, "client": client, "experiment": experiment, "base": base, "output": ran}


def runs_by_stage(team) -> dict[str, list]:
    found: dict[str, list] = {}
    for run in team["client"].search_runs([team["experiment"].experiment_id], max_results=1000,
                                          order_by=["attributes.start_time ASC"]):
        found.setdefault(run.data.tags.get("reprobook.stage", "?"), []).append(run)
    return found


def bucket_keys(s3, prefix: str) -> list[str]:
    pages = s3["client"].get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


def test_pipeline_run_lands_on_the_server_grouped_with_its_model(team, s3):
    root, client = team["root"], team["client"]
    assert not (root / "mlflow.db").exists() and not (root / "mlartifacts").exists(), "nothing went to a local store"
    stages = runs_by_stage(team)
    (pipeline,) = stages["pipeline"]
    assert pipeline.info.status == "FINISHED"
    children = {run.data.tags["reprobook.stage"] for runs in stages.values() for run in runs
                if run.data.tags.get("mlflow.parentRunId") == pipeline.info.run_id}
    assert children == {"scoping", "data", "modeling", "error_analysis"}
    (modeling,) = stages["modeling"]
    assert stages["data"][0].data.params["data.n_rows"] == "1500" and modeling.data.metrics["test.roc_auc"] > 0.7
    # Artifacts went through the server into the bucket: the client had no bucket of its own to write to.
    assert modeling.info.artifact_uri.startswith("mlflow-artifacts:")
    keys = bucket_keys(s3, "mlflow/")
    assert any(key.endswith(f"{modeling.info.run_id}/artifacts/notebook/notebook.html") for key in keys)
    name = yaml.safe_load((root / "params.yaml").read_text())["model"]["registered_name"]
    champion = client.get_model_version_by_alias(name, "champion")
    assert champion.run_id == modeling.info.run_id, "the first model of a fresh registry becomes champion"


def test_runs_and_compare_read_the_server(team):
    root, env = team["root"], team["env"]
    listed = sh([str(BIN / "reprobook"), "runs", "--format", "json"], root, **env).stdout
    assert {run["stage"] for run in json.loads(listed)} >= {"scoping", "data", "modeling", "error_analysis"}
    modeling = runs_by_stage(team)["modeling"][0].info.run_id
    scoping = runs_by_stage(team)["scoping"][0].info.run_id
    compared = sh([str(BIN / "reprobook"), "compare", modeling, scoping, "--format", "json"], root, **env, check=False)
    assert compared.returncode in (0, 1) and "Traceback" not in compared.stderr, compared.stderr


def test_data_is_pushed_to_the_bucket_and_no_credential_is_recorded(team, s3):
    client = team["client"]
    assert bucket_keys(s3, "dvc/"), "reprobook run pushed the data to the S3 remote"
    modeling = runs_by_stage(team)["modeling"][0]
    assert modeling.data.tags["reprobook.data_pushed"] == "true"
    assert modeling.data.tags["reprobook.data_remote"] == f"s3://{BUCKET}/dvc"
    secret = CREDENTIALS["AWS_SECRET_ACCESS_KEY"]
    for path in (".dvc/config", "params.yaml", "dvc.lock"):
        assert secret not in (team["root"] / path).read_text()
    for run in client.search_runs([team["experiment"].experiment_id], max_results=1000):
        recorded = json.dumps({"params": run.data.params, "tags": run.data.tags})
        assert secret not in recorded and CREDENTIALS["AWS_ACCESS_KEY_ID"] not in recorded
    environment = client.download_artifacts(modeling.info.run_id, "record", str(team["base"] / "record"))
    for file in Path(environment).rglob("*"):
        if file.is_file():
            assert secret not in file.read_text(errors="replace"), file


def test_reproduce_from_a_fresh_clone_pulls_from_the_bucket(team):
    """Another path, an empty DVC cache, and only the server's URI and the bucket's credentials."""
    fresh = team["base"] / "elsewhere" / "clone"
    sh(["git", "clone", "-q", str(team["root"]), str(fresh)], team["base"])
    assert not (fresh / ".dvc" / "cache").exists()
    modeling = runs_by_stage(team)["modeling"][0].info.run_id
    done = sh([str(BIN / "reprobook"), "reproduce", modeling], fresh, **team["env"], check=False, COLUMNS="200")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "REPRODUCED" in done.stdout and "NOT REPRODUCED" not in done.stdout
    reproduction = runs_by_stage(team)["reproduction"][-1]
    assert reproduction.data.tags["reprobook.reproduction_of"] == modeling


def test_monitoring_against_the_server(team):
    root, env = team["root"], team["env"]
    batches = team["base"] / "batches"
    sh([str(BIN / "reprobook"), "simulate", str(batches), "--schedule", "none:1", "--rows", "600"], root, **env)
    monitored = sh([str(BIN / "reprobook"), "monitor", str(batches / "batch-001.parquet"), "--labels",
                    str(batches / "labels-001.csv"), "--format", "json"], root, **env, check=False)
    assert monitored.returncode in (0, 1) and monitored.stdout.strip(), monitored.stdout + monitored.stderr
    verdict = json.loads(monitored.stdout)["verdict"]
    (run,) = runs_by_stage(team)["monitoring"]
    assert run.data.tags["reprobook.monitoring.verdict"] == verdict and run.info.status == "FINISHED"


def test_eight_queued_experiments_on_four_workers_lose_nothing(team):
    root, env = team["root"], team["env"]
    sh(["git", "add", "-A"], root)
    sh(["git", "commit", "-qm", "after the first run", "--allow-empty"], root)
    status = queue_and_run(root, workers=4, **env)
    assert status.count("Success") == 8, status
    name = yaml.safe_load((root / "params.yaml").read_text())["model"]["registered_name"]
    assert_nothing_lost(team["client"], team["experiment"].experiment_id, name)
    assert os.environ.get("MLFLOW_TRACKING_URI") != team["env"]["MLFLOW_TRACKING_URI"]


def test_a_credential_in_the_committed_dvc_config_is_refused_before_any_work(team):
    root, env = team["root"], team["env"]
    config = root / ".dvc" / "config"
    original = config.read_text()
    sh([str(BIN / "dvc"), "remote", "modify", "team", "secret_access_key", CREDENTIALS["AWS_SECRET_ACCESS_KEY"]], root)
    try:
        refused = sh([str(BIN / "reprobook"), "run", "-S", "model.params.max_depth=3"], root, **env, check=False)
    finally:
        config.write_text(original)
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert "secret_access_key of remote 'team'" in refused.stderr and ".dvc/config.local" in refused.stderr
    assert CREDENTIALS["AWS_SECRET_ACCESS_KEY"] not in refused.stdout + refused.stderr


def test_server_refuses_a_busy_port_and_a_sqlite_backend_in_one_line(server):
    port = server["uri"].rsplit(":", 1)[1]
    busy = sh([str(BIN / "reprobook"), "server", "--port", port, "--data-dir", str(server["data"] / "other")],
              server["data"], check=False)
    assert busy.returncode == 2 and f"port {port} on 127.0.0.1 is in use" in busy.stderr, busy.stderr
    sqlite = sh([str(BIN / "reprobook"), "server", "--port", str(free_port()), "--backend-store-uri",
                 "sqlite:///mlflow.db", "--data-dir", str(server["data"] / "other")], server["data"], check=False)
    assert sqlite.returncode == 2 and "concurrent writers" in sqlite.stderr and "Traceback" not in sqlite.stderr


def _rest(uri: str, path: str, body: dict | None = None) -> dict:
    """MLflow's REST API, as the UI reads it."""
    request = urllib.request.Request(f"{uri}/api/2.0/mlflow/{path}", method="POST" if body is not None else "GET",
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def test_the_mlflow_ui_sees_a_training_experiment_named_runs_datasets_and_notes(team):
    """What the MLflow UI shows, read through the server's REST API after `reprobook run` and a `-S` variant."""
    root, env, uri = team["root"], team["env"], team["env"]["MLFLOW_TRACKING_URI"]
    secret = "ui-secret-never-shown-5b1e"
    sh([str(BIN / "reprobook"), "run", "-S", "model.params.max_iter=30"], root, **env, MY_SERVICE_TOKEN=secret)
    experiment = _rest(uri, "experiments/get-by-name?experiment_name=reprobook")["experiment"]
    tags = {t["key"]: t["value"] for t in experiment.get("tags", [])}
    assert tags["mlflow.experimentKind"] == "custom_model_development"  # opens on the training runs, not GenAI
    assert "reprobook reproduce" in tags["mlflow.note.content"]
    runs = _rest(uri, "runs/search", {"experiment_ids": [experiment["experiment_id"]], "max_results": 1000})["runs"]

    def tags_of(run):
        return {t["key"]: t["value"] for t in run["data"].get("tags", [])}

    by_id = {run["info"]["run_id"]: run for run in runs}
    pipelines = {run["info"]["run_name"]: run for run in runs if tags_of(run).get("reprobook.stage") == "pipeline"}
    commits = sh(["git", "log", "--format=%h", "--abbrev=7"], root).stdout.split()
    assert "max_iter=30" in pipelines, list(pipelines)  # the variant, after its override
    assert any(f"commit {commit}" in pipelines for commit in commits), list(pipelines)  # `reprobook run`
    variant = pipelines["max_iter=30"]["info"]["run_id"]
    children = [run for run in runs if tags_of(run).get("mlflow.parentRunId") == variant]
    assert {run["info"]["run_name"] for run in children} >= {"modeling · max_iter=30", "error_analysis · max_iter=30"}
    modeling = next(run for run in children if tags_of(run)["reprobook.stage"] == "modeling")
    # Datasets: the splits it read, with the md5 DVC records for them, their schema and row count.
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    md5 = {out["path"]: out["md5"] for out in lock["stages"]["data"]["outs"]}
    inputs = {json.loads(i["dataset"]["source"])["uri"]: i for i in modeling["inputs"]["dataset_inputs"]}
    assert set(inputs) >= {"data/processed/train.parquet", "data/processed/test.parquet"}, list(inputs)
    train = inputs["data/processed/train.parquet"]
    assert train["dataset"]["digest"] == md5["data/processed/train.parquet"]
    assert {t["value"] for t in train["tags"]} == {"training"}
    assert json.loads(train["dataset"]["profile"])["num_rows"] > 0 and "mlflow_colspec" in train["dataset"]["schema"]
    first_modeling = next(run for run in runs if tags_of(run).get("reprobook.stage") == "modeling"
                          and run["info"]["run_id"] != modeling["info"]["run_id"])
    first = {json.loads(i["dataset"]["source"])["uri"]: i["dataset"]["digest"]
             for i in first_modeling["inputs"]["dataset_inputs"]}
    assert first["data/processed/train.parquet"] == train["dataset"]["digest"], "same data, same digest"
    # The description: the verdict, the registry's decision, how to reproduce; no secret, no machine path.
    note = tags_of(modeling)["mlflow.note.content"]
    assert "on the test rows" in note and "the baseline" in note and "Registered as" in note
    assert f"reprobook reproduce {modeling['info']['run_id']}" in note
    assert secret not in json.dumps(runs) and str(root) not in note and str(Path.home()) not in note
    assert any(key.startswith("_primary.test_") for key in (m["key"] for m in modeling["data"]["metrics"]))
    # The logged model is the run's output, and its registered version links back to the run.
    (output,) = modeling["outputs"]["model_outputs"]
    name = yaml.safe_load((root / "params.yaml").read_text())["model"]["registered_name"]
    versions = _rest(uri, f"model-versions/search?filter=name%3D%27{name}%27")
    assert any(v["run_id"] == modeling["info"]["run_id"] for v in versions.get("model_versions", []))
    assert _rest(uri, f"logged-models/{output['model_id']}")["model"]["info"]["source_run_id"] == modeling["info"]["run_id"]
    assert all(run["info"]["run_id"] in by_id for run in children)
