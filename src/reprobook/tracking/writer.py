"""The run record of a stage execution, written to MLflow from the stage's files.

One MLflow run per stage execution: tags (stage, commit, dirty flag, parent
pipeline run), the params the stage declares (flattened) and every seed,
metrics and timings, the executed notebook and its HTML, outputs and plots,
and the ``record/`` artifacts that ``reproduce`` and ``compare`` read (see
docs/run-record.md). A stage that writes the model file registers the model.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reprobook.project.params import Params, flatten, seeds, stage_params
from reprobook.project.paths import MODEL_FILE, report_files, source_file
from reprobook.project.stages import FINGERPRINT_DIR, Stage
from reprobook.tracking import environment, gitinfo, orphans, secrets, store

IGNORED_INPUTS = (".gitignore", ".gitkeep")


def input_files(root: Path, stage: Stage, params: Params) -> list[Path]:
    """The data files a stage reads: its dvc.yaml deps (folders expanded), and a source outside the project."""
    files: list[Path] = []
    for dep in stage.deps:
        if dep.startswith(FINGERPRINT_DIR):
            continue
        path = root / dep
        found = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        files.extend(p for p in found if p.name not in IGNORED_INPUTS and p.suffix != ".dvc")
    if stage.reads("data.source"):
        source = source_file(params.data.source, root)
        if source is not None and not source.resolve().is_relative_to(root.resolve()):
            files.append(source)
    return files


def registers_model(stage: Stage) -> bool:
    return MODEL_FILE in stage.outs


def will_register(stage: Stage, tags: dict[str, str], *, interactive: bool = False) -> bool:
    """Whether a successful run of ``stage`` with ``tags`` registers its model. A reproduction re-creates
    a model already registered, and an interactive run is exploration: neither registers one."""
    from reprobook.tracking.record import TAG_REPRODUCTION_OF

    return registers_model(stage) and not interactive and TAG_REPRODUCTION_OF not in tags


@dataclass(frozen=True)
class RunExtras:
    """What a run of a stage outside the pipeline adds to its record (a monitored batch)."""

    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    step: int = 0
    """The step of every metric: the batch index, so the MLflow UI charts batches over time."""
    grouped: bool = True
    """Whether the run joins the current pipeline run (a monitored batch is not part of a pipeline)."""
    run_name: str | None = None
    """The name the MLflow UI shows (a monitored batch: its index and model version)."""
    datasets: tuple[tuple[Path, str], ...] = ()
    """Data the run read beside its stage's deps, with its MLflow dataset context (a batch, a reference)."""


def start_stage_run(stage: Stage, root: Path, params: Params, *, started_ms: int, interactive: bool = False,
                    extras: RunExtras = RunExtras()) -> str:
    """Create the stage's MLflow run (RUNNING) with its tags and params; return its id.

    Created when the stage starts, so a stage that is killed is on record.
    """
    from mlflow.entities import Param

    from reprobook.tracking import groups

    client = store.client(root)
    experiment = store.experiment_id(client, params.tracking.experiment, root, experiment_tags(root, params))
    code = gitinfo.code_version(root)
    tags = {
        store.TAG_STAGE: stage.name,
        store.TAG_COMMIT: code.commit or "none",
        store.TAG_DIRTY: str(code.dirty).lower(),
        "mlflow.source.git.commit": code.commit or "",
        "mlflow.source.name": stage.notebook,
        **store.context_tags(),
    }
    tags.update(orphans.owner_tags())
    ended = orphans.end_orphans(client, experiment)
    if ended:
        print(f"note: {len(ended)} run(s) left RUNNING by a process that no longer exists marked KILLED: "
              f"{', '.join(r[:8] for r in ended)}", file=sys.stderr)
    tags.update(extras.tags)
    if interactive:
        tags[store.TAG_INTERACTIVE] = "true"
    parent_name = None
    if not interactive and extras.grouped:
        parent = groups.parent_for_stage(client, experiment, root, pipeline_params(root, params), started_ms)
        if parent:
            tags[store.TAG_PARENT] = tags[store.TAG_PIPELINE] = parent[0]
            parent_name = parent[1]
    from reprobook.tracking.presentation import stage_name
    from reprobook.tracking.record import TAG_REPRODUCTION_OF

    name = extras.run_name or stage_name(stage.name, parent_name, tags.get(TAG_REPRODUCTION_OF, ""))
    run_id = client.create_run(experiment, start_time=started_ms, tags=tags, run_name=name).info.run_id
    logged = secrets.redact_params({**flatten(stage_params(params, stage.params, stage.name)),
                                    **{f"seed.{k}": v for k, v in seeds(params).items()}, **extras.params})
    client.log_batch(
        run_id,
        params=[Param(k, json.dumps(v) if not isinstance(v, str) else v) for k, v in sorted(logged.items())],
    )
    return run_id


def finish_stage_run(run_id: str, stage: Stage, root: Path, params: Params, *, error: str | None,
                     interactive: bool = False, extras: RunExtras = RunExtras(), logged_model: str | None = None) -> str:
    """Complete the run record from the stage's files, register the model, end the run; return its status.

    ``logged_model`` is the id of the model already logged to the run while the
    stage ran (:func:`reprobook.tracking.registry.log_model`): it is registered
    as it is rather than logged again, and the run's metrics are linked to it,
    as MLflow links them to a model logged after them.

    Round trips to the store are few: the metrics and tags in one batch, every
    file of the record (notebook, HTML, outputs, plots, metrics, ``record/``)
    in one upload.
    """
    from mlflow.entities import Metric, RunTag

    from reprobook.tracking import groups, presentation

    files = report_files(root, stage.name)
    client = store.client(root)
    run = client.get_run(run_id)
    tags = run.data.tags
    status = "FAILED" if error else "FINISHED"
    try:
        stage_metrics = _read_json(files["metrics"])
        metrics = store.metrics_for_mlflow(stage_metrics) | presentation.primary_metrics(stage_metrics) | {
            f"timing.{k}": v for k, v in _read_metrics(files["timings"]).items()
        }
        now = int(time.time() * 1000)
        digest = _prediction_digest(files["digest"])
        extra_tags = [RunTag(store.TAG_ERROR, secrets.redact_text(error)[:5000])] if error else []
        if digest:
            extra_tags.append(RunTag(store.TAG_PREDICTION_DIGEST, digest))
        logged = [Metric(k, v, now, extras.step) for k, v in sorted(metrics.items())]
        if logged_model and not error:
            logged += [Metric(k, v, now, extras.step, model_id=logged_model, run_id=run_id) for k, v in sorted(metrics.items())]
        client.log_batch(run_id, metrics=logged, tags=extra_tags)
        _log_datasets(client, run_id, root, stage, params, extras)
        promotion = None
        try:
            if not error and will_register(stage, tags, interactive=interactive):
                from reprobook.tracking.registry import log_and_register

                try:
                    promotion = log_and_register(client, run_id, root, params, logged=logged_model)
                except Exception as exc:
                    client.set_tag(run_id, store.TAG_ERROR, secrets.redact_text(f"registration: {exc}")[:5000])
                    raise
            client.set_tag(run_id, presentation.TAG_NOTE, presentation.stage_note(
                stage.name, run_id, stage_metrics, error=error, promotion=_promotion_facts(client, run_id, promotion),
                has_report=not interactive))
        finally:
            _log_files(client, run_id, root, stage, _record(root, stage, params, gitinfo.code_version(root)),
                       interactive)
    except BaseException as exc:
        status = "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED"
        raise
    finally:
        client.set_terminated(run_id, status)
        groups.stage_ended(client, tags.get(store.TAG_PIPELINE), status)
    return status


def experiment_tags(root: Path, params: Params) -> dict[str, str]:
    """The experiment's kind and description, with the task and target the last scoping run decided."""
    from reprobook.project.paths import TARGETS_FILE
    from reprobook.tracking.presentation import experiment_tags as tags

    decided = _read_json(root / TARGETS_FILE)
    task = params.scoping.task if params.scoping.task in ("classification", "regression") else decided.get("task")
    return tags(params.tracking.experiment, task, params.data.target or decided.get("target"),
                params.model.registered_name)


def _promotion_facts(client, run_id: str, promotion) -> dict[str, str] | None:
    """What the registry decided for this run's model version, for its description."""
    if promotion is None:
        return None
    from reprobook.tracking.registry import CHAMPION, CHALLENGER

    versions = client.search_model_versions(f"run_id = '{run_id}'", max_results=1)
    if not versions:
        return None
    return {"model": versions[0].name, "version": str(versions[0].version),
            "decision": f"@{CHAMPION if promotion.promoted else CHALLENGER}", "reason": promotion.reason}


def _log_datasets(client, run_id: str, root: Path, stage: Stage, params: Params, extras: RunExtras) -> None:
    """The data files the stage read and wrote (and a batch's), as MLflow dataset inputs with DVC digests."""
    from reprobook.tracking import presentation

    read = [p for p in input_files(root, stage, params) if presentation.is_data_file(p)]
    written = [root / out for out in stage.outs if presentation.is_data_file(Path(out))]
    files = [*((p, presentation.data_context(_shown(root, p))) for p in [*read, *written]), *extras.datasets]
    inputs = presentation.dataset_inputs(root, files, store.input_digests(root, [p for p, _ in files]))
    if inputs:
        client.log_inputs(run_id, datasets=inputs)


def _shown(root: Path, path: Path) -> str:
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def _log_files(client, run_id: str, root: Path, stage: Stage, record: dict[str, str], interactive: bool) -> None:
    """Every file of the run record, staged in the artifact layout and uploaded in one call.

    Staged as hard links where the file system allows (a copy elsewhere):
    outputs can be large, and staging must not double the disk they take.
    """
    import tempfile

    files = report_files(root, stage.name)
    with tempfile.TemporaryDirectory(prefix="reprobook-record-") as scratch:
        staged = Path(scratch)
        # An interactive run's report is the notebook open in Jupyter, not the last pipeline report.
        for key in () if interactive else ("notebook", "html"):
            if files[key].is_file():
                _stage_file(files[key], staged / "notebook" / files[key].name)
        if interactive and (root / stage.notebook).is_file():
            _write(staged / "notebook" / Path(stage.notebook).name,
                   secrets.redact_notebook((root / stage.notebook).read_text()))
        for key in ("outputs", "plots"):
            if files[key].is_dir():
                for path in sorted(p for p in files[key].rglob("*") if p.is_file()):
                    _stage_file(path, staged / key / path.relative_to(files[key]))
        for key in ("metrics", "timings"):
            if files[key].is_file():
                _stage_file(files[key], staged / "metrics" / files[key].name)
        for name, text in record.items():
            _write(staged / store.RECORD_DIR / name, secrets.redact_text(text))
        client.log_artifacts(run_id, str(staged))


def _stage_file(source: Path, target: Path) -> None:
    import shutil

    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:  # another file system, or links not allowed
        shutil.copy2(source, target)


def _write(target: Path, text: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)


def end_run(root: Path, run_id: str, reason: str, status: str = "KILLED") -> None:
    """End a run that stopped before its record was complete (a signal, an error), saying why."""
    from reprobook.tracking import groups

    client = store.client(root)
    client.set_tag(run_id, store.TAG_ERROR, secrets.redact_text(reason)[:5000])
    client.set_terminated(run_id, status)
    groups.stage_ended(client, client.get_run(run_id).data.tags.get(store.TAG_PIPELINE), status)


def pipeline_params(root: Path, params: Params) -> dict[str, Any]:
    """What a pipeline run logs: the params some stage declares, flattened (not every default)."""
    from reprobook.project.stages import load_stages

    declared = sorted({key for stage in load_stages(root).values() for key in stage.params})
    flat = flatten(params.model_dump(mode="json"))
    return secrets.redact_params({
        key: value for key, value in flat.items()
        if any(key == d or key.startswith(f"{d}.") for d in declared) or key == "tracking.experiment"
    })


def _record(root: Path, stage: Stage, params: Params, code: gitinfo.CodeVersion) -> dict[str, str]:
    """The ``record/`` artifacts that reproduction reads, by file name (redacted when logged)."""
    record = {
        "params.yaml": _yaml(secrets.redact_params(params.model_dump(mode="json"))),
        "environment.json": json.dumps(environment.capture(), indent=2, sort_keys=True),
        "inputs.json": json.dumps(store.input_digests(root, input_files(root, stage, params)), indent=2, sort_keys=True),
        "code.json": json.dumps(
            {"commit": code.commit, "dirty": code.dirty, "status": code.status}, indent=2, sort_keys=True
        ),
        "seeds.json": json.dumps(seeds(params), indent=2, sort_keys=True),
    }
    for name in ("dvc.lock", "dvc.yaml", stage.fingerprint):
        if (root / name).is_file():
            record[Path(name).name if name != stage.fingerprint else "code_fingerprint.json"] = (root / name).read_text()
    if code.dirty and code.diff:
        record["git.diff"] = code.diff
    return record


def _yaml(payload: Any) -> str:
    import yaml

    return yaml.safe_dump(payload, sort_keys=False)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def _read_metrics(path: Path) -> dict[str, float]:
    if not path.is_file():
        return {}
    return store.metrics_for_mlflow(json.loads(path.read_text()))


def _prediction_digest(path: Path) -> str | None:
    if not path.is_file():
        return None
    return json.loads(path.read_text()).get("prediction_digest")
