"""What a stage notebook sets up first: project root, the params it reads, its output folders.

The same call works under papermill (the declared params injected into the
``parameters`` cell) and in Jupyter (read from ``params.yaml``), so an
interactive run gives the same result as the pipeline. Either way the
notebook sees only the params its ``dvc.yaml`` entry declares: reading
another is an error naming the key to declare, so DVC's rerun decisions hold.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from reprobook.project.params import DeclaredParams, Params, parse_params, project_params
from reprobook.project.paths import DVC_FILE, project_root, reports_dir
from reprobook.project.stages import load_stages


@dataclass(frozen=True)
class StageContext:
    stage: str
    root: Path
    params: Params | DeclaredParams
    """The stage's declared params (a read-only view of :class:`Params`)."""
    interactive: bool = False
    """True in Jupyter (params read from params.yaml), False under the pipeline (params injected)."""
    started: float = field(default_factory=time.time)

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

    def record(self) -> str | None:
        """Record this interactive run in MLflow (opt-in: call it in a last cell); return the run id.

        The run carries the same record as a pipeline run (params, metrics,
        outputs, plots, code version, environment, input digests) plus the
        notebook's source, is tagged ``reprobook.interactive=true``, and never
        registers a model: exploration can be compared with ``reprobook
        compare`` without touching the registry. Under the pipeline it does
        nothing, since the runner records the stage itself.
        """
        if not self.interactive:
            return None
        import importlib

        from reprobook.project.stages import get_stage

        # Imported by name on purpose: recording changes no output of the stage, so the tracking
        # modules must not enter the stage's code fingerprint (an edit there would rerun every stage).
        writer = importlib.import_module("reprobook.tracking.writer")
        stage = get_stage(self.root, self.stage)
        params = project_params(self.root)
        run_id = writer.start_stage_run(stage, self.root, params, started_ms=int(self.started * 1000), interactive=True)
        writer.finish_stage_run(run_id, stage, self.root, params, error=None, interactive=True)
        print(f"recorded interactive run {run_id} of stage '{self.stage}' in MLflow")
        return run_id


def setup(stage: str, params: dict[str, Any] | None = None, project_dir: str | None = None) -> StageContext:
    """Resolve the project, validate params, seed global RNGs, create the report folders."""
    _inline_plots()
    root = Path(project_dir).resolve() if project_dir else project_root()
    validated = parse_params(params, source=f"{stage} parameters") if params is not None else project_params(root)
    declared = load_stages(root).get(stage) if (root / DVC_FILE).is_file() else None
    view = DeclaredParams(validated, declared.params, stage) if declared else validated
    # Library code uses explicit generators; this guards user code in notebooks.
    seed = validated.data.seed if declared is None or declared.reads("data.seed") else 0
    random.seed(seed)
    np.random.seed(seed)
    context = StageContext(stage=stage, root=root, params=view, interactive=params is None)
    for folder in (context.outputs, context.plots):
        folder.mkdir(parents=True, exist_ok=True)
    return context


def _inline_plots() -> None:
    """Inside a Jupyter kernel, pyplot figures show inline, in Jupyter and in the executed report.

    A pipeline run may start the kernel with ``MPLBACKEND=Agg`` (no display):
    figures a notebook draws with pyplot would then be lost to the report. The
    library's own plots do not need this (they are displayed by
    :func:`reprobook.ml.plots.show`). Outside a kernel nothing changes.
    """
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython comes with ipykernel
        return
    shell = get_ipython()
    if shell is None or not hasattr(shell, "kernel"):
        return
    import matplotlib

    if matplotlib.get_backend().lower() == "agg":  # a backend the user chose (inline, widget) stays
        shell.run_line_magic("matplotlib", "inline")


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
