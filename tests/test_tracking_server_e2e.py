"""A real `mlflow server` as the tracking store: a stage run lands there with its record."""

from __future__ import annotations

import socket
import subprocess
import time

import pytest
from conftest import BIN, copy_project, sh, tool_env

pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    port = free_port()
    process = subprocess.Popen(
        [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{tmp_path}/server.db", "--default-artifact-root", str(tmp_path / "artifacts")],
        env=tool_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    uri = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    import urllib.request

    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"{uri}/health", timeout=1)
            break
        except OSError:
            time.sleep(0.5)
    else:
        process.kill()
        pytest.fail("mlflow server did not start within 90 s")
    yield uri
    process.terminate()
    process.wait(timeout=30)


def test_stage_logs_to_tracking_server(server, tmp_path):
    from mlflow import MlflowClient

    root = copy_project(tmp_path / "project")
    sh([str(BIN / "reprobook"), "stage", "scoping"], root, MLFLOW_TRACKING_URI=server)
    assert not (root / "mlflow.db").exists(), "with a server configured nothing goes to the local store"
    client = MlflowClient(tracking_uri=server)
    experiment = client.get_experiment_by_name("reprobook")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.data.tags["reprobook.stage"] == "scoping" and run.info.status == "FINISHED"
    assert run.data.metrics["baseline_score"] == pytest.approx(0.5)
    assert {a.path for a in client.list_artifacts(run.info.run_id, "notebook")} >= {"notebook/notebook.html"}
