"""``reprobook run``: the whole pipeline as one MLflow run with a child run per stage.

DVC decides what to run (``dvc repro`` reruns only what changed; with ``-S``
overrides, ``dvc exp run --temp`` runs a variant in a copy, ``params.yaml``
untouched). reprobook hands a group key to every stage through the
environment; the first stage that runs creates the pipeline run and the
others join it (see :mod:`reprobook.tracking.groups`), so the MLflow UI shows
one execution as a unit and an execution with nothing to rerun leaves no run.
SIGINT and SIGTERM stop DVC and its stages, which end their runs as KILLED;
the pipeline run is ended KILLED too.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from reprobook.execution import restore
from reprobook.execution.processes import console_script
from reprobook.project.params import project_params
from reprobook.tracking import groups, orphans, secrets

INTERRUPTED_EXIT = 130
GRACE_SECONDS = 20.0
POLL_SECONDS = 0.25


@dataclass
class PipelineResult:
    root: Path
    run_id: str | None
    ok: bool
    seconds: float
    stage_runs: dict[str, str] = field(default_factory=dict)
    data: str = ""
    variant: str | None = None
    interrupted: str | None = None
    uncommitted: list[str] = field(default_factory=list)
    restored: list[str] = field(default_factory=list)
    experiment_id: str | None = None

    def summary(self) -> str:
        from reprobook.tracking import store

        restored = [f"  restored: the last good {', '.join(self.restored)} (from the DVC cache and git)"
                    ] if self.restored else []
        if self.run_id is None:
            if self.interrupted:
                return "\n".join([f"pipeline interrupted ({self.interrupted}) after {self.seconds:.1f}s; "
                                  "no stage had started", *restored])
            if not self.ok:
                return "\n".join([f"pipeline FAILED in {self.seconds:.1f}s before any stage ran "
                                  "(see DVC's message above)", *restored])
            return f"up to date: nothing to rerun ({self.seconds:.1f}s); `reprobook run --force` reruns every stage"
        verdict = f"interrupted ({self.interrupted})" if self.interrupted else "finished" if self.ok else "FAILED"
        ran = ", ".join(self.stage_runs) or "none"
        what = f"experiment {self.variant}" if self.variant else "pipeline"
        lines = [f"{what} {verdict} in {self.seconds:.1f}s (MLflow run {self.run_id}); stages run: {ran}"]
        if self.variant:
            lines.append(
                f"  params.yaml unchanged; compare: dvc exp show  |  keep it: dvc exp apply {self.variant}"
            )
        if self.data:
            lines.append(f"  data:     {self.data}")
        lines += restored
        if self.uncommitted and self.ok:
            # `dvc metrics diff` compares with the commit: results left uncommitted have nothing to compare to.
            lines.append(f"  commit:   {commit_command(self.uncommitted)}   (new results)")
        lines += [
            f"  reports:  {self.root / 'reports'}/<stage>/notebook.html",
            "  metrics:  dvc metrics show   |  plots: dvc plots show",
            f"  runs:     reprobook runs     |  mlflow ui --backend-store-uri {store.tracking_uri(self.root)}",
        ]
        if self.experiment_id:
            from reprobook.tracking.presentation import ui_path

            uri = store.tracking_uri(self.root)
            host = secrets.redact_text(uri.rstrip("/")) if uri.startswith(("http://", "https://")) else "http://127.0.0.1:5000"
            lines.append(f"  compare:  {host}/{ui_path(self.experiment_id)}")
        return "\n".join(lines)

    @property
    def exit_code(self) -> int:
        return INTERRUPTED_EXIT if self.interrupted else 0 if self.ok else 1


def commit_command(paths: list[str]) -> str:
    """The shell line committing exactly ``paths`` (what the run changed that git tracks): a clean tree after it."""
    import shlex

    return f"git add -- {' '.join(shlex.quote(path) for path in paths)} && git commit -m '...'"


def dvc_executable() -> str:
    """The dvc installed beside this Python (the project's virtual environment)."""
    return console_script("dvc")


def dvc_command(*, force: bool, overrides: list[str]) -> list[str]:
    if overrides:
        sets = [arg for override in overrides for arg in ("-S", override)]
        return [dvc_executable(), "exp", "run", "--quiet", "--temp", *sets, *(["--force"] if force else [])]
    # Quiet: DVC's own hints ("Use `dvc push`", "To track the changes with git") would contradict
    # the summary, which pushes the data and says what to commit; errors are still printed.
    return [dvc_executable(), "repro", "--quiet", *(["--force"] if force else [])]


def run_pipeline(root: Path, *, force: bool = False, overrides: list[str] | None = None) -> PipelineResult:
    overrides = list(overrides or [])
    from reprobook.project import preflight

    # Before DVC deletes any stage's outputs: a mistake in params.yaml or an override, the store, the disk.
    preflight.check(root, project_params(root, overrides))
    from reprobook.warm import client as warm

    warm.prestart()  # loads while DVC starts and checks what changed: the stages are forked from it
    if overrides:
        from reprobook.tracking import gitinfo

        gitinfo.require_identity(root)
    outer_run = os.environ.get("MLFLOW_RUN_ID")  # under `mlflow run` the project run is the pipeline run
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="reprobook-run-") as scratch:
        parent_file = Path(scratch) / "parent_run_id"
        env = {**os.environ, groups.GROUP_ENV: groups.new_group_key(), groups.GROUP_FILE_ENV: str(parent_file),
               orphans.OWNER_PID_ENV: str(os.getpid())}
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        if overrides:
            from reprobook.tracking.presentation import short_overrides

            env[groups.NAME_ENV] = secrets.redact_text(short_overrides(overrides))
        returncode, interrupted = _run_interruptible(dvc_command(force=force, overrides=overrides), root, env,
                                                     warm_up_when=parent_file)
        parent = outer_run or (parent_file.read_text().strip() if parent_file.is_file() else None)
    ok = returncode == 0 and interrupted is None
    # A failed or interrupted stage has lost its outputs to DVC: put the last good ones back.
    restored = [] if ok or overrides else restore.restore_last_good(root, dvc_executable())
    if parent is None:
        return PipelineResult(root, None, ok, time.time() - started, interrupted=interrupted, restored=restored)
    result = _close(root, parent, ok=ok, started=started, overrides=overrides, interrupted=interrupted,
                    end=not outer_run)
    result.restored = restored
    return result


def _close(root: Path, parent: str, *, ok: bool, started: float, overrides: list[str], interrupted: str | None,
           end: bool) -> PipelineResult:
    """Tag the pipeline run with what ran, push the data it used, and end it."""
    from reprobook.reproduce import remote
    from reprobook.tracking import gitinfo, store
    from reprobook.tracking.record import TAG_STAGES_RUN

    client = store.client(root)
    run = client.get_run(parent)
    stage_runs = groups.stages_of(client, run.info.experiment_id, parent)
    client.set_tag(parent, TAG_STAGES_RUN, ",".join(stage_runs) or "none")
    if store.TAG_STAGE not in run.data.tags:  # `mlflow run`'s project run: mark it as the pipeline run it is
        client.set_tag(parent, store.TAG_STAGE, "pipeline")
    variant = None
    if overrides:
        client.set_tag(parent, groups.TAG_OVERRIDES, secrets.redact_text(" ".join(overrides)))
        variant = run.data.tags.get(store.TAG_DVC_EXP) or run.info.run_name  # the run is named after the overrides
    # Push the data the runs used, so a clone elsewhere can reproduce them; the runs say whether it was.
    # A variant's outputs live in its DVC experiment, not the workspace: they are shared with `dvc exp push`.
    data = remote.push_after_run(root, [parent, *stage_runs.values()]) if ok and not overrides else ""
    if end:
        status = "KILLED" if interrupted else "FINISHED" if ok else "FAILED"
        client.set_terminated(parent, status)
    uncommitted = [] if overrides else gitinfo.uncommitted_results(root)
    return PipelineResult(root, parent, ok, time.time() - started, stage_runs, data, variant, interrupted, uncommitted,
                          experiment_id=run.info.experiment_id)


def _run_interruptible(command: list[str], root: Path, env: dict[str, str],
                       warm_up_when: Path | None = None) -> tuple[int, str | None]:
    """Run DVC in its own process group; pass SIGINT/SIGTERM on to the whole group as SIGTERM.

    SIGTERM, because SIGINT may be ignored: a shell starts background jobs with
    SIGINT ignored, and their children inherit that. The stage under DVC turns
    SIGTERM into a clean stop (kernel shut down, run ended KILLED); what is still
    alive after a grace period gets SIGKILL.

    Once ``warm_up_when`` exists (the first stage has opened the pipeline run),
    MLflow is imported and the store opened in the background, for closing
    the pipeline run: a second and a half of this process's idle time instead
    of the end of the pipeline's. A run with nothing to do never imports it.
    """
    process = subprocess.Popen(command, cwd=root, env=env, start_new_session=True)
    warming: list[threading.Thread] = []
    received: list[str] = []

    def forward(signum: int, frame: object) -> None:
        received.append(signal.Signals(signum).name)
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while True:
            try:
                returncode = process.wait(timeout=GRACE_SECONDS if received else POLL_SECONDS)
                break
            except subprocess.TimeoutExpired:
                if not received:
                    if not warming and warm_up_when is not None and warm_up_when.exists():
                        warming.append(threading.Thread(target=_open_store, args=(root,), daemon=True))
                        warming[0].start()
                    continue
                received.append(signal.SIGKILL.name)
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for thread in warming:
            thread.join()  # never left importing at interpreter exit
    return returncode, (received[0] if received else None)


def _open_store(root: Path) -> None:
    """Import MLflow and open the project's store (MLflow keeps the store per URI for the process)."""
    from reprobook.tracking import store

    try:
        store.client(root).search_experiments(max_results=1)
    except Exception:  # noqa: BLE001  a warm-up only: closing the run opens the store again and reports
        pass
