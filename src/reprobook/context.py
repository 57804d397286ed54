"""What a stage notebook sets up first: project root, validated params, output folder.

The same call works under papermill (params injected into the ``parameters``
cell) and in Jupyter (params read from ``params.yaml``), so an interactive run
gives the same result as the pipeline.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from reprobook.params import Params, load_params, parse_params
from reprobook.paths import PARAMS_FILE, project_root, reports_dir


@dataclass(frozen=True)
class StageContext:
    stage: str
    root: Path
    params: Params

    @property
    def out(self) -> Path:
        return reports_dir(self.root, self.stage)

    @property
    def outputs(self) -> Path:
        """Reports and tables (a DVC output folder)."""
        return self.out / "outputs"

    @property
    def plots(self) -> Path:
        """Plots: PNGs and the CSVs that ``dvc plots`` reads (a DVC output folder)."""
        return self.out / "plots"

    def path(self, relative: str) -> Path:
        return self.root / relative


def setup(stage: str, params: dict[str, Any] | None = None, project_dir: str | None = None) -> StageContext:
    """Resolve the project, validate params, seed global RNGs, create the report folder."""
    import matplotlib

    matplotlib.use("Agg")
    root = Path(project_dir).resolve() if project_dir else project_root()
    validated = parse_params(params, source=f"{stage} parameters") if params is not None else load_params(root / PARAMS_FILE)
    # Library code uses explicit generators; this guards user code in notebooks.
    random.seed(validated.data.seed)
    np.random.seed(validated.data.seed)
    context = StageContext(stage=stage, root=root, params=validated)
    for folder in (context.outputs, context.plots):
        folder.mkdir(parents=True, exist_ok=True)
    return context


def write_json(path: Path, payload: Any) -> Path:
    """Write JSON deterministically (sorted keys), so DVC hashes are stable."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, sort_keys=True, default=_jsonable) + "\n")
    return path


def read_json(path: Path) -> Any:
    from reprobook.errors import ReprobookError

    if not path.is_file():
        raise ReprobookError(f"{path}: not found; run the stage that writes it first (dvc repro)")
    return json.loads(path.read_text())


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
