"""``reprobook check``: the stage contract every stage in ``dvc.yaml`` satisfies, built-in or a user's own.

In the spirit of scikit-learn's ``check_estimator``: small checks, each
answering pass, fail (with the fix) or skip, per stage. Static checks read
files only (``--quick``, what the pre-commit hook runs): the notebook exists,
has a cell tagged ``parameters``, is stored without outputs, names the
project's kernel (and that kernel is installed), and the params keys its
``dvc.yaml`` entry declares are in ``params.yaml``. The tiny run copies the
project's files and data to a scratch folder, sets ``check.params`` on the
copy's ``params.yaml``, runs the stages in pipeline order with ``reprobook
stage NAME`` (MLflow in a SQLite file of the copy) and checks that each
wrote every path it declares. The user's outputs, params and store are never
touched; a copy whose run failed is kept, so the failing cell can be read.
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
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from reprobook.project.paths import DVC_FILE, PARAMS_FILE, source_file
from reprobook.project.stages import FINGERPRINT_DIR, Stage, get_stage, load_stages, upstream

CHECKS = {
    "notebook": "notebook",
    "parameters": "parameters cell",
    "clean": "no outputs",
    "kernel": "kernel",
    "params": "params",
    "run": "tiny run",
}
"""Check ids, in order, and their column titles."""
STATIC_CHECKS = tuple(CHECKS)[:-1]
PASS, FAIL, SKIP = "pass", "fail", "skip"
MARKS = {PASS: "✓", FAIL: "✗", SKIP: "–"}
KEPT_VARIABLES = ("REPROBOOK_DEBUG", "REPROBOOK_THREADS")
"""The caller's reprobook settings a stage of the tiny run keeps; the others (project, parent run, group) name
the user's project and runs."""
NEVER_COPIED = {".git", ".venv", "venv", "__pycache__", ".ipynb_checkpoints", "mlruns", "mlartifacts", "mlflow.db"}
RUNNER_FAILURE = re.compile(r"^stage '[^']*' failed in (?P<where>.*)$")


@dataclass(frozen=True)
class Finding:
    """One check of one stage: passed, failed (``message`` says what and how to fix it) or skipped (why)."""

    stage: str
    check: str
    status: str
    message: str = ""
    seconds: float | None = None

    def line(self) -> str:
        return f"{self.stage}: {self.message}"


@dataclass
class CheckReport:
    stages: list[str]
    findings: list[Finding]
    quick: bool
    seconds: float = 0.0
    scratch: str | None = None
    """The scratch copy, kept when its run failed."""
    notes: list[str] = field(default_factory=list)

    @property
    def failures(self) -> list[Finding]:
        return [finding for finding in self.findings if finding.status == FAIL]

    @property
    def ok(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "quick": self.quick, "seconds": round(self.seconds, 1), "stages": self.stages,
                "checks": [asdict(finding) for finding in self.findings], "failures": [f.line() for f in self.failures],
                "scratch": self.scratch, "notes": self.notes}


# Static checks: files only, fast (the pre-commit hook).


def read_notebook(path: Path) -> tuple[dict[str, Any] | None, str]:
    """The notebook's JSON, or None and what is wrong with it."""
    if not path.is_file():
        return None, "not found"
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return None, f"is not readable JSON ({exc})"
    if not isinstance(document, dict) or not isinstance(document.get("cells"), list):
        return None, "is not a notebook (no 'cells' list)"
    return document, ""


def code_cells(document: dict[str, Any]) -> list[dict[str, Any]]:
    return [cell for cell in document["cells"] if isinstance(cell, dict) and cell.get("cell_type") == "code"]


def check_notebook(stage: Stage, problem: str) -> Finding:
    if not problem:
        return Finding(stage.name, "notebook", PASS)
    fix = ("create it, or point meta.notebook in dvc.yaml at the stage's notebook" if problem == "not found"
           else "restore it from git (`git checkout -- FILE`) or save it again from Jupyter")
    return Finding(stage.name, "notebook", FAIL, f"notebook {stage.notebook} (meta.notebook in {DVC_FILE}) {problem} — {fix}")


def check_parameters_cell(stage: Stage, document: dict[str, Any]) -> Finding:
    if any("parameters" in (cell.get("metadata", {}).get("tags") or []) for cell in code_cells(document)):
        return Finding(stage.name, "parameters", PASS)
    return Finding(stage.name, "parameters", FAIL,
                   f"notebook {stage.notebook} has no code cell tagged 'parameters' — add one holding `params = None` "
                   "and `project_dir = None` and give it the tag 'parameters' (JupyterLab: the cell's property "
                   "inspector; papermill injects the stage's params after it)")


def check_clean(stage: Stage, document: dict[str, Any]) -> Finding:
    stored = [cell for cell in code_cells(document) if cell.get("outputs") or cell.get("execution_count") is not None]
    if not stored:
        return Finding(stage.name, "clean", PASS)
    cells = "1 cell" if len(stored) == 1 else f"{len(stored)} cells"
    return Finding(stage.name, "clean", FAIL,
                   f"notebook {stage.notebook} has stored outputs in {cells} — clear them (Kernel > Restart & Clear "
                   f"Output, or `jupyter nbconvert --clear-output --inplace {stage.notebook}`)")


def installed_kernel(name: str) -> bool:
    """Whether Jupyter finds the kernelspec ``name`` (where this Python's Jupyter looks)."""
    from jupyter_client.kernelspec import KernelSpecManager

    return name in KernelSpecManager().find_kernel_specs()


def check_kernel(stage: Stage, document: dict[str, Any], installed: bool) -> Finding:
    from reprobook.execution.kernel import KERNEL_NAME

    spec = document.get("metadata", {}).get("kernelspec") or {}
    named = spec.get("name") if isinstance(spec, dict) else None
    if named != KERNEL_NAME:
        found = f"kernel '{named}'" if named else "no kernel (metadata.kernelspec.name)"
        return Finding(stage.name, "kernel", FAIL,
                       f"notebook {stage.notebook} names {found}; expected the project's kernel '{KERNEL_NAME}' — "
                       f"in Jupyter choose Kernel > Change Kernel > Python ({KERNEL_NAME}) and save it, "
                       f"or set metadata.kernelspec.name to '{KERNEL_NAME}'")
    if not installed:
        return Finding(stage.name, "kernel", FAIL,
                       f"Jupyter kernel '{KERNEL_NAME}' is not installed — run `make setup` (or `{sys.executable} -m "
                       f"ipykernel install --sys-prefix --name {KERNEL_NAME}`)")
    return Finding(stage.name, "kernel", PASS)


def has_key(tree: Any, dotted: str) -> bool:
    """Whether the nested mapping holds the dotted key."""
    for part in dotted.split("."):
        if not isinstance(tree, dict) or part not in tree:
            return False
        tree = tree[part]
    return True


def check_params(stage: Stage, raw_params: dict[str, Any]) -> Finding:
    """DVC reads the declared keys from params.yaml itself: a default of reprobook's does not count."""
    missing = [key for key in stage.params if not has_key(raw_params, key)]
    if not missing:
        return Finding(stage.name, "params", PASS)
    keys, them = ", ".join(f"'{key}'" for key in missing), "it" if len(missing) == 1 else "them"
    return Finding(stage.name, "params", FAIL,
                   f"{DVC_FILE} declares params {keys} for this stage, which {PARAMS_FILE} lacks — add {them} to "
                   f"{PARAMS_FILE}, or remove {them} from the stage's params: in {DVC_FILE}")


def static_checks(root: Path, stage: Stage, raw_params: dict[str, Any], kernel_installed: bool) -> list[Finding]:
    document, problem = read_notebook(root / stage.notebook)
    findings = [check_notebook(stage, problem)]
    if document is None:
        findings += [Finding(stage.name, check, SKIP, "no notebook to read") for check in ("parameters", "clean", "kernel")]
    else:
        findings += [check_parameters_cell(stage, document), check_clean(stage, document),
                     check_kernel(stage, document, kernel_installed)]
    return [*findings, check_params(stage, raw_params)]


# The tiny run: a scratch copy of the project, tiny params, every stage in pipeline order.


def project_files(root: Path) -> list[str]:
    """The project's files as git sees them (tracked, and new ones not ignored); every file outside git."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=root,
                                capture_output=True, text=True)
    except OSError:  # no git on this machine
        listed = subprocess.CompletedProcess([], 1)
    if listed.returncode == 0:
        return [name for name in listed.stdout.split("\0") if name and (root / name).is_file()]
    found = []
    for folder, folders, files in os.walk(root):
        folders[:] = [name for name in folders if name not in NEVER_COPIED and not (folder == str(root) and name == ".dvc")]
        found += [os.path.relpath(os.path.join(folder, name), root) for name in files if name not in NEVER_COPIED]
    return found


def data_paths(root: Path, stages: dict[str, Stage], raw_params: dict[str, Any]) -> list[str]:
    """What the stages read that no stage writes (data/raw, schemas, the source file): git may not hold it."""
    written = {out.rstrip("/") for stage in stages.values() for out in stage.outs}
    paths = {dep.rstrip("/") for stage in stages.values() for dep in stage.deps if not dep.startswith(FINGERPRINT_DIR)}
    source = (raw_params.get("data") or {}).get("source") if isinstance(raw_params.get("data"), dict) else None
    located = source_file(source, root) if isinstance(source, str) else None
    if located is not None and located.resolve().is_relative_to(root.resolve()):
        paths.add(str(located.resolve().relative_to(root.resolve())))
    return sorted(path for path in paths - written if (root / path).exists())


def copy_into(root: Path, copy: Path, relatives: Iterable[str]) -> None:
    for relative in relatives:
        source, target = root / relative, copy / relative
        if source.is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns(*NEVER_COPIED), symlinks=False)
        elif source.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def scratch_copy(root: Path, stages: dict[str, Stage], raw_params: dict[str, Any]) -> Path:
    """A copy of the project's files and data in a new temporary folder, without any declared output."""
    copy = Path(tempfile.mkdtemp(prefix="reprobook-check-"))
    try:
        copy_into(root, copy, project_files(root))
        copy_into(root, copy, data_paths(root, stages, raw_params))
        for out in {out for stage in stages.values() for out in stage.outs}:
            target = copy / out
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()
    except BaseException:
        shutil.rmtree(copy, ignore_errors=True)
        raise
    return copy


def tiny_params(root: Path, raw_params: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """params.yaml with ``check.params`` set, validated; notes for keys it skipped.

    A key is set when params.yaml or its defaults have it; one they lack (a
    hyperparameter of an estimator the project no longer uses) is skipped.
    """
    from reprobook.errors import ReprobookError
    from reprobook.project.params import apply_overrides, project_params, validate_params
    from reprobook.project.stages import declared_sections

    params = project_params(root)
    known = params.model_dump(mode="json")
    applied, notes = [], []
    for key, value in params.check.params.items():
        if has_key(known, key):
            applied.append(f"{key}={json.dumps(value)}")
        else:
            notes.append(f"check.params: '{key}' is not a key of {PARAMS_FILE}; the tiny run does not set it")
    tiny = apply_overrides(raw_params, applied)
    try:
        validate_params(tiny, source=f"{PARAMS_FILE} with check.params", user_sections=declared_sections(root))
    except ReprobookError as exc:
        raise ReprobookError(f"{exc} — change check.params in {PARAMS_FILE}") from None
    return tiny, notes


def stage_environment(copy: Path) -> dict[str, str]:
    """The caller's environment for a stage of the copy: its own MLflow store, nothing naming the user's runs."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("MLFLOW_", "DVC_EXP_")) and (not key.startswith("REPROBOOK_") or key in KEPT_VARIABLES)}
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{copy / 'mlflow.db'}"
    return env


def failure_message(stderr: str, returncode: int) -> str:
    """The runner's one-line reason (``cell 7: ValueError: ...``), else the last thing the stage said."""
    errors = [line.removeprefix("error: ").strip() for line in stderr.splitlines() if line.startswith("error: ")]
    if errors:
        matched = RUNNER_FAILURE.match(errors[-1])
        return f"in {matched['where']}" if matched else f"({errors[-1]})"
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    return f"({lines[-1] if lines else f'exit {returncode}'})"


def run_one(copy: Path, stage: Stage, env: dict[str, str]) -> Finding:
    """Run the stage in the copy; it passes when it finished and wrote every path it declares."""
    started = time.monotonic()
    from reprobook.execution.processes import console_script

    done = subprocess.run([console_script("reprobook"), "stage", stage.name, "--no-progress"], cwd=copy, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True)
    seconds = time.monotonic() - started
    if done.returncode != 0:
        executed = copy / "reports" / stage.name / "notebook.ipynb"
        where = f"; executed notebook (failing cell marked): {executed}" if executed.is_file() else ""
        return Finding(stage.name, "run", FAIL,
                       f"fails on tiny params (check.params) {failure_message(done.stderr, done.returncode)} — fix "
                       f"{stage.notebook}{where}", seconds)
    missing = [out for out in stage.outs if not (copy / out).exists()]
    if missing:
        them = "it" if len(missing) == 1 else "them"
        return Finding(stage.name, "run", FAIL,
                       f"ran on tiny params but did not write {', '.join(missing)}, declared in {DVC_FILE} — write "
                       f"{them} in {stage.notebook} (under ctx.out, ctx.outputs or ctx.plots), or remove {them} from "
                       "the stage's outs, metrics or plots in dvc.yaml", seconds)
    return Finding(stage.name, "run", PASS, "", seconds)


def tiny_run(root: Path, stages: dict[str, Stage], order: list[str], raw_params: dict[str, Any],
             unrunnable: set[str], on_stage: Callable[[str, Finding | None], None]) -> tuple[list[Finding], Path, list[str]]:
    """Run ``order`` in a scratch copy; a stage whose upstream failed (or that has no notebook) is skipped."""
    import yaml

    tiny, notes = tiny_params(root, raw_params)
    copy = scratch_copy(root, stages, raw_params)
    (copy / PARAMS_FILE).write_text(yaml.safe_dump(tiny, sort_keys=False))
    env = stage_environment(copy)
    findings: list[Finding] = []
    broken = set(unrunnable)
    try:
        for name in order:
            blocked = [other for other in upstream(stages, name) if other in broken]
            if name in unrunnable or blocked:
                reason = "its notebook cannot be read" if name in unrunnable else f"upstream stage {blocked[0]} failed"
                finding = Finding(name, "run", SKIP, f"not run: {reason}")
                broken.add(name)
            else:
                on_stage(name, None)
                finding = run_one(copy, stages[name], env)
                if finding.status == FAIL:
                    broken.add(name)
            findings.append(finding)
            on_stage(name, finding)
    except BaseException:  # interrupted (Ctrl-C): nothing to read in a half-run copy
        shutil.rmtree(copy, ignore_errors=True)
        raise
    return findings, copy, notes


def check_project(root: Path, *, stage: str | None = None, quick: bool = False,
                  on_stage: Callable[[str, Finding | None], None] = lambda name, finding: None) -> CheckReport:
    """Check every stage of ``dvc.yaml`` (or only ``stage``); with ``quick``, the static checks only.

    ``on_stage(name, None)`` is called when a stage of the tiny run starts,
    ``on_stage(name, finding)`` when it is done (for progress).
    """
    from reprobook.execution.kernel import KERNEL_NAME
    from reprobook.project.params import read_raw_params

    started = time.monotonic()
    stages = load_stages(root)
    selected = [get_stage(root, stage).name] if stage else list(stages)
    raw_params = read_raw_params(root / PARAMS_FILE)
    installed = installed_kernel(KERNEL_NAME)
    findings = [finding for name in selected for finding in static_checks(root, stages[name], raw_params, installed)]
    report = CheckReport(selected, findings, quick)
    if not quick and selected:
        order = [*(upstream(stages, stage) if stage else []), *selected]
        unrunnable = {f.stage for f in findings if f.check == "notebook" and f.status == FAIL}
        ran, copy, report.notes = tiny_run(root, stages, order, raw_params, unrunnable, on_stage)
        report.findings += ran
        if any(finding.status == FAIL for finding in ran):
            report.scratch = str(copy)
        else:
            shutil.rmtree(copy, ignore_errors=True)
    report.seconds = time.monotonic() - started
    return report


# Output.


def report_text(report: CheckReport) -> list[str]:
    """A line per stage with a mark per check, then one line per failed check, then the verdict."""
    if not report.stages:
        return [f"{DVC_FILE} declares no reprobook stages: nothing to check"]
    checks = list(STATIC_CHECKS if report.quick else CHECKS)
    by_key = {(f.stage, f.check): f for f in report.findings}
    # In the order they ran (upstream stages of --stage first), else as dvc.yaml lists them.
    names = [*dict.fromkeys([*(f.stage for f in report.findings if f.check == "run"), *report.stages])]
    width = max(len("stage"), *(len(name) for name in names))
    lines = ["  ".join(["stage".ljust(width), *(CHECKS[check] for check in checks)])]
    for name in names:
        cells = []
        for check in checks:
            finding = by_key.get((name, check))
            mark = MARKS[finding.status] if finding else " "
            if finding and finding.seconds is not None and finding.status == PASS:
                mark += f" {finding.seconds:.1f}s"
            cells.append(mark.ljust(len(CHECKS[check])))
        lines.append("  ".join([name.ljust(width), *cells]).rstrip())
    order = list(CHECKS)
    failures = sorted(report.failures, key=lambda f: (names.index(f.stage), order.index(f.check)))
    lines += [""] if failures else []
    lines += [finding.line() for finding in failures]
    lines += report.notes
    total = len([f for f in report.findings if f.status != SKIP])
    mode = " (--quick: no tiny run)" if report.quick else ""
    if report.ok:
        lines.append(f"all {total} checks passed on {len(names)} stage(s) in {report.seconds:.1f}s{mode}")
    else:
        failed = sorted({f.stage for f in report.failures}, key=names.index)
        lines.append(f"{len(report.failures)} of {total} checks failed ({', '.join(failed)}){mode}")
    if report.scratch:
        lines.append(f"scratch copy of the tiny run kept for reading: {report.scratch} (delete it when done)")
    return lines


class RunProgress:
    """The tiny run as one live line (``tiny run · stage modeling · 4.2s · scoping ✓ data ✓``); a callback of
    :func:`check_project`, drawn by :func:`reprobook.execution.progress.shown` on a terminal."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.current: str | None = None
        self.done: list[Finding] = []
        self._clock = clock
        self.stage_started = clock()
        self.on_change: Callable[[], None] | None = None

    def __call__(self, name: str, finding: Finding | None) -> None:
        if finding is None:
            self.current, self.stage_started = name, self._clock()
        else:
            self.current = None
            self.done.append(finding)
        if self.on_change is not None:
            self.on_change()

    def describe(self) -> str:
        done = " ".join(f"{f.stage} {MARKS[f.status]}" for f in self.done)
        now = f"stage {self.current} · {self._clock() - self.stage_started:.1f}s" if self.current else ""
        return " · ".join(part for part in ("tiny run", now or ("" if done else "copying the project"), done) if part)

    def __rich__(self) -> Any:
        from rich.text import Text

        return Text(self.describe(), no_wrap=True, overflow="ellipsis", end="")
