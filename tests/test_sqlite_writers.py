"""Several processes writing to one new SQLite store at once (what queued experiments do): nothing lost.

Without the guard in ``tracking.store`` most of them fail while MLflow creates
the schema (measured: 5 of 6 processes started together). Then the end-to-end
case: eight queued DVC experiments on two workers, each complete in the store.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import BIN, copy_project, set_params, sh, tool_env
from queued import assert_nothing_lost, queue_and_run

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


@pytest.mark.e2e
def test_eight_queued_experiments_on_two_workers_lose_nothing(tmp_path: Path):
    from mlflow import MlflowClient

    root = copy_project(tmp_path / "project")
    set_params(root, **{"data.n_rows": 1500, "model.cv_folds": 2, "model.latency_rows": 20, "model.params.max_iter": 40})
    sh(["git", "commit", "-qam", "small data"], root)
    sh([str(BIN / "reprobook"), "run"], root)
    sh(["git", "add", "-A"], root)
    sh(["git", "commit", "-qm", "after the first run"], root)
    status = queue_and_run(root, workers=2)
    assert status.count("Success") == 8, status
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    name = yaml.safe_load((root / "params.yaml").read_text())["model"]["registered_name"]
    assert_nothing_lost(client, client.get_experiment_by_name("reprobook").experiment_id, name)
