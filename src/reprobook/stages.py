"""The pipeline's stages as data: name, notebook, and the data files each reads.

``dvc.yaml`` runs ``reprobook stage NAME`` for each; the input files listed
here are the ones whose digests go into the stage's MLflow run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from reprobook.errors import UsageError
from reprobook.layout import MODEL_FILE, PREDICTIONS_FILE, TARGETS_FILE, TEST_FILE, TRAIN_FILE, source_file
from reprobook.params import Params


@dataclass(frozen=True)
class Stage:
    name: str
    notebook: str
    inputs: Callable[[Params, Path], list[Path]]


def _source(params: Params, root: Path) -> list[Path]:
    path = source_file(params.data.source, root)
    schema = [root / params.data.schema_file] if params.data.schema_file else []
    return ([path] if path else []) + schema


STAGES: dict[str, Stage] = {
    "scoping": Stage("scoping", "notebooks/01_scoping.ipynb", _source),
    "data": Stage("data", "notebooks/02_data.ipynb", lambda p, r: _source(p, r) + [r / TARGETS_FILE]),
    "modeling": Stage(
        "modeling", "notebooks/03_modeling.ipynb", lambda p, r: [r / TRAIN_FILE, r / TEST_FILE, r / TARGETS_FILE]
    ),
    "error_analysis": Stage(
        "error_analysis",
        "notebooks/04_error_analysis.ipynb",
        lambda p, r: [r / TEST_FILE, r / MODEL_FILE, r / PREDICTIONS_FILE, r / TARGETS_FILE],
    ),
}
ORDER = tuple(STAGES)


def get_stage(name: str) -> Stage:
    if name not in STAGES:
        raise UsageError(f"unknown stage '{name}'; expected one of: {', '.join(STAGES)}")
    return STAGES[name]


def report_files(root: Path, stage: str) -> dict[str, Path]:
    """Where a stage's executed notebook, HTML, metrics and timings are written."""
    folder = root / "reports" / stage
    return {
        "notebook": folder / "notebook.ipynb",
        "html": folder / "notebook.html",
        "metrics": folder / "metrics.json",
        "timings": folder / "timings.json",
        "outputs": folder / "outputs",
        "plots": folder / "plots",
    }
