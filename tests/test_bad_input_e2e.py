"""Bad input through the real pipeline: a clear message, a non-zero exit, nothing lost.

One project copy runs the pipeline once; each case then breaks one thing,
runs `dvc repro` and checks the message names the file/key/column, the exit
is non-zero, the upstream outputs are intact and (for failures inside a
notebook) the executed notebook keeps the failing cell and the MLflow run is
marked FAILED.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from conftest import BIN, copy_project, set_params, sh

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = copy_project(tmp_path_factory.mktemp("bad") / "project")
    set_params(root, **{"data.n_rows": 800, "model.cv_folds": 2, "model.params.max_iter": 20})
    sh([str(BIN / "dvc"), "repro"], root)
    return root


@pytest.fixture
def fresh_params(project):
    original = (project / "params.yaml").read_text()
    yield project
    (project / "params.yaml").write_text(original)


def repro(root: Path):
    result = sh([str(BIN / "dvc"), "repro"], root, check=False)
    assert result.returncode != 0, f"dvc repro should have failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def split_bytes(root: Path) -> bytes:
    return (root / "data/processed/train.parquet").read_bytes()


def last_run(root: Path, stage: str):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{root}/mlflow.db")
    experiment = client.get_experiment_by_name("reprobook")
    return client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`reprobook.stage` = '{stage}'",
        order_by=["attributes.start_time DESC"], max_results=1,
    )[0]


def assert_failed_notebook_kept(root: Path, stage: str, text: str) -> None:
    notebook = json.loads((root / f"reports/{stage}/notebook.ipynb").read_text())
    errors = [o for c in notebook["cells"] if c["cell_type"] == "code" for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert errors and text in errors[0]["evalue"]
    run = last_run(root, stage)
    assert run.info.status == "FAILED" and text in run.data.tags["reprobook.error"]


def test_unknown_params_key(fresh_params):
    root = fresh_params
    before = split_bytes(root)
    set_params(root, **{"model.estimatr": "x"})
    output = repro(root)
    assert "unknown key 'model.estimatr'" in output and "did you mean 'estimator'" in output
    assert "Traceback" not in output
    assert split_bytes(root) == before


def test_wrong_type(fresh_params):
    root = fresh_params
    set_params(root, **{"model.cv_folds": "five"})
    output = repro(root)
    assert "model.cv_folds" in output and "'five'" in output and "integer" in output


def test_unknown_estimator_path(fresh_params):
    root = fresh_params
    before = split_bytes(root)
    set_params(root, **{"model.estimator": "sklearn.ensemble.GradientBoostingClasifier"})
    output = repro(root)
    assert "model.estimator" in output and "did you mean GradientBoostingClassifier" in output
    assert_failed_notebook_kept(root, "modeling", "GradientBoostingClasifier")
    assert split_bytes(root) == before, "the data stage's outputs must stay intact"


def test_missing_data_file(fresh_params):
    root = fresh_params
    set_params(root, **{"data.source": "csv:data/raw/absent.csv", "data.target": "approved"})
    output = repro(root)
    assert "data/raw/absent.csv not found" in output
    assert_failed_notebook_kept(root, "scoping", "absent.csv")


def test_corrupt_csv(fresh_params):
    root = fresh_params
    (root / "data/raw/corrupt.csv").write_text('a,b,approved\n1,2,0\n3,"4\n5,6,7,8,9\n')
    set_params(root, **{"data.source": "csv:data/raw/corrupt.csv", "data.target": "approved"})
    output = repro(root)
    assert "corrupt.csv: not a readable CSV file" in output
    (root / "data/raw/corrupt.csv").unlink()


def test_absent_target_column(fresh_params):
    root = fresh_params
    pd.DataFrame({"x": range(50), "y": [0, 1] * 25}).to_csv(root / "data/raw/no_target.csv", index=False)
    set_params(root, **{"data.source": "csv:data/raw/no_target.csv", "data.target": "label"})
    output = repro(root)
    assert "column 'label' not found" in output and "columns are: x, y" in output
    (root / "data/raw/no_target.csv").unlink()


def test_single_class_target(fresh_params):
    root = fresh_params
    pd.DataFrame({"x": range(50), "y": [1] * 50}).to_csv(root / "data/raw/one_class.csv", index=False)
    set_params(root, **{"data.source": "csv:data/raw/one_class.csv", "data.target": "y"})
    output = repro(root)
    assert "single class" in output and "'y'" in output
    (root / "data/raw/one_class.csv").unlink()
