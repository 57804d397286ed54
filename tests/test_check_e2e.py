"""`reprobook check`, the stage contract, as a user meets it: a new project passes, a broken one is told what to fix.

Real tools throughout: the installed `reprobook` console script, git, DVC,
papermill with the `reprobook` kernel, MLflow on SQLite (in the check's
scratch copy). One project is made (module-scoped); a broken copy of it is
checked once, and the tests read what that check said.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from conftest import BIN, sh

from reprobook.errors import ReprobookError
from reprobook.project.params import parse_params

pytestmark = pytest.mark.e2e

KEPT = re.compile(r"scratch copy of the tiny run kept for reading: (\S+)")


def reprobook(*args: str, cwd: Path, check: bool = True, **env: str):
    return sh([str(BIN / "reprobook"), *args], cwd, check=check, **env)


def notebook(*code: str) -> dict:
    """A stage notebook of the user's own: a parameters cell, then ``code`` cells, stored clean."""
    cells = [{"cell_type": "code", "metadata": {"tags": ["parameters"]}, "execution_count": None, "outputs": [],
              "source": ["params = None\n", "project_dir = None"]}]
    cells += [{"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [], "source": [source]}
              for source in code]
    return {"cells": cells, "nbformat": 4, "nbformat_minor": 5,
            "metadata": {"kernelspec": {"display_name": "Python (reprobook)", "language": "python", "name": "reprobook"}}}


def edit_notebook(path: Path, change) -> None:
    document = json.loads(path.read_text())
    change(document["cells"])
    path.write_text(json.dumps(document, indent=1))


def drop_parameters_tag(cells: list) -> None:
    for cell in cells:
        cell["metadata"]["tags"] = [tag for tag in cell["metadata"].get("tags", []) if tag != "parameters"]


def store_outputs(cells: list) -> None:
    """As Jupyter saves a notebook that was run: execution counts and outputs, here in 3 cells."""
    code = [cell for cell in cells if cell["cell_type"] == "code"]
    for count, cell in enumerate(code[1:4], start=1):
        cell["execution_count"] = count
        cell["outputs"] = [{"name": "stdout", "output_type": "stream", "text": ["ran\n"]}]


def kept_scratch(output: str) -> None:
    """Remove the scratch copy a failed check keeps for the user to read."""
    for folder in KEPT.findall(output):
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("check")
    root = base / "loans"
    reprobook("new", str(root), "--remote", str(base / "storage"), cwd=base)
    return root


@pytest.fixture(scope="module")
def broken(made: Path) -> dict:
    """A copy of the new project with one broken contract per stage, checked once in full."""
    root = made.parent / "broken"
    shutil.copytree(made, root, symlinks=True)
    edit_notebook(root / "notebooks/01_scoping.ipynb", drop_parameters_tag)
    edit_notebook(root / "notebooks/04_error_analysis.ipynb", store_outputs)
    # modeling declares a key reprobook has a default for, but params.yaml lacks: DVC itself would fail on it.
    declared = "    params:\n      - model\n"
    text = (root / "dvc.yaml").read_text()
    at = text.index(declared, text.index("notebook: notebooks/03_modeling.ipynb"))
    (root / "dvc.yaml").write_text(text[:at] + declared + "      - data.numeric_text\n" + text[at + len(declared):])
    (root / "notebooks/balance.ipynb").write_text(json.dumps(notebook(
        "import pandas as pd\nfrom reprobook.project import context\n"
        "ctx = context.setup('balance', params=params, project_dir=project_dir)\n"
        "train = pd.read_parquet(ctx.path('data/processed/train.parquet'))\n"
        "context.write_json(ctx.out / 'metrics.json', {'rows': len(train), 'seed': ctx.params.data.seed})",
    )))
    reprobook("add-stage", "balance", "notebooks/balance.ipynb", "-p", "data.seed", "-d", "data/processed/train.parquet",
              "-m", "reports/balance/metrics.json", "-o", "reports/balance/extra.json", cwd=root)
    (root / "notebooks/crash.ipynb").write_text(json.dumps(notebook("numerator = 1", "ratio = numerator / 0")))
    reprobook("add-stage", "crash", "notebooks/crash.ipynb", cwd=root)
    done = reprobook("check", cwd=root, check=False)
    kept_scratch(done.stdout)
    return {"root": root, "done": done, "lines": done.stdout.splitlines()}


def line_of(lines: list[str], prefix: str) -> str:
    found = [line for line in lines if line.startswith(prefix)]
    assert len(found) == 1, (prefix, lines)
    return found[0]


def test_new_project_writes_the_pre_commit_hook(made):
    hook = (made / ".pre-commit-config.yaml").read_text()
    assert "entry: reprobook check --quick" in hook and "language: system" in hook and "pass_filenames: false" in hook


def test_new_project_passes_the_full_check_and_is_left_untouched(made):
    params_before = (made / "params.yaml").read_text()
    done = reprobook("check", "--format", "json", cwd=made)
    report = json.loads(done.stdout)
    assert report["ok"] is True and report["quick"] is False and report["failures"] == []
    assert report["stages"] == ["scoping", "data", "modeling", "error_analysis"]
    runs = {c["stage"]: c for c in report["checks"] if c["check"] == "run"}
    assert set(runs) == set(report["stages"]) and all(c["status"] == "pass" for c in runs.values())
    assert len(report["checks"]) == 4 * 6 and report["scratch"] is None
    # The tiny run happened elsewhere: no output, no MLflow store, no change in the user's project.
    assert (made / "params.yaml").read_text() == params_before
    assert not (made / "mlflow.db").exists() and not (made / "reports/modeling/notebook.ipynb").exists()
    assert not (made / "models/model.skops").exists()
    assert sh(["git", "status", "--porcelain"], made).stdout == ""


def test_broken_project_fails_and_each_line_names_stage_and_fix(broken):
    done, lines = broken["done"], broken["lines"]
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    no_tag = line_of(lines, "scoping: notebook notebooks/01_scoping.ipynb has no code cell tagged 'parameters'")
    assert "add one holding `params = None`" in no_tag
    outputs = line_of(lines, "error_analysis: notebook notebooks/04_error_analysis.ipynb has stored outputs in 3 cells")
    assert "jupyter nbconvert --clear-output --inplace notebooks/04_error_analysis.ipynb" in outputs
    params = line_of(lines, "modeling: dvc.yaml declares params 'data.numeric_text'")
    assert "which params.yaml lacks" in params and "add it to params.yaml" in params
    missing = line_of(lines, "balance: ran on tiny params but did not write reports/balance/extra.json")
    assert "notebooks/balance.ipynb" in missing and "remove it from the stage's outs" in missing
    crashed = line_of(lines, "crash: fails on tiny params (check.params) in cell")
    assert "ZeroDivisionError" in crashed and "executed notebook (failing cell marked)" in crashed
    assert lines[-2].startswith("5 of ") and "checks failed (scoping, modeling, error_analysis, balance, crash)" in lines[-2]
    assert "scratch copy of the tiny run kept" in lines[-1]


def test_broken_stages_still_run_where_the_contract_allows(broken):
    table = {line.split()[0]: line for line in broken["lines"][1:7]}
    # A missing tag, stored outputs or an undeclared default do not stop the tiny run: those stages pass it.
    for stage in ("scoping", "data", "modeling", "error_analysis"):
        assert re.search(r"✓ \d+\.\ds$", table[stage]), table[stage]
    assert table["balance"].endswith("✗") and table["crash"].endswith("✗")


def test_quick_check_reads_files_only(broken):
    done = reprobook("check", "--quick", cwd=broken["root"], check=False)
    assert done.returncode == 1
    assert "tiny run" not in done.stdout.splitlines()[0] and "--quick: no tiny run" in done.stdout
    assert "balance: ran on tiny params" not in done.stdout and "crash: fails" not in done.stdout
    assert "3 of " in done.stdout and "checks failed (scoping, modeling, error_analysis)" in done.stdout
    one = reprobook("check", "--quick", "--stage", "data", cwd=broken["root"])
    assert one.stdout.splitlines()[1].startswith("data ") and len(one.stdout.splitlines()) == 3


def test_usage_errors_exit_2(broken, tmp_path):
    unknown = reprobook("check", "--stage", "nope", cwd=broken["root"], check=False)
    assert unknown.returncode == 2 and "Traceback" not in unknown.stderr
    assert "unknown stage 'nope'" in unknown.stderr and "balance" in unknown.stderr
    (tmp_path / "params.yaml").write_text("data: {}\n")
    no_stages = reprobook("check", "--quick", cwd=tmp_path, check=False)
    assert no_stages.returncode == 2 and "dvc.yaml: not found" in no_stages.stderr


def test_check_params_are_dotted_keys_of_other_sections():
    assert parse_params({}).check.params["data.n_rows"] == 600
    with pytest.raises(ReprobookError, match="check.params.*'model params'.*dotted params key"):
        parse_params({"check": {"params": {"model params": 3}}})
    with pytest.raises(ReprobookError, match="'check.params.x'"):
        parse_params({"check": {"params": {"check.params.x": 1}}})
