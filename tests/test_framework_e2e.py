"""reprobook as a framework, as a new user meets it: `reprobook new` on their own file, their own stage.

Real tools throughout: the installed `reprobook` console script, git, DVC,
papermill with the `reprobook` kernel, MLflow on SQLite. Two projects are made
and run once each (module-scoped); the tests read what they left.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import BIN, ROOT, sh

pytestmark = pytest.mark.e2e

FIFTH_STAGE = {
    "cells": [
        {"cell_type": "markdown", "metadata": {}, "source": ["# Class balance (a stage of the user's own)"]},
        {"cell_type": "code", "metadata": {"tags": ["parameters"]}, "execution_count": None, "outputs": [],
         "source": ["params = None\n", "project_dir = None"]},
        {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [], "source": [
            "import pandas as pd\n",
            "from reprobook.project import context\n",
            "ctx = context.setup('balance', params=params, project_dir=project_dir)\n",
            "train = pd.read_parquet(ctx.path('data/processed/train.parquet'))\n",
            "shares = train[ctx.params.data.target].value_counts(normalize=True).sort_index()\n",
            "context.write_json(ctx.out / 'metrics.json', {'largest_class_share': float(shares.max()), "
            "'classes': int(len(shares))})\n",
            "shares.plot.bar(title='class shares')  # pyplot, as users draw: shown inline in the report\n",
            "shares",
        ]},
    ],
    "metadata": {"kernelspec": {"display_name": "Python (reprobook)", "language": "python", "name": "reprobook"},
                 "language_info": {"name": "python"}},
    "nbformat": 4, "nbformat_minor": 5,
}


def reprobook(*args: str, cwd: Path, check: bool = True, **env: str):
    return sh([str(BIN / "reprobook"), *args], cwd, check=check, **env)


def mlflow_runs(root: Path, experiment: str, stage: str | None = None) -> list:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{root}/mlflow.db")
    found = client.get_experiment_by_name(experiment)
    query = f"tags.`reprobook.stage` = '{stage}'" if stage else ""
    return client.search_runs([found.experiment_id], filter_string=query, order_by=["attributes.start_time ASC"])


def stages_run(output: str) -> str:
    """What `reprobook run` says it ran (its summary's 'stages run:' line)."""
    line = next((line for line in output.splitlines() if "stages run:" in line), "")
    return line.split("stages run:", 1)[1].strip()


def commit_all(root: Path, message: str) -> None:
    sh(["git", "add", "-A"], root)
    sh(["git", "commit", "-qm", message, "--allow-empty"], root)


def commit_line(output: str) -> str:
    """The shell line `reprobook run` says commits its results (its summary's 'commit:' line)."""
    line = next((line for line in output.splitlines() if line.strip().startswith("commit:")), "")
    assert line.endswith("(new results)"), f"no commit line in:\n{output}"
    return line.split("commit:", 1)[1].rsplit("(new results)", 1)[0].strip()


def _new_project(base: Path, name: str, data: Path, target: str, *extra: str) -> dict:
    """`reprobook new`, `reprobook run`, the commit line it prints, a second `reprobook run`: what a new user does."""
    root = base / name
    created = reprobook("new", str(root), "--data", str(data), "--target", target, *extra, "--remote",
                        str(base / f"{name}-storage"), cwd=base)
    first_commit = sh(["git", "ls-files"], root).stdout.split()
    first = reprobook("run", cwd=root)
    line = commit_line(first.stdout)
    sh(["bash", "-c", line], root)
    committed = sh(["git", "status", "--porcelain", "--untracked-files=all"], root).stdout
    second = reprobook("run", cwd=root)
    status = sh(["git", "status", "--porcelain"], root).stdout
    return {"root": root, "created": created.stdout, "first": first.stdout + first.stderr,
            "second": second.stdout + second.stderr, "status": status, "first_commit": first_commit,
            "commit_line": line, "after_commit_line": committed}


@pytest.fixture(scope="module")
def classification(tmp_path_factory) -> dict:
    """A binary classification CSV from outside the project (not the loan generator), with gaps in the target."""
    from sklearn.datasets import load_breast_cancer

    base = tmp_path_factory.mktemp("new-classification")
    frame = load_breast_cancer(as_frame=True).frame.iloc[:, [0, 1, 2, 3, 7, 20, 27, 30]]
    frame.columns = [c.replace(" ", "_") for c in frame.columns]
    frame["diagnosis"] = frame.pop("target").map({0: "malignant", 1: "benign"}).astype(object)
    frame.loc[[3, 11], "diagnosis"] = None
    data = base / "tumours.csv"
    frame.to_csv(data, index=False)
    return _new_project(base, "Tumour Study", data, "diagnosis")


@pytest.fixture(scope="module")
def regression(tmp_path_factory) -> dict:
    from sklearn.datasets import load_diabetes

    base = tmp_path_factory.mktemp("new-regression")
    data = base / "progression.parquet"
    load_diabetes(as_frame=True).frame.rename(columns={"target": "progression"}).to_parquet(data, index=False)
    return _new_project(base, "diabetes", data, "progression")


def test_new_classification_project_runs_with_no_edit(classification):
    root = classification["root"]
    params = yaml.safe_load((root / "params.yaml").read_text())
    assert params["data"]["source"] == "csv:data/raw/tumours.csv" and params["data"]["target"] == "diagnosis"
    assert params["scoping"]["task"] == "classification" and params["scoping"]["primary_metric"] == "roc_auc"
    assert params["model"]["registered_name"] == "tumour-study" and params["data"]["schema_file"] == "schemas/tumour-study.yaml"
    assert params["data"]["drop_missing_target"] is True and "2 row(s) have no 'diagnosis'" in classification["created"]
    assert (root / "data/raw/tumours.csv.dvc").is_file() and (root / "schemas/tumour-study.yaml").is_file()
    for name in ("README.md", "Makefile", "MLproject", "dvc.yaml", ".gitignore", "tests/test_project.py"):
        assert (root / name).is_file(), name
    assert "dvc_plots/" in (root / ".gitignore").read_text()
    assert sh(["git", "log", "--oneline"], root).stdout.count("\n") == 2  # the first commit, then ours
    assert stages_run(classification["first"]) == "scoping, data, modeling, error_analysis"
    data_metrics = json.loads((root / "reports/data/metrics.json").read_text())
    assert data_metrics["dropped_missing_target"] == 2
    roc_auc = json.loads((root / "reports/modeling/metrics.json").read_text())["test"]["roc_auc"]
    assert 0.9 < roc_auc <= 1.0


def test_the_printed_commit_line_leaves_git_clean(classification):
    """`reprobook new` commits the .gitignore entries DVC needs; the run's commit line names what it changed."""
    assert {"data/processed/.gitignore", "models/.gitignore", "reports/modeling/.gitignore"} <= set(
        classification["first_commit"])
    root = classification["root"]
    assert (root / "data/processed/.gitignore").read_text() == "/train.parquet\n/test.parquet\n"
    assert (root / "models/.gitignore").read_text() == "/model.skops\n"
    line = classification["commit_line"]
    assert line.startswith("git add -- dvc.lock ") and "reports/modeling/metrics.json" in line, line
    assert ".gitignore" not in line, line  # DVC found its entries in the first commit and wrote none
    assert classification["after_commit_line"] == "", classification["after_commit_line"]


def test_second_run_does_nothing_and_leaves_git_clean(classification, regression):
    for project in (classification, regression):
        assert "up to date: nothing to rerun" in project["second"]
        assert project["status"] == "", project["status"]


def test_new_regression_project_from_parquet(regression):
    root = regression["root"]
    params = yaml.safe_load((root / "params.yaml").read_text())
    assert params["scoping"]["task"] == "regression" and params["scoping"]["primary_metric"] == "r2"
    assert params["model"]["estimator"].endswith("HistGradientBoostingRegressor")
    assert (root / "reports/modeling/plots/residuals.png").is_file()
    assert "residuals.csv" in (root / "dvc.yaml").read_text() and "roc.csv" not in (root / "dvc.yaml").read_text()
    runs = mlflow_runs(root, "diabetes", "modeling")
    assert runs and runs[-1].info.status == "FINISHED" and "test.r2" in runs[-1].data.metrics



def executed(root: Path, stage: str) -> dict:
    return json.loads((root / f"reports/{stage}/notebook.ipynb").read_text())


def png_outputs(notebook: dict) -> list[str]:
    return [output["data"]["image/png"] for cell in notebook["cells"] if cell["cell_type"] == "code"
            for output in cell.get("outputs", []) if "image/png" in output.get("data", {})]


def test_reports_show_their_plots_inline(classification, regression):
    """The executed notebooks and their HTML show every plot the stage saves (and the PNGs are kept)."""
    import base64

    for project, modeling in ((classification, ("confusion", "roc", "precision_recall")), (regression, ("residuals",))):
        root = project["root"]
        shown = png_outputs(executed(root, "modeling"))
        saved = [(root / f"reports/modeling/plots/{name}.png").read_bytes() for name in modeling]
        assert [base64.b64decode(image) for image in shown] == saved
        error_plots = ("worst_slices", "permutation_importance", "partial_dependence", "what_if")
        shown = [base64.b64decode(image) for image in png_outputs(executed(root, "error_analysis"))]
        assert shown == [(root / f"reports/error_analysis/plots/{name}.png").read_bytes() for name in error_plots]
        assert len(png_outputs(executed(root, "data"))) >= 1  # the skew summary
        for stage in ("data", "modeling", "error_analysis"):
            html = root / f"reports/{stage}/notebook.html"
            assert "data:image/png;base64," in html.read_text() and html.stat().st_size < 2_000_000, stage


def test_injected_parameters_cell_is_readable(regression):
    notebook = executed(regression["root"], "modeling")
    cell = next(c for c in notebook["cells"] if "injected-parameters" in c["metadata"].get("tags", []))
    lines = "".join(cell["source"]).splitlines()
    assert len(lines) > 8 and max(map(len, lines)) <= 100, lines
    assert '        "estimator": "sklearn.ensemble.HistGradientBoostingRegressor",' in lines


def test_rerun_stage_gives_byte_identical_report_and_plots(regression):
    """Same inputs, same bytes: the embedded PNGs carry nothing that varies (the lock holds the report's hash)."""
    root = regression["root"]
    files = ["reports/modeling/notebook.ipynb", "reports/modeling/notebook.html", "reports/modeling/plots/residuals.png"]
    before = {name: (root / name).read_bytes() for name in files}
    reprobook("stage", "modeling", cwd=root)
    for name in files:
        assert (root / name).read_bytes() == before[name], f"{name} differs when the stage is run again"


def metric_leaves(tree: dict) -> list:
    return [leaf for value in tree.values() for leaf in (metric_leaves(value) if isinstance(value, dict) else [value])]


def test_metrics_files_hold_key_figures_and_outputs_the_tables(classification, regression):
    """`dvc metrics show` stays readable: no lists or long tables in metrics.json, they live in outputs/."""
    for project in (classification, regression):
        root = project["root"]
        for path in sorted(root.glob("reports/*/metrics.json")):
            tree = json.loads(path.read_text())
            nested = [value for value in tree.values() if isinstance(value, dict)]
            assert not any(isinstance(leaf, list) for leaf in metric_leaves(tree)), path
            assert all(len(table) <= 8 for table in nested), f"{path}: a nested table belongs in outputs/"
            assert len(metric_leaves(tree)) <= 16, f"{path}: {len(metric_leaves(tree))} figures"
        cv = json.loads((root / "reports/modeling/outputs/cv.json").read_text())
        primary = json.loads((root / "reports/modeling/metrics.json").read_text())["comparison"]["primary_metric"]
        headline = json.loads((root / "reports/modeling/metrics.json").read_text())["cv"]
        assert headline == {key: cv[key] for key in (f"{primary}_mean", f"{primary}_std")} and len(cv) > len(headline)
        shown = sh([str(BIN / "dvc"), "metrics", "show"], root)
        assert "failed to load" not in shown.stdout + shown.stderr


def test_dvc_plots_show_works_offline_for_both_tasks(classification, regression):
    """The page embeds Vega (no CDN script) and every declared plot loads, for either task."""
    import re

    for project, charts in ((classification, ("ROC_curve", "Precision-recall_curve", "Confusion_matrix")),
                            (regression, ("Predicted_vs_actual", "Residuals"))):
        root = project["root"]
        out = root.parent / f"{root.name}-plots"
        shown = sh([str(BIN / "dvc"), "plots", "show", "-o", str(out)], root)
        assert "failed to load" not in shown.stdout + shown.stderr, shown.stderr
        page = (out / "index.html").read_text()
        assert not re.findall(r"<script[^>]*\bsrc=", page), "a script is loaded from elsewhere"
        assert "cdn." not in page and "window.vegaEmbed=" in page
        assert re.findall(r'<div id = "([^"]+)"', page) == list(charts)
        assert len(re.findall(r'<img src="static/', page)) == len(yaml.safe_load((root / "dvc.yaml").read_text())["plots"]) - len(charts)

def test_a_users_own_notebook_becomes_a_tracked_stage(classification):
    root = classification["root"]
    (root / "notebooks/05_balance.ipynb").write_text(json.dumps(FIFTH_STAGE, indent=1) + "\n")
    added = reprobook("add-stage", "balance", "notebooks/05_balance.ipynb", "--params", "data.target",
                      "--deps", "data/processed/train.parquet", "--metrics", "reports/balance/metrics.json", cwd=root)
    assert "stage balance" in added.stdout
    declared = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]["balance"]
    assert declared["cmd"] == "reprobook stage balance" and declared["meta"]["notebook"] == "notebooks/05_balance.ipynb"
    # The entries DVC writes for the stage's cached outs, ahead of it (its metrics are git's: cache: false).
    assert (root / "reports/balance/.gitignore").read_text() == "/notebook.ipynb\n/notebook.html\n"
    commit_all(root, "a fifth stage")
    ran = reprobook("run", cwd=root)
    assert stages_run(ran.stdout) == "balance", ran.stdout  # nothing upstream reran
    assert len(png_outputs(executed(root, "balance"))) == 1  # the user's own pyplot figure, inline
    run = mlflow_runs(root, "tumour-study", "balance")[-1]
    assert run.info.status == "FINISHED" and run.data.params["data.target"] == "diagnosis"
    assert 0.5 < run.data.metrics["largest_class_share"] < 1 and run.data.metrics["classes"] == 2
    assert run.data.tags["mlflow.parentRunId"]
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{root}/mlflow.db")
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "notebook")}
    assert artifacts == {"notebook/notebook.ipynb", "notebook/notebook.html"}
    download = root.parent / "record-download"
    download.mkdir()
    inputs = json.loads(Path(client.download_artifacts(run.info.run_id, "record/inputs.json", str(download))).read_text())
    assert "data/processed/train.parquet" in inputs
    sh(["bash", "-c", commit_line(ran.stdout)], root)
    assert sh(["git", "status", "--porcelain", "--untracked-files=all"], root).stdout == ""
    # Compare and reproduce work for it exactly as for the built-in stages.
    first = run.info.run_id
    compared = reprobook("compare", first, mlflow_runs(root, "tumour-study", "modeling")[-1].info.run_id,
                         "--format", "json", cwd=root)
    assert json.loads(compared.stdout)
    reproduced = reprobook("reproduce", first, cwd=root)
    assert "REPRODUCED" in reproduced.stdout and "NOT REPRODUCED" not in reproduced.stdout


def test_undeclared_params_are_an_error_naming_the_key(classification):
    root = classification["root"]
    notebook = json.loads((root / "notebooks/05_balance.ipynb").read_text())
    notebook["cells"][2]["source"].append("\nctx.params.data.test_size")
    (root / "notebooks/05_balance.ipynb").write_text(json.dumps(notebook, indent=1) + "\n")
    failed = reprobook("stage", "balance", cwd=root, check=False)
    assert failed.returncode == 1 and "Traceback" not in failed.stderr
    assert "reads params key 'data.test_size'" in failed.stderr and "does not declare" in failed.stderr


def test_registry_refuses_a_model_of_another_task_under_the_same_name(classification, regression):
    """The regression project tries to register under the classification project's model name."""
    root = regression["root"]
    params = (root / "params.yaml").read_text().replace("registered_name: diabetes", "registered_name: tumour-study")
    (root / "params.yaml").write_text(params)
    store = f"sqlite:///{classification['root']}/mlflow.db"
    failed = reprobook("run", cwd=root, check=False, MLFLOW_TRACKING_URI=store)
    message = failed.stdout + failed.stderr
    assert failed.returncode != 0 and "Traceback" not in failed.stderr
    assert "tumour-study" in message and "registered_name" in message
    assert "classification" in message and "regression" in message


def test_reference_project_is_what_new_makes_for_the_builtin_data(tmp_path):
    made = tmp_path / "reprobook"
    reprobook("new", str(made), "--remote", str(tmp_path / "storage"), cwd=tmp_path)
    from reprobook.project.scaffold import REFERENCE_FILES

    for relative in REFERENCE_FILES:
        assert (made / relative).read_bytes() == (ROOT / relative).read_bytes(), (
            f"{relative} differs from what `reprobook new` writes; regenerate it with `make reference`"
        )
