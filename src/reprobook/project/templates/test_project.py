"""This project's own checks: params and stages are valid, and the committed pipeline runs from a clean clone."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_params_and_stages_are_valid():
    from reprobook.project.params import project_params
    from reprobook.project.stages import load_stages

    project_params(ROOT)
    stages = load_stages(ROOT)
    assert stages, "dvc.yaml declares no reprobook stage"
    for stage in stages.values():
        cells = json.loads((ROOT / stage.notebook).read_text())["cells"]
        assert any("parameters" in cell.get("metadata", {}).get("tags", []) for cell in cells), stage.notebook


def test_pipeline_runs_from_a_clean_clone(tmp_path):
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    dvc = shutil.which("dvc") or "dvc"
    subprocess.run([dvc, "cache", "dir", "--local", str(ROOT / ".dvc" / "cache")], cwd=clone, check=True, env=env)
    subprocess.run([dvc, "remote", "add", "--local", "-f", "-d", "storage", str(tmp_path / "remote")], cwd=clone,
                   check=True, env=env)
    subprocess.run([dvc, "checkout", "--quiet"], cwd=clone, env=env)
    subprocess.run(["reprobook", "run", "--force"], cwd=clone, check=True, env=env)
    for report in (clone / "reports").iterdir():
        assert (report / "notebook.html").is_file(), f"{report.name}: no executed notebook"
