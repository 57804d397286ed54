"""Several processes writing to one new SQLite store at once (what queued experiments do): nothing lost.

Without the guard in ``tracking.store`` most of them fail while MLflow creates
the schema (measured: 5 of 6 processes started together). Then the end-to-end
case: queued DVC experiments on two workers, each complete in the store (four
here, to keep the suite's time; eight on SQLite with two and four workers in
benchmarks/concurrent_experiments.py, and eight on four workers against the
server in tests/test_team_e2e.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import BIN, copy_project, free_port, set_params, sh, stop, tool_env
from queued import assert_nothing_lost, queue_and_run

SQLITE_DEPTHS = [2, 3, 5, 6]

WRITER = """
import sys, time
from pathlib import Path
from mlflow.entities import Metric, Param
from reprobook.tracking import store
while time.time() < float(sys.argv[2]):  # all writers start together
    time.sleep(0.005)
client = store.client(Path(sys.argv[1]))
experiment = store.experiment_id(client, "writers", Path(sys.argv[1]))
for i in range(15):
    run = client.create_run(experiment, tags={"writer": sys.argv[3]})
    client.log_batch(run.info.run_id, metrics=[Metric(f"m{j}", float(i), 0, 0) for j in range(10)],
                     params=[Param("i", str(i))])
    client.set_terminated(run.info.run_id)
print("done")
"""


def test_writers_started_together_on_a_new_store_lose_nothing(tmp_path: Path):
    import time

    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    start = f"{time.time() + 4:.3f}"  # after every interpreter has imported MLflow
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), start, str(n)],
                                env=tool_env(MLFLOW_TRACKING_URI=uri), cwd=tmp_path,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for n in range(5)]
    outcomes = [writer.communicate(timeout=300) for writer in writers]
    failed = [err[-800:] for writer, (out, err) in zip(writers, outcomes) if writer.returncode != 0]
    assert not failed, failed[0]
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("writers").experiment_id], max_results=1000)
    assert len(runs) == 5 * 15
    assert all(run.info.status == "FINISHED" and len(run.data.metrics) == 10 for run in runs)
    assert sorted(run.data.tags["writer"] for run in runs) == sorted(str(n) for n in range(5) for _ in range(15))


@pytest.fixture(scope="module")
def queued(tmp_path_factory) -> dict:
    """A project run once, then four queued experiments on two workers, all on the project's SQLite store."""
    from mlflow import MlflowClient

    base = tmp_path_factory.mktemp("queued")
    root = copy_project(base / "project")
    set_params(root, **{"data.n_rows": 1500, "model.cv_folds": 2, "model.latency_rows": 20, "model.params.max_iter": 40})
    sh(["git", "commit", "-qam", "small data"], root)
    sh([str(BIN / "reprobook"), "run"], root)
    sh(["git", "add", "-A"], root)
    sh(["git", "commit", "-qm", "after the first run"], root)
    status = queue_and_run(root, workers=2, depths=SQLITE_DEPTHS)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    return {"root": root, "base": base, "status": status, "uri": uri,
            "client": MlflowClient(tracking_uri=uri, registry_uri=uri),
            "model": yaml.safe_load((root / "params.yaml").read_text())["model"]["registered_name"]}


@pytest.mark.e2e
def test_queued_experiments_on_two_workers_lose_nothing(queued):
    assert queued["status"].count("Success") == len(SQLITE_DEPTHS), queued["status"]
    client = queued["client"]
    assert_nothing_lost(client, client.get_experiment_by_name("reprobook").experiment_id, queued["model"],
                        depths=SQLITE_DEPTHS)


@pytest.mark.e2e
def test_the_store_moves_to_a_server_with_its_run_ids_models_and_artifacts(queued):
    """`reprobook migrate-store`, then `reprobook server` on the same folder: the same runs, through HTTP."""
    from mlflow import MlflowClient

    data = queued["base"] / "server"
    moved = sh([str(BIN / "reprobook"), "migrate-store", str(queued["root"] / "mlflow.db"), "--data-dir", str(data)],
               queued["root"])
    assert "moved" in moved.stdout and "1 artifact folders" in moved.stdout, moved.stdout + moved.stderr
    again = sh([str(BIN / "reprobook"), "migrate-store", str(queued["root"] / "mlflow.db"), "--data-dir", str(data)],
               queued["root"], check=False)
    assert again.returncode == 2 and "not empty" in again.stderr and "Traceback" not in again.stderr
    port = free_port()
    server = subprocess.Popen([str(BIN / "reprobook"), "server", "--data-dir", str(data), "--port", str(port)],
                              env=tool_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        uri = server.stdout.readline().strip().split("=", 1)[-1]
        assert uri == f"http://127.0.0.1:{port}", server.stderr.read()
        old, new = queued["client"], MlflowClient(tracking_uri=uri, registry_uri=uri)
        experiment = old.get_experiment_by_name("reprobook").experiment_id
        before = {run.info.run_id: run.data for run in old.search_runs([experiment], max_results=1000)}
        after = {run.info.run_id: run.data for run in new.search_runs([experiment], max_results=1000)}
        assert set(after) == set(before) and len(after) > 10
        assert all(after[k].metrics == before[k].metrics and after[k].params == before[k].params for k in before)
        champion = new.get_model_version_by_alias(queued["model"], "champion")
        assert champion.run_id == old.get_model_version_by_alias(queued["model"], "champion").run_id
        html = new.download_artifacts(champion.run_id, "notebook/notebook.html", str(queued["base"] / "download"))
        assert Path(html).read_bytes() == next((queued["root"] / "mlartifacts").rglob(
            f"{champion.run_id}/artifacts/notebook/notebook.html")).read_bytes()
        listed = sh([str(BIN / "reprobook"), "runs", "--format", "json"], queued["root"], MLFLOW_TRACKING_URI=uri)
        assert {run["run_id"] for run in json.loads(listed.stdout)} <= set(before)
        fresh = new.create_run(experiment)  # the server goes on numbering after the moved rows
        assert fresh.info.run_id not in before
    finally:
        assert stop(server) == 0


def test_a_locked_store_is_waited_out_then_named_with_the_server_suggested():
    import sqlite3

    from reprobook.tracking import store

    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError("(sqlite3.OperationalError) database is locked")
        return "written"

    assert store.retry_while_locked(flaky, "sqlite:///x.db") == "written" and len(calls) == 3

    def locked():
        raise sqlite3.OperationalError("database is locked")

    try:
        store.retry_while_locked(locked, "sqlite:///x.db", wait_s=0.3)
    except sqlite3.OperationalError as error:
        caught = error
        message = store.locked_message(error, "sqlite:////data/mlflow.db")
    else:
        raise AssertionError("a store locked for longer than the wait must fail")
    assert "sqlite:////data/mlflow.db" in message and "reprobook server" in message
    assert store.locked_message(ValueError("other"), "sqlite:////data/mlflow.db") is None
    assert store.locked_message(caught, "http://127.0.0.1:5000") is None
    with_other_error = []
    try:
        store.retry_while_locked(lambda: with_other_error.append(1) or 1 / 0, "sqlite:///x.db")
    except ZeroDivisionError:
        pass
    assert with_other_error == [1], "other errors are not retried"
