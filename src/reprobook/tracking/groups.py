"""Parent runs: one MLflow run that groups the stage runs of one pipeline execution.

A parent is created by the first stage that actually runs, never up front, so
a pipeline with nothing to rerun leaves no empty run behind. The stages of one
execution find the same parent by a *group key* in their environment:

- ``reprobook run`` sets :data:`GROUP_ENV` to a fresh key and finalises the
  parent after ``dvc repro`` (or ``dvc exp run``) returns;
- ``dvc exp run`` (queued or not, run by anyone) sets ``DVC_EXP_NAME`` and
  ``DVC_EXP_BASELINE_REV``: the parent is named after the experiment, and each
  stage leaves it in the state of the last stage, since no outer process is
  there to close it;
- an explicit parent (``REPROBOOK_PARENT_RUN_ID``, or ``MLFLOW_RUN_ID`` under
  ``mlflow run``) is used as is.

Stages of one execution run one after another (DVC runs a pipeline's stages
in sequence), so find-or-create needs no lock; parallel queued experiments
have different keys.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from reprobook.tracking import gitinfo, orphans, store

GROUP_ENV = "REPROBOOK_PIPELINE_GROUP"
GROUP_FILE_ENV = "REPROBOOK_PIPELINE_GROUP_FILE"
NAME_ENV = "REPROBOOK_PIPELINE_NAME"
"""What ``reprobook run -S ...`` names its pipeline run: the overrides, shortened (``max_depth=6``)."""
"""Where the stage that creates a parent writes its id, so ``reprobook run`` learns
whether any stage ran without opening the tracking store (a no-op run stays fast)."""
TAG_GROUP = "reprobook.group"
TAG_OVERRIDES = "reprobook.overrides"
PIPELINE_STAGE = "pipeline"


@dataclass(frozen=True)
class Group:
    key: str
    name: str
    closed_by_stages: bool
    """True when no outer process will end the parent (``dvc exp run`` alone)."""


def new_group_key() -> str:
    return uuid.uuid4().hex


def current_group(environ: Mapping[str, str] | None = None) -> Group | None:
    environ = os.environ if environ is None else environ
    exp_name = environ.get("DVC_EXP_NAME")
    if environ.get(GROUP_ENV):
        return Group(environ[GROUP_ENV], exp_name or PIPELINE_STAGE, closed_by_stages=False)
    if exp_name:
        baseline = environ.get("DVC_EXP_BASELINE_REV", "")
        return Group(f"dvc-exp:{baseline}:{exp_name}", exp_name, closed_by_stages=True)
    return None


def explicit_parent(environ: Mapping[str, str] | None = None) -> str | None:
    environ = os.environ if environ is None else environ
    return environ.get(store.PARENT_ENV) or environ.get("MLFLOW_RUN_ID") or None


def find_parent(client, experiment: str, group: Group):
    """The parent run of ``group`` (an MLflow ``Run``), or None before its first stage."""
    found = client.search_runs(
        [experiment], filter_string=f"tags.`{TAG_GROUP}` = '{group.key}'", max_results=1,
        order_by=["attributes.start_time ASC"],
    )
    return found[0] if found else None


def parent_for_stage(client, experiment: str, root: Path, params: dict[str, object],
                     started_ms: int) -> tuple[str, str] | None:
    """The run this stage's run belongs under (id, name), created when it is the first stage of its group."""
    parent = explicit_parent()
    if parent:
        try:
            return parent, client.get_run(parent).info.run_name or ""
        except Exception:  # an id MLflow does not know: the stage's run still records it
            return parent, ""
    group = current_group()
    if group is None:
        return None
    found = find_parent(client, experiment, group)
    if found is None:
        return _create_parent(client, experiment, root, group, params, started_ms)
    if group.closed_by_stages:
        client.update_run(found.info.run_id, status="RUNNING")
    return found.info.run_id, found.info.run_name or ""


def _create_parent(client, experiment: str, root: Path, group: Group, params: dict[str, object],
                   started_ms: int) -> tuple[str, str]:
    from mlflow.entities import Param

    code = gitinfo.code_version(root)
    tags = {
        store.TAG_STAGE: PIPELINE_STAGE,
        TAG_GROUP: group.key,
        store.TAG_COMMIT: code.commit or "none",
        store.TAG_DIRTY: str(code.dirty).lower(),
        "mlflow.source.git.commit": code.commit or "",
        **{k: v for k, v in store.context_tags().items() if k not in (store.TAG_PARENT, store.TAG_PIPELINE)},
    }
    if os.environ.get(orphans.OWNER_PID_ENV, "").isdigit():
        # Owned by `reprobook run`, which ends it; a stage-closed parent has no owner to outlive.
        tags.update(orphans.owner_tags(int(os.environ[orphans.OWNER_PID_ENV])))
    from reprobook.tracking.presentation import pipeline_name
    from reprobook.tracking.record import TAG_REPRODUCTION_OF

    name = pipeline_name(overrides=os.environ.get(NAME_ENV, ""),
                         experiment=group.name if group.name != PIPELINE_STAGE else "",
                         reproduction_of=tags.get(TAG_REPRODUCTION_OF, ""), commit=code.commit, dirty=code.dirty)
    run_id = client.create_run(experiment, start_time=started_ms, run_name=name, tags=tags).info.run_id
    client.log_batch(run_id, params=[Param(k, str(v)) for k, v in sorted(params.items())])
    if os.environ.get(GROUP_FILE_ENV):
        Path(os.environ[GROUP_FILE_ENV]).write_text(run_id)
    return run_id, name


def stage_ended(client, parent: str | None, status: str) -> None:
    """Leave a stage-closed parent in the state of its last stage (an outer ``reprobook run`` closes its own)."""
    group = current_group()
    if parent and group is not None and group.closed_by_stages and not explicit_parent():
        client.set_terminated(parent, status, end_time=int(time.time() * 1000))


def stages_of(client, experiment: str, parent: str) -> dict[str, str]:
    """Stage name -> run id of the stage runs under ``parent``, in start order."""
    children = client.search_runs(
        [experiment], filter_string=f"tags.`{store.TAG_PIPELINE}` = '{parent}'", order_by=["attributes.start_time ASC"]
    )
    return {child.data.tags.get(store.TAG_STAGE, "?"): child.info.run_id for child in children}
