"""``reprobook reproduce RUN_ID``: rebuild a stage run from its record, re-run it, judge it.

Three steps, and the first does no work: (1) *preflight* reads the record and
refuses, naming every reason, when the run cannot be reproduced (it failed,
its commit is gone, its data is in neither the DVC cache nor the remote);
(2) an isolated checkout (a ``git clone --shared`` at the commit, the run's
uncommitted diff applied, ``record/params.yaml`` restored, the DVC cache
shared, the data pulled) re-runs the stage -- on its upstream outputs restored
from DVC at the recorded hashes, or (``--full``, or when they are not
retrievable) with every stage up to it -- with its stage runs logged to the
same MLflow store under a ``reproduction`` run; (3) the new
stage run is compared with the original (:mod:`reprobook.compare`) and the
verdict is logged on the reproduction run. Each step is announced, as it
starts, to an optional ``steps`` callback (the command line prints them on a
terminal).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from reprobook.errors import ReprobookError
from reprobook.reproduce import compare, remote, trust
from reprobook.tracking import gitinfo, runids, secrets, store
from reprobook.tracking.record import (
    TAG_DATA_PUSH_ERROR,
    TAG_DATA_PUSHED,
    TAG_REPRODUCTION_OF,
    TAG_VERDICT,
    NOT_STAGE_RUNS,
    RunRecord,
    code_changes,
    resolve_stage_run,
    stage_children,
    untracked_files,
)

APPLY_EXCLUDES = ("--exclude=params.yaml", "--exclude=dvc.lock", "--exclude=reports/*", "--exclude=*.gitignore")
"""The run's diff is applied without params (restored from the record) and outputs."""
NOT_REPRODUCED_EXIT = 3
TOLERANCE_NOTE = (
    "exact by default: every stage is seeded from params and MLflow stores float64 "
    "metrics unchanged, so the same code, data and params give bit-identical metrics; "
    "pass --rtol/--atol only across platforms or BLAS builds"
)


Steps = Callable[[str], None]
"""Told each step of a reproduction as it starts, in a sentence."""
DVC_STAGE_LINE = re.compile(r"^Running stage '(?P<stage>[^']+)':")
"""What ``dvc repro`` prints on stdout as it starts a stage."""


def _quiet(message: str) -> None:
    """No one to tell the steps to (a library call, or output that is not a terminal)."""


class NotReproducible(ReprobookError):
    """The record shows the run cannot be reproduced; nothing was done."""


@dataclass
class Plan:
    """What preflight established: enough to build the checkout without surprises."""

    record: RunRecord
    commit: str
    dvc_files: dict[str, list[str]]
    """``.dvc`` files at the commit (with the run's diff) and the object ids they point to."""
    stores: remote.DataStores
    applied: trust.Applied = field(default_factory=trust.Applied)
    """What the checkout takes from the record (diff files, params), shown to the user."""


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool | None
    """True passed, False failed, None informational (never decides the verdict)."""
    original: str = ""
    reproduction: str = ""
    note: str = ""


@dataclass
class Verdict:
    run_id: str
    stage: str
    reproduced: bool
    reproduction_run_id: str
    stage_run_id: str | None
    checks: list[Check] = field(default_factory=list)
    seconds: float = 0.0
    original_seconds: float | None = None
    rtol: float = 0.0
    atol: float = 0.0


def _git(root: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, env=env)


def commit_exists(root: Path, commit: str) -> bool:
    return _git(root, "cat-file", "-e", f"{commit}^{{commit}}").returncode == 0


def dvc_files_at(root: Path, commit: str, diff: str) -> dict[str, list[str]]:
    """``.dvc`` files as the run saw them: the commit's, with its uncommitted diff applied.

    A throw-away index does this without a work tree, so preflight costs nothing.
    """
    with tempfile.TemporaryDirectory(prefix="reprobook-index-") as folder:
        env = {**os.environ, "GIT_INDEX_FILE": str(Path(folder) / "index")}
        _git(root, "read-tree", commit, env=env)
        if diff:
            patch = Path(folder) / "run.diff"
            patch.write_text(diff)
            applied = _git(root, "apply", "--cached", "--binary", *APPLY_EXCLUDES, str(patch), env=env)
            if applied.returncode != 0:
                raise NotReproducible(
                    f"the run's uncommitted diff does not apply to commit {commit[:12]}: {applied.stderr.strip()}"
                )
        listed = _git(root, "ls-files", "-z", "--", "*.dvc", env=env).stdout.split("\0")
        files: dict[str, list[str]] = {}
        for path in filter(None, listed):
            text = _git(root, "show", f":{path}", env=env).stdout
            outs = (yaml.safe_load(text) or {}).get("outs") or []
            files[path] = [out["md5"] for out in outs if out.get("md5")]
        return files


def _missing_data_message(record: RunRecord, dvc_files: dict[str, list[str]], stores: remote.DataStores) -> str:
    missing = set(stores.missing)
    names = [path for path, oids in dvc_files.items() if missing & set(oids)] or sorted(missing)
    pushed = record.tags.get(TAG_DATA_PUSHED)
    if pushed == "false":
        why = f"the run's record says its data was never pushed ({record.tags.get(TAG_DATA_PUSH_ERROR, 'push failed')})"
    elif pushed is None:
        why = "the run's record has no push record (it was not run by `reprobook run`)"
    else:
        why = "the record says it was pushed, but the remote no longer has it"
    return (
        f"data not retrievable: {', '.join(names)} ({len(missing)} object(s)) is in neither the DVC cache "
        f"{stores.cache_dir} nor the remote {stores.remote_url}; {why}"
    )


def _external_inputs_problems(record: RunRecord) -> list[str]:
    """Inputs outside the repository (absolute paths) must still be there, unchanged."""
    problems = []
    for path, entry in record.inputs.items():
        if not Path(path).is_absolute():
            continue
        if not Path(path).is_file():
            problems.append(f"input {path} (outside the repository) no longer exists")
        elif store.file_digest(Path(path)) != entry.get("md5"):
            problems.append(f"input {path} (outside the repository) has changed since the run")
    return problems


def _at_commit(root: Path, commit: str, path: str) -> str | None:
    shown = _git(root, "show", f"{commit}:{path}")
    return shown.stdout if shown.returncode == 0 else None


def preflight(root: Path, record: RunRecord, *, allow_code_changes: bool = False) -> Plan:
    """Every reason the run cannot be reproduced, found from the record before any work.

    The record's diff and params are applied only if they change no code, or
    with ``allow_code_changes`` (see :mod:`reprobook.reproduce.trust`).
    """
    problems: list[str] = []
    if not record.stage or record.stage in NOT_STAGE_RUNS:
        raise NotReproducible(f"run {record.run_id} is a '{record.stage or 'untagged'}' run, not a stage run")
    if record.status != "FINISHED" or record.error:
        problems.append(f"the run did not finish (status {record.status}: {record.error or 'no error recorded'}); "
                        "a failed run has no result to reproduce")
    if "params.yaml" not in record.files or "code.json" not in record.files:
        problems.append("the run has no record/ artifacts (params.yaml, code.json)")
    commit = record.commit
    if commit is None:
        problems.append("the run records no git commit (it ran outside a git repository)")
    elif not gitinfo.is_commit_id(commit):
        problems.append(f"the recorded commit {commit[:60]!r} is not a commit id (40 hex characters); "
                        "the record was altered")
    elif not commit_exists(root, commit):
        problems.append(f"commit {commit} is not in the repository {root} (rewritten, or not fetched: try `git fetch`)")
    problems += _external_inputs_problems(record)
    if problems:
        raise NotReproducible(f"cannot reproduce run {record.run_id}: " + "; ".join(problems))
    assert commit is not None
    applied = trust.assess(record.git_diff, _at_commit(root, commit, "params.yaml"), record.files["params.yaml"],
                           _at_commit(root, commit, "dvc.yaml"))
    if applied.needs_consent and not allow_code_changes:
        raise NotReproducible(trust.refusal(record.run_id, applied))
    dvc_files = dvc_files_at(root, commit, record.git_diff)
    stores = remote.locate(root, sorted({oid for oids in dvc_files.values() for oid in oids}))
    if stores.missing:
        raise NotReproducible(
            f"cannot reproduce run {record.run_id}: {_missing_data_message(record, dvc_files, stores)}"
        )
    return Plan(record=record, commit=commit, dvc_files=dvc_files, stores=stores, applied=applied)


def _last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1] if lines else ""


def _run(args: list[str], cwd: Path, what: str, env: dict[str, str] | None = None) -> None:
    completed = subprocess.run(args, cwd=cwd, capture_output=True, text=True, env=env)
    if completed.returncode != 0:
        detail = _last_line(completed.stderr or completed.stdout) or f"exit {completed.returncode}"
        raise ReprobookError(f"{what} failed in {cwd}: {detail}")


def _fetch(plan: Plan) -> str:
    """``dvc pull`` (cache first, then the remote), or ``dvc checkout`` when there is no remote."""
    return "checkout" if plan.stores.remote_url == remote.NO_REMOTE else "pull"


def make_checkout(root: Path, plan: Plan, target: Path, steps: Steps = _quiet) -> list[str]:
    """Build the isolated checkout; return what was done that the verdict must mention."""
    from reprobook.execution.pipeline import dvc_executable

    notes = []
    steps(f"checking out commit {plan.commit[:12]} into {target}")
    _run(["git", "clone", "--quiet", "--shared", "--no-checkout", str(root), str(target)], root, "git clone")
    _run(["git", "checkout", "--quiet", "--detach", plan.commit], target, f"git checkout {plan.commit[:12]}")
    for line in plan.applied.describe():
        notes.append(f"applied from the record: {line}")
    if plan.record.git_diff:
        steps(f"applying the run's uncommitted diff (git apply): {', '.join(plan.applied.diff_files) or 'no file'}")
        patch = target / ".git" / "reprobook-run.diff"
        patch.write_text(plan.record.git_diff)
        _run(["git", "apply", "--binary", *APPLY_EXCLUDES, str(patch)], target, "git apply (the run's diff)")
        if code_changes(plan.record):
            notes.append("its uncommitted diff was applied with `git apply` in the checkout")
    changed = [f"{key} {trust.show(before)} -> {trust.show(after)}" for key, (before, after) in plan.applied.params.items()]
    steps(f"restoring params.yaml from the run's record ({'; '.join(changed) or 'as at the commit'})")
    (target / "params.yaml").write_text(plan.record.files["params.yaml"])
    local_config = root / ".dvc" / "config.local"
    if local_config.is_file():
        shutil.copy2(local_config, target / ".dvc" / "config.local")
    _run([dvc_executable(), "cache", "dir", "--local", plan.stores.cache_dir], target, "dvc cache dir")
    if plan.dvc_files:
        steps(f"restoring data: dvc {_fetch(plan)} {' '.join(plan.dvc_files)}")
        _run([dvc_executable(), _fetch(plan), "--quiet", *plan.dvc_files], target, f"dvc {_fetch(plan)}")
    return notes


def restore_upstream(checkout: Path, plan: Plan, steps: Steps = _quiet) -> list[str]:
    """Check out the outputs of the stages before the run's stage, at the hashes its dvc.lock recorded.

    Returns the restored stages, or [] when the record has no lock or DVC cannot
    restore them (then every stage up to the run's stage is re-run instead).
    """
    from reprobook.execution.pipeline import dvc_executable
    from reprobook.project.stages import load_stages, upstream as upstream_of

    lock_text = plan.record.files.get("dvc.lock")
    stages = load_stages(checkout)
    if plan.record.stage not in stages:
        return []
    upstream = upstream_of(stages, plan.record.stage)
    recorded = (yaml.safe_load(lock_text) or {}).get("stages", {}) if lock_text else {}
    if not upstream or any(stage not in recorded for stage in upstream):
        return []
    steps(f"restoring the outputs of {', '.join(upstream)} at the hashes the run recorded (dvc {_fetch(plan)})")
    committed = (checkout / "dvc.lock").read_text() if (checkout / "dvc.lock").is_file() else None
    (checkout / "dvc.lock").write_text(lock_text)
    restored = subprocess.run([dvc_executable(), _fetch(plan), "--quiet", *upstream], cwd=checkout,
                              capture_output=True, text=True)
    if restored.returncode == 0:
        return upstream
    if committed is None:
        (checkout / "dvc.lock").unlink()
    else:
        (checkout / "dvc.lock").write_text(committed)
    return []


def stage_environment(checkout: Path, uri: str, reproduction_run_id: str, run_id: str) -> dict[str, str]:
    """The checkout's code first on the path, the same store, runs tagged as a reproduction."""
    inherited = ("REPROBOOK_PROJECT", "MLFLOW_RUN_ID", "DVC_EXP_NAME", "DVC_EXP_BASELINE_REV")
    env = {k: v for k, v in os.environ.items() if k not in inherited}
    extra = json.loads(env.get(store.EXTRA_TAGS_ENV) or "{}")
    env.update({
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(checkout / "src"), env.get("PYTHONPATH")])),
        "MLFLOW_TRACKING_URI": uri,
        store.PARENT_ENV: reproduction_run_id,
        store.EXTRA_TAGS_ENV: json.dumps({**extra, TAG_REPRODUCTION_OF: run_id}),
    })
    return env


def judge(original: RunRecord, new: RunRecord | None, notes: list[str], rtol: float, atol: float,
          execution: str = "") -> list[Check]:
    """The verdict's checks: metrics, predictions, data, params (decide); code, environment (inform).

    ``notes`` say what was done to the code (diff applied); ``execution`` how the stage was re-run.
    """
    if new is None:
        return [Check("stage run", False, original.status, "missing", f"no stage run was produced; {execution}")]
    checks = [Check("stage run", new.status == "FINISHED", original.status, new.status, new.error or execution)]
    comparison = compare.compare_records([original, new])
    metric_rows = comparison.metrics
    mismatched = [row for row in metric_rows if not compare.metrics_match(*row.values, rtol=rtol, atol=atol)]
    tolerance = "exact" if rtol == atol == 0 else f"rtol={rtol:g}, atol={atol:g}"
    checks.append(Check("quality metrics", not mismatched and bool(metric_rows),
                        f"{len(metric_rows)} metrics", f"{len(metric_rows) - len(mismatched)} equal", tolerance))
    checks += [Check(f"  {row.key}", False, compare.cell(row.values[0]), compare.cell(row.values[1]),
                     f"Δ {compare.delta_cell(compare.delta(*row.values))}") for row in mismatched]
    if original.prediction_digest:
        checks.append(Check("prediction digest", original.prediction_digest == new.prediction_digest,
                            original.prediction_digest[:16], (new.prediction_digest or "missing")[:16]))
    inputs = compare.data_digests(original)
    differing_inputs = [row for row in comparison.data if row.key in inputs or row.key in compare.data_digests(new)]
    checks.append(Check("data digests (inputs.json)", not differing_inputs, f"{len(inputs)} files",
                        f"{len(inputs) - len(differing_inputs)} equal"))
    checks += [Check(f"  {row.key}", False, *map(compare.cell, row.values)) for row in differing_inputs]
    checks.append(Check("params", not comparison.params, "record/params.yaml", "restored",
                        ", ".join(row.key for row in comparison.params)))
    changes = code_changes(original)
    code_note = "; ".join(notes) or "no uncommitted code changes at run time"
    if changes:
        code_note = f"run from a DIRTY tree ({', '.join(changes)}); {code_note}"
    checks.append(Check("code", None if changes else True, (original.recorded_commit or "none")[:12],
                        (new.recorded_commit or "none")[:12], code_note))
    untracked = untracked_files(original)
    if untracked:
        checks.append(Check("untracked files", None, ", ".join(untracked), "not restorable",
                            "untracked at run time, so not in the diff"))
    env_rows = comparison.environment
    checks.append(Check("environment", None, "", "", "identical" if not env_rows else f"{len(env_rows)} differ"))
    checks += [Check(f"  {row.key}", None, *map(compare.cell, row.values)) for row in env_rows]
    return checks


def _log_verdict(client, verdict: Verdict) -> None:
    from mlflow.entities import Metric, RunTag

    now = int(time.time() * 1000)
    decided = [c for c in verdict.checks if c.ok is not None and not c.name.startswith(" ")]
    metrics = {
        "reproduction.reproduced": float(verdict.reproduced),
        "reproduction.checks_passed": float(sum(bool(c.ok) for c in decided)),
        "reproduction.checks_total": float(len(decided)),
        "reproduction.environment_differences": float(sum(c.name.startswith("  package ") for c in verdict.checks)),
        "timing.reproduction_s": verdict.seconds,
    }
    tags = {TAG_VERDICT: "reproduced" if verdict.reproduced else "not_reproduced"}
    if verdict.stage_run_id:
        tags["reprobook.reproduction_stage_run"] = verdict.stage_run_id
    client.log_batch(verdict.reproduction_run_id, metrics=[Metric(k, v, now, 0) for k, v in metrics.items()],
                     tags=[RunTag(k, v) for k, v in tags.items()])
    client.log_text(verdict.reproduction_run_id, secrets.redact_text(json.dumps(asdict(verdict), indent=2)),
                    "reproduction/verdict.json")


def repro_command(checkout: Path, plan: Plan, full: bool, steps: Steps = _quiet) -> tuple[list[str], str]:
    """The ``dvc repro`` to run and how it re-executes.

    By default only the run's stage re-runs, on upstream outputs restored at the
    hashes its record names (the inputs digests then confirm the data); with
    ``full``, or when they cannot be restored, every stage up to it re-runs.
    """
    from reprobook.execution.pipeline import dvc_executable

    stage = plan.record.stage
    restored = [] if full else restore_upstream(checkout, plan, steps)
    if restored:
        how = f"upstream outputs ({', '.join(restored)}) restored from DVC at the recorded hashes; {stage} re-run"
        return [dvc_executable(), "repro", "--force", "--single-item", stage], how
    return [dvc_executable(), "repro", "--force", stage], f"every stage up to {stage} re-run"


def planned_stages(checkout: Path, stage: str, command: list[str]) -> list[str]:
    """The reprobook stages ``command`` re-runs, in order: the stage alone, or every stage up to it."""
    from reprobook.project.stages import load_stages, upstream

    if "--single-item" in command:
        return [stage]
    stages = load_stages(checkout)
    return [*upstream(stages, stage), stage] if stage in stages else [stage]


def run_repro(command: list[str], checkout: Path, env: dict[str, str], planned: list[str],
              steps: Steps = _quiet) -> subprocess.CompletedProcess:
    """Run ``dvc repro``, announcing each planned stage ("stage 2 of 3: data") as DVC starts it.

    DVC's stdout is read as it comes; its stderr (the stages' own) goes to a
    file, read at the end, so neither pipe can fill up and block.
    """
    lines: list[str] = []
    with tempfile.TemporaryFile(mode="w+") as errors:
        with subprocess.Popen(command, cwd=checkout, env=env, stdout=subprocess.PIPE, stderr=errors,
                              text=True) as process:
            assert process.stdout is not None
            try:
                for line in process.stdout:
                    lines.append(line)
                    started = DVC_STAGE_LINE.match(line)
                    if started and started["stage"] in planned:
                        name = started["stage"]
                        steps(f"running stage {planned.index(name) + 1} of {len(planned)}: {name}")
            except BaseException:  # as subprocess.run does: no dvc left running behind an error
                process.kill()
                raise
        errors.seek(0)
        return subprocess.CompletedProcess(command, process.returncode, "".join(lines), errors.read())


def reproduce(root: Path, run_id: str, *, rtol: float = 0.0, atol: float = 0.0, full: bool = False,
              keep: Path | None = None, steps: Steps = _quiet, allow_code_changes: bool = False) -> Verdict:
    """Preflight, checkout, re-run and judge ``run_id`` (or a unique prefix); raise :class:`NotReproducible` before any work."""
    started = time.time()
    steps(f"reading the record of run {run_id}")
    client = store.client(root)
    original = resolve_stage_run(client, runids.resolve(root, run_id, client))
    steps(f"checking that run {original.run_id} ({original.stage}) can be reproduced: commit, data, inputs")
    plan = preflight(root, original, allow_code_changes=allow_code_changes)
    uri = store.tracking_uri(root)
    run = client.create_run(original.experiment_id, run_name=f"{original.stage} · reproduction of {original.run_id[:8]}", tags={
        store.TAG_STAGE: "reproduction",
        TAG_REPRODUCTION_OF: original.run_id,
        store.TAG_COMMIT: plan.commit,
    })
    reproduction_id = run.info.run_id
    checkout = keep or Path(tempfile.mkdtemp(prefix="reprobook-reproduce-")) / "checkout"
    status = "FAILED"
    try:
        notes = make_checkout(root, plan, checkout, steps)
        env = stage_environment(checkout, uri, reproduction_id, original.run_id)
        command, execution = repro_command(checkout, plan, full, steps)
        steps(f"{Path(command[0]).name} {' '.join(command[1:])}")
        repro = run_repro(command, checkout, env, planned_stages(checkout, original.stage, command), steps)
        if repro.returncode != 0:
            execution += f"; dvc repro exited {repro.returncode}: {_last_line(repro.stderr or repro.stdout)}"
        steps("comparing the new stage run with the original")
        children = [r for r in stage_children(client, reproduction_id) if r.stage == original.stage]
        new = children[-1] if children else None
        checks = judge(original, new, notes, rtol, atol, execution=execution)
        verdict = Verdict(
            run_id=original.run_id, stage=original.stage,
            reproduced=all(c.ok is not False for c in checks),
            reproduction_run_id=reproduction_id, stage_run_id=new.run_id if new else None,
            checks=checks, seconds=time.time() - started, original_seconds=original.seconds, rtol=rtol, atol=atol,
        )
        _log_verdict(client, verdict)
        status = "FINISHED"
        return verdict
    finally:
        client.set_terminated(reproduction_id, status)
        if keep is None:
            shutil.rmtree(checkout.parent, ignore_errors=True)


def verdict_table(verdict: Verdict):
    from rich.table import Table

    marks = {True: "[green]ok[/]", False: "[red]DIFFERS[/]", None: "[yellow]note[/]"}
    word = "[green]REPRODUCED[/]" if verdict.reproduced else "[red]NOT REPRODUCED[/]"
    table = Table(title=f"reproduction of {verdict.run_id} ({verdict.stage}): {word}", title_justify="left",
                  caption=f"reproduction run {verdict.reproduction_run_id}, {verdict.seconds:.1f}s; "
                          f"metric tolerance: {TOLERANCE_NOTE if verdict.rtol == verdict.atol == 0 else 'rtol=%g atol=%g' % (verdict.rtol, verdict.atol)}",
                  caption_justify="left")
    for name in ("check", "result", "original", "reproduction", "note"):
        table.add_column(name, overflow="fold")
    for check in verdict.checks:
        table.add_row(check.name, marks[check.ok], check.original, check.reproduction, check.note)
    return table
