"""``reprobook run``: the whole pipeline as one MLflow run with a child run per stage.

DVC decides what to run (``dvc repro`` reruns only what changed); reprobook
opens a pipeline-level run first and hands its id to every stage through the
environment, so the MLflow UI shows one pipeline execution as a unit.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from reprobook import gitinfo, remote, tracking
from reprobook.params import flatten, load_params
from reprobook.paths import PARAMS_FILE


@dataclass
class PipelineResult:
    root: Path
    run_id: str
    ok: bool
    seconds: float
    stage_runs: dict[str, str] = field(default_factory=dict)
    data: str = ""

    def summary(self) -> str:
        verdict = "finished" if self.ok else "FAILED"
        ran = ", ".join(self.stage_runs) or "none (everything up to date)"
        return "\n".join(
            [
                f"pipeline {verdict} in {self.seconds:.1f}s (MLflow run {self.run_id}); stages run: {ran}",
                *([f"  data:     {self.data}"] if self.data else []),
                f"  reports:  {self.root / 'reports'}/<stage>/notebook.html",
                f"  metrics:  dvc metrics show   |  plots: dvc plots show",
                f"  runs:     reprobook runs     |  mlflow ui --backend-store-uri {tracking.tracking_uri(self.root)}",
            ]
        )


def dvc_executable() -> str:
    """The dvc installed beside this Python (the project's virtual environment)."""
    candidate = Path(sys.executable).parent / "dvc"
    return str(candidate) if candidate.exists() else "dvc"


def run_pipeline(root: Path, *, force: bool = False) -> PipelineResult:
    params = load_params(root / PARAMS_FILE)
    client = tracking.client(root)
    experiment = tracking.experiment_id(client, params.tracking.experiment, root)
    code = gitinfo.code_version(root)
    started = time.time()
    tags = {
        tracking.TAG_STAGE: "pipeline",
        tracking.TAG_COMMIT: code.commit or "none",
        tracking.TAG_DIRTY: str(code.dirty).lower(),
        "mlflow.source.git.commit": code.commit or "",
    }
    # Under `mlflow run` (MLproject) the project run is the pipeline run; it ends it too.
    outer_run = os.environ.get("MLFLOW_RUN_ID")
    if outer_run:
        run_id = outer_run
        for key, value in tags.items():
            client.set_tag(run_id, key, value)
    else:
        run_id = client.create_run(experiment, run_name="pipeline", tags={**tags, **tracking.context_tags()}).info.run_id
    for key, value in sorted(flatten(params.model_dump(mode="json")).items()):
        client.log_param(run_id, key, str(value))
    env = {**os.environ, tracking.PARENT_ENV: run_id}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    command = [dvc_executable(), "repro", *(["--force"] if force else [])]
    completed = subprocess.run(command, cwd=root, env=env)
    ok = completed.returncode == 0
    children = client.search_runs(
        [experiment], filter_string=f"tags.`{tracking.TAG_PIPELINE}` = '{run_id}'", order_by=["attributes.start_time ASC"]
    )
    stage_runs = {child.data.tags.get(tracking.TAG_STAGE, "?"): child.info.run_id for child in children}
    client.set_tag(run_id, "reprobook.stages_run", ",".join(stage_runs) or "none")
    # Push the data the runs used, so a clone elsewhere can reproduce them; the runs say whether it was.
    data = remote.push_after_run(root, [run_id, *stage_runs.values()]) if ok else ""
    if not outer_run:
        client.set_terminated(run_id, "FINISHED" if ok else "FAILED")
    return PipelineResult(
        root=root, run_id=run_id, ok=ok, seconds=time.time() - started, stage_runs=stage_runs, data=data
    )
