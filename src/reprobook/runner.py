"""Execute one stage notebook through papermill and record it as an MLflow run.

The notebook runs in a real Jupyter kernel with the stage's params injected;
the executed copy (with the failing cell marked, if any) and its HTML are kept
under ``reports/<stage>/``. Tracking happens here, outside the kernel, from the
stage's files: the notebook stays a plain notebook that also runs in Jupyter,
and MLflow's import cost overlaps kernel execution in a background thread.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reprobook import environment, gitinfo, tracking
from reprobook.errors import ReprobookError, UsageError
from reprobook.params import Params, flatten, load_params, seeds, stage_params
from reprobook.paths import PARAMS_FILE
from reprobook.stages import get_stage, report_files

KERNEL_NAME = "reprobook"


class StageFailed(ReprobookError):
    """A stage notebook raised; the message names the cell and the error."""


@dataclass(frozen=True)
class StageOutcome:
    stage: str
    run_id: str
    status: str
    notebook: Path
    html: Path
    seconds: float
    error: str | None = None


def _warm_mlflow() -> threading.Thread:
    def target() -> None:
        import mlflow  # noqa: F401
        import mlflow.sklearn  # noqa: F401

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def _ipc_kernel_manager() -> type:
    """A kernel manager on local IPC sockets: no TCP ports opened, nothing sent in clear."""
    from jupyter_client.manager import AsyncKernelManager

    class IPCKernelManager(AsyncKernelManager):
        transport = "ipc"

    return IPCKernelManager


def execute_notebook(stage: str, root: Path, params: Params, progress: bool) -> tuple[Path, str | None]:
    """Run the stage notebook; return the executed notebook and the error message, if any."""
    import papermill
    from jupyter_client.kernelspec import NoSuchKernel
    from papermill.exceptions import PapermillExecutionError

    spec = get_stage(stage)
    source = root / spec.notebook
    if not source.is_file():
        raise UsageError(f"{spec.notebook}: stage notebook not found")
    executed = report_files(root, stage)["notebook"]
    executed.parent.mkdir(parents=True, exist_ok=True)
    try:
        papermill.execute_notebook(
            str(source),
            str(executed),
            parameters={"params": stage_params(params, stage), "project_dir": str(root)},
            kernel_name=KERNEL_NAME,
            cwd=str(root),
            progress_bar=progress,
            log_output=False,
            kernel_manager_class=_ipc_kernel_manager(),
        )
    except PapermillExecutionError as exc:
        return executed, f"cell {exc.exec_count}: {exc.ename}: {exc.evalue}"
    except NoSuchKernel:
        raise UsageError(
            f"Jupyter kernel '{KERNEL_NAME}' is not installed; run `make setup` "
            f"(or `python -m ipykernel install --sys-prefix --name {KERNEL_NAME}`)"
        ) from None
    return executed, None


def export_html(notebook: Path) -> Path:
    import nbformat
    from nbconvert import HTMLExporter

    html, _ = HTMLExporter().from_notebook_node(nbformat.read(notebook, as_version=4))
    target = notebook.with_suffix(".html")
    target.write_text(html)
    return target


def run_stage(stage: str, root: Path, *, progress: bool = True) -> StageOutcome:
    """Execute ``stage`` and record it; raise :class:`StageFailed` if the notebook failed."""
    get_stage(stage)
    params = load_params(root / PARAMS_FILE)
    started = time.time()
    warm = _warm_mlflow()
    notebook, error = execute_notebook(stage, root, params, progress)
    html = export_html(notebook)
    warm.join()
    run_id = record_run(stage, root, params, started_ms=int(started * 1000), error=error)
    outcome = StageOutcome(stage, run_id, "FAILED" if error else "FINISHED", notebook, html, time.time() - started, error)
    if error:
        raise StageFailed(
            f"stage '{stage}' failed in {error}\n"
            f"  executed notebook (failing cell marked): {notebook.relative_to(root)}\n"
            f"  MLflow run {run_id} marked FAILED"
        )
    return outcome


def record_run(stage: str, root: Path, params: Params, *, started_ms: int, error: str | None) -> str:
    """Create the stage's MLflow run with the full run record; return its id."""
    files = report_files(root, stage)
    client = tracking.client(root)
    experiment = tracking.experiment_id(client, params.tracking.experiment, root)
    code = gitinfo.code_version(root)
    tags = {
        tracking.TAG_STAGE: stage,
        tracking.TAG_COMMIT: code.commit or "none",
        tracking.TAG_DIRTY: str(code.dirty).lower(),
        "mlflow.source.git.commit": code.commit or "",
        "mlflow.source.name": get_stage(stage).notebook,
        **tracking.context_tags(),
    }
    if error:
        tags[tracking.TAG_ERROR] = error[:5000]
    run = client.create_run(experiment, start_time=started_ms, tags=tags, run_name=stage)
    run_id = run.info.run_id

    from mlflow.entities import Metric, Param, RunTag

    logged_params = {**flatten(stage_params(params, stage)), **{f"seed.{k}": v for k, v in seeds(params).items()}}
    metrics = _read_metrics(files["metrics"]) | {
        f"timing.{k}": v for k, v in _read_metrics(files["timings"]).items()
    }
    now = int(time.time() * 1000)
    digest = _prediction_digest(root, stage)
    client.log_batch(
        run_id,
        metrics=[Metric(k, v, now, 0) for k, v in sorted(metrics.items())],
        params=[Param(k, json.dumps(v) if not isinstance(v, str) else v) for k, v in sorted(logged_params.items())],
        tags=[RunTag(tracking.TAG_PREDICTION_DIGEST, digest)] if digest else [],
    )
    _log_record(client, run_id, root, stage, params, code)
    for key in ("notebook", "html"):
        if files[key].is_file():
            client.log_artifact(run_id, str(files[key]), "notebook")
    for key in ("outputs", "plots"):
        if files[key].is_dir():
            client.log_artifacts(run_id, str(files[key]), key)
    for key in ("metrics", "timings"):
        if files[key].is_file():
            client.log_artifact(run_id, str(files[key]), "metrics")
    # A reproduction re-creates a model that is already registered: don't register it again.
    if stage == "modeling" and not error and "reprobook.reproduction_of" not in tags:
        from reprobook.registry import log_and_register

        log_and_register(client, run_id, root, params)
    client.set_terminated(run_id, "FAILED" if error else "FINISHED")
    return run_id


def _log_record(client, run_id: str, root: Path, stage: str, params: Params, code: gitinfo.CodeVersion) -> None:
    """The ``record/`` artifacts that reproduction reads."""
    record = {
        "params.yaml": _yaml(params.model_dump(mode="json")),
        "environment.json": json.dumps(environment.capture(), indent=2, sort_keys=True),
        "inputs.json": json.dumps(
            tracking.input_digests(root, get_stage(stage).inputs(params, root)), indent=2, sort_keys=True
        ),
        "code.json": json.dumps(
            {"commit": code.commit, "dirty": code.dirty, "status": code.status}, indent=2, sort_keys=True
        ),
        "seeds.json": json.dumps(seeds(params), indent=2, sort_keys=True),
    }
    for name in ("dvc.lock", "dvc.yaml"):
        if (root / name).is_file():
            record[name] = (root / name).read_text()
    if code.dirty and code.diff:
        record["git.diff"] = code.diff
    for name, text in record.items():
        client.log_text(run_id, text, f"{tracking.RECORD_DIR}/{name}")


def _yaml(payload: Any) -> str:
    import yaml

    return yaml.safe_dump(payload, sort_keys=False)


def _read_metrics(path: Path) -> dict[str, float]:
    if not path.is_file():
        return {}
    return tracking.metrics_for_mlflow(json.loads(path.read_text()))


def _prediction_digest(root: Path, stage: str) -> str | None:
    path = root / "reports" / stage / "digest.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text()).get("prediction_digest")
