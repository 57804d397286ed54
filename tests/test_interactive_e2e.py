"""An interactive run, recorded on request: a stage notebook executed as Jupyter does (no papermill
parameters), with `ctx.record()` in a last cell, is on record in MLflow and marked interactive."""

from __future__ import annotations

import nbformat
import pytest
from conftest import copy_project, tool_env

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    from nbclient import NotebookClient

    root = copy_project(tmp_path_factory.mktemp("interactive") / "project")
    notebook = nbformat.read(root / "notebooks/01_scoping.ipynb", as_version=4)
    notebook.cells.append(nbformat.v4.new_code_cell("run_id = ctx.record()\nprint(run_id)"))
    # A user's Jupyter: the kernel gets no papermill parameters and no pipeline environment.
    NotebookClient(notebook, kernel_name="reprobook", resources={"metadata": {"path": str(root)}},
                   timeout=300).execute(env=tool_env())
    printed = "".join(o.get("text", "") for o in notebook.cells[-1].outputs)
    return root, printed


def test_interactive_run_is_recorded_and_marked(recorded):
    from mlflow import MlflowClient

    root, printed = recorded
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("reprobook")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_id in printed and run.info.status == "FINISHED"
    assert run.data.tags["reprobook.interactive"] == "true" and run.data.tags["reprobook.stage"] == "scoping"
    assert "mlflow.parentRunId" not in run.data.tags
    assert run.data.params["scoping.primary_metric"] == "roc_auc"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "notebook")}
    assert artifacts == {"notebook/01_scoping.ipynb"}
    assert {a.path for a in client.list_artifacts(run.info.run_id, "record")} >= {"record/params.yaml", "record/environment.json"}
