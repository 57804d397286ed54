"""A proposed change, run beside its base and judged: what CI does on every pull request.

``reprobook ci --base REF`` answers the reviewer's question, "what does this
change do to the model?", with runs rather than opinions:

1. the whole pipeline runs (``reprobook run --force``) on the base commit, in
   a git worktree, into a tracking store of its own. The base's runs are kept
   under the CI folder by commit, so a base already run (by an earlier pull
   request, or an earlier push to this one) is not run again;
2. the pipeline runs on the working tree (the proposed branch) into another
   store;
3. the two are compared as ``reprobook compare --format markdown`` compares
   runs (params, data, code, environment, metrics with deltas), and the
   comparison and the verdict are written to a Markdown file for the
   pull-request comment;
4. the verdict: the proposed model must pass the promotion gate of the
   scoping targets (threshold on the primary metric), and no quality metric
   of the test split may get worse than the base's by more than
   ``ci.tolerance``.

Each side has a store, and so a model registry, of its own: the developer's
registry and its champion are never touched, and a change of features is not
refused by the base model's binding (:mod:`reprobook.tracking.registry`).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from reprobook.errors import ReprobookError, UsageError

RUNS_FILE = "runs.json"
WORK_DIR_ENV = "REPROBOOK_CI_DIR"
GATE_FAILED_EXIT = 1
QUALITY_PREFIX = "test."
THRESHOLD_METRIC = "comparison.meets_threshold"
TIMING_PREFIX = "timing."


@dataclass(frozen=True)
class Side:
    """One side of the comparison: its commit, its store and its runs (stage -> run id)."""

    label: str
    commit: str
    dirty: bool
    tracking_uri: str
    pipeline_run: str
    stage_runs: dict[str, str]


@dataclass(frozen=True)
class Gate:
    name: str
    passed: bool
    detail: str


@dataclass
class Review:
    base: Side
    head: Side
    stage: str
    """The stage whose runs are compared (modeling, when both sides have it)."""
    gates: list[Gate]
    changed_params: list[tuple[str, str | None, str | None]]
    comparison_markdown: str
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(gate.passed for gate in self.gates)

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else GATE_FAILED_EXIT


def default_work_dir(root: Path) -> Path:
    """``$REPROBOOK_CI_DIR``, else a folder of the user cache named after the project (never inside it:
    a worktree inside the project would be one more pipeline for DVC to find)."""
    import hashlib

    from reprobook.project.paths import cache_dir

    chosen = os.environ.get(WORK_DIR_ENV)
    if chosen:
        return Path(chosen)
    digest = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:8]
    return cache_dir() / "ci" / f"{root.resolve().name}-{digest}"


# --- git ---------------------------------------------------------------------


def _git(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)


def resolve_commit(root: Path, ref: str) -> str:
    """The commit ``ref`` names; a usage error naming the ref when git knows none."""
    if _git(root, "rev-parse", "--verify", "--quiet", "HEAD").returncode != 0:
        raise UsageError(f"{root}: not a git repository with a commit; `reprobook ci` compares the working tree "
                         "with a commit of its history")
    found = _git(root, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    if found.returncode != 0:
        raise UsageError(f"--base {ref}: no such commit, branch or tag in {root} "
                         "(in CI, fetch the base branch first: actions/checkout with fetch-depth: 0)")
    return found.stdout.strip()


def _head(root: Path) -> tuple[str, bool]:
    commit = _git(root, "rev-parse", "HEAD").stdout.strip()
    from reprobook.tracking.gitinfo import code_version

    return commit, code_version(root).dirty


# --- running a side ----------------------------------------------------------


def prepare_store(folder: Path, project: Path) -> str:
    """A tracking store in ``folder`` whose experiment keeps its artifacts there too; return its URI.

    Without this, the experiment's artifacts would go under the project that
    ran first (a worktree, deleted once the base has run) and the record
    would lose its files.
    """
    from mlflow import MlflowClient

    from reprobook.project.params import project_params

    folder.mkdir(parents=True, exist_ok=True)
    uri = _store_uri(folder)
    name = project_params(project).tracking.experiment
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    if client.get_experiment_by_name(name) is None:
        client.create_experiment(name, artifact_location=(folder / "mlartifacts").resolve().as_uri())
    return uri


def _store_uri(folder: Path) -> str:
    return f"sqlite:///{(folder / 'mlflow.db').resolve()}"


def run_pipeline(project: Path, tracking_uri: str, label: str) -> tuple[str, dict[str, str]]:
    """Run every stage of ``project`` into ``tracking_uri``; return the pipeline run and its stage runs.

    The pipeline's own output goes to standard error, so a CI log shows it
    while standard output stays for the report.
    """
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri}
    env.pop("MLFLOW_RUN_ID", None)
    from reprobook.execution.processes import console_script

    print(f"reprobook ci: running the pipeline on the {label}", file=sys.stderr, flush=True)
    done = subprocess.run([console_script("reprobook"), "run", "--force"], cwd=project, env=env, stdout=sys.stderr,
                          stderr=sys.stderr)
    runs = _latest_pipeline(project, tracking_uri)
    if done.returncode != 0 or runs is None:
        raise ReprobookError(f"the pipeline failed on the {label} (exit {done.returncode}); its output is above")
    return runs


def _latest_pipeline(project: Path, tracking_uri: str) -> tuple[str, dict[str, str]] | None:
    from mlflow import MlflowClient

    from reprobook.project.params import project_params
    from reprobook.tracking import groups, store

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    experiment = client.get_experiment_by_name(project_params(project).tracking.experiment)
    if experiment is None:
        return None
    found = client.search_runs([experiment.experiment_id],
                               filter_string=f"tags.`{store.TAG_STAGE}` = '{groups.PIPELINE_STAGE}'",
                               order_by=["attributes.start_time DESC"], max_results=1)
    if not found:
        return None
    pipeline = found[0].info.run_id
    return pipeline, groups.stages_of(client, experiment.experiment_id, pipeline)


def base_side(root: Path, commit: str, work: Path) -> Side:
    """The base's runs: from the CI folder if this commit has run there before, else run now in a worktree."""
    folder = work / f"base-{commit[:12]}"
    saved = folder / RUNS_FILE
    if saved.is_file() and (folder / "mlflow.db").is_file():
        runs = json.loads(saved.read_text())
        print(f"reprobook ci: the base {commit[:8]} has run before; its runs are reused ({folder})",
              file=sys.stderr, flush=True)
        return Side("base", commit, False, _store_uri(folder), runs["pipeline"], runs["stages"])
    checkout = folder / "checkout"
    shutil.rmtree(checkout, ignore_errors=True)
    _git(root, "worktree", "prune")
    added = _git(root, "worktree", "add", "--detach", "--force", str(checkout), commit)
    if added.returncode != 0:
        raise ReprobookError(f"could not check out the base {commit[:8]}: {added.stderr.strip()}")
    try:
        _restore_data(root, checkout)
        uri = prepare_store(folder, checkout)
        pipeline, stages = run_pipeline(checkout, uri, f"base ({commit[:8]})")
    finally:
        _git(root, "worktree", "remove", "--force", str(checkout))
    saved.write_text(json.dumps({"pipeline": pipeline, "stages": stages}, indent=2))
    return Side("base", commit, False, uri, pipeline, stages)


def _restore_data(root: Path, checkout: Path) -> None:
    """The base's DVC-tracked data, from the project's DVC cache (a worktree starts without it)."""
    if not (checkout / ".dvc").is_dir():
        return
    from reprobook.execution.pipeline import dvc_executable

    cache = root / ".dvc" / "cache"
    if cache.is_dir():
        subprocess.run([dvc_executable(), "cache", "dir", "--local", str(cache)], cwd=checkout,
                       capture_output=True)
    if subprocess.run([dvc_executable(), "checkout", "--quiet"], cwd=checkout, capture_output=True).returncode != 0:
        # Not all in the project's cache: the base's remote may have it (a failure shows when its pipeline runs).
        subprocess.run([dvc_executable(), "pull", "--quiet"], cwd=checkout, capture_output=True)


# --- judging -----------------------------------------------------------------


def judge(base: dict[str, float], head: dict[str, float], task: str, primary: str, threshold: float | None,
          tolerance: float, head_timings: dict[str, float] | None = None,
          latency_budget_ms: float | None = None) -> list[Gate]:
    """The gates: the scoping targets on the proposed model (threshold, latency budget), and no quality
    metric worse than the base's by more than ``tolerance``."""
    from reprobook.ml.metrics import METRICS

    gates = []
    value = head.get(f"{QUALITY_PREFIX}{primary}")
    meets = head.get(THRESHOLD_METRIC)
    if meets is not None:
        target = "beat the baseline" if threshold is None else f"{primary} {'≥' if METRICS[primary].higher_is_better else '≤'} {threshold:g}"
        gates.append(Gate(f"promotion gate: {target}", bool(meets), "-" if value is None else f"{primary} {value:.4f}"))
    timings = head_timings or {}
    if latency_budget_ms is not None and f"{TIMING_PREFIX}latency_p95_ms" in timings:
        p95 = timings[f"{TIMING_PREFIX}latency_p95_ms"]
        within = timings.get(f"{TIMING_PREFIX}within_latency_budget")
        # Not judged (absent) when the machine was loaded beyond one process per core while it was timed.
        detail = f"p95 {p95:.1f} ms" + ("" if within is not None else " (not judged: the machine was busy)")
        gates.append(Gate(f"promotion gate: latency p95 ≤ {latency_budget_ms:g} ms", within is None or bool(within),
                          detail))
    for key in sorted(head):
        name = key.removeprefix(QUALITY_PREFIX)
        if not key.startswith(QUALITY_PREFIX) or name not in METRICS or METRICS[name].task != task or key not in base:
            continue
        before, after = base[key], head[key]
        metric = METRICS[name]
        allowed = metric.allowed_worsening(tolerance, before)
        label = f"{tolerance:g}" if math.isfinite(metric.bounds[1]) else f"{tolerance:.2%} of it"
        gates.append(Gate(f"{key} no worse than the base by more than {label}", metric.worse_by(after, before) <= allowed,
                          f"{before:.4f} → {after:.4f} ({after - before:+.4f})"))
    return gates


def changed_params(base: dict[str, str], head: dict[str, str]) -> list[tuple[str, str | None, str | None]]:
    """The declared params whose value differs between the two pipeline runs."""
    return [(key, base.get(key), head.get(key)) for key in sorted(set(base) | set(head)) if base.get(key) != head.get(key)]


# --- the whole review --------------------------------------------------------


def review(root: Path, base_ref: str, work: Path) -> Review:
    """Run base and head, compare their modeling runs, and judge the head (see the module's docstring)."""
    from mlflow import MlflowClient

    from reprobook.project.params import project_params
    from reprobook.reproduce import compare
    from reprobook.tracking.record import load_record

    commit = resolve_commit(root, base_ref)
    params = project_params(root)  # a broken params.yaml fails here, before any run
    head_commit, dirty = _head(root)
    base = base_side(root, commit, work)
    shutil.rmtree(work / "head", ignore_errors=True)  # the proposed change's runs are new every time
    head_uri = prepare_store(work / "head", root)
    pipeline, stages = run_pipeline(root, head_uri, "proposed change")
    head = Side("head", head_commit, dirty, head_uri, pipeline, stages)

    base_client = MlflowClient(tracking_uri=base.tracking_uri, registry_uri=base.tracking_uri)
    head_client = MlflowClient(tracking_uri=head.tracking_uri, registry_uri=head.tracking_uri)
    stage = "modeling" if "modeling" in head.stage_runs and "modeling" in base.stage_runs else \
        next(iter(reversed([s for s in head.stage_runs if s in base.stage_runs])), None)
    if stage is None:
        raise ReprobookError("the base and the proposed change ran no stage in common; nothing to compare")
    records = [load_record(base_client, base.stage_runs[stage]), load_record(head_client, head.stage_runs[stage])]
    comparison = compare.compare_records(records, root)

    from reprobook.ml.scoping import load_targets

    targets = load_targets(root)
    gates = judge(records[0].metrics, records[1].metrics, targets["task"], targets["primary_metric"],
                  params.scoping.threshold, params.ci.tolerance, head_timings=records[1].timings,
                  latency_budget_ms=params.scoping.latency_budget_ms)
    if not gates:
        gates.append(Gate(f"quality metrics of the {stage} stage", False,
                          "none found to judge by: does the stage write test.<metric> to its metrics.json?"))
    params_changed = changed_params(base_client.get_run(base.pipeline_run).data.params,
                                    head_client.get_run(head.pipeline_run).data.params)
    return Review(base, head, stage, gates, params_changed, compare.to_markdown(comparison))


def to_markdown(result: Review, base_ref: str) -> str:
    """The pull-request comment: verdict, gates, changed params, and the side-by-side comparison."""
    verdict = "passed ✅" if result.passed else "FAILED ❌"
    head = f"`{result.head.commit[:8]}`" + (" (with uncommitted changes)" if result.head.dirty else "")
    lines = [
        f"## reprobook CI: {verdict}",
        "",
        f"Proposed change {head} against the base `{result.base.commit[:8]}` ({base_ref}); "
        "the whole pipeline ran on both.",
        "",
        "**gates**",
        "",
        "| gate | result | detail |",
        "|---|---|---|",
        *[f"| {g.name} | {'pass' if g.passed else '**FAIL**'} | {g.detail} |" for g in result.gates],
        "",
        "**params changed**",
        "",
    ]
    if result.changed_params:
        lines += ["| param | base | proposed |", "|---|---|---|",
                  *[f"| {key} | {_cell(before)} | {_cell(after)} |" for key, before, after in result.changed_params]]
    else:
        lines.append("none")
    lines += ["", f"**the {result.stage} runs side by side** (base first)", "", result.comparison_markdown]
    return "\n".join(lines).rstrip() + "\n"


def failure_markdown(message: str, base_ref: str) -> str:
    """The comment when no verdict could be reached (a pipeline failed): what failed, in one paragraph."""
    return f"## reprobook CI: FAILED ❌\n\nAgainst the base {base_ref}: {message}. See the job's log.\n"


def _cell(value: str | None) -> str:
    return "-" if value is None else value.replace("|", "\\|")
