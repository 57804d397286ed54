"""``reprobook new``: a ready project from the templates, for the built-in data or the user's file.

The reference project at the root of the reprobook repository is what this
writes for ``builtin:loans`` (a test keeps the two equal). For a user's CSV or
Parquet file, params.yaml is filled in from the data: source, target, task
(inferred unless given), a primary metric that fits the task, a schema
inferred under ``schemas/``, a model name and experiment named after the
project. The project is a git repository with DVC initialised, the data file
added to DVC, the default DVC remote configured, and a first commit.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

from reprobook import __version__
from reprobook.errors import ReprobookError, UsageError
from reprobook.project import plots_page
from reprobook.execution.processes import run_checked
from reprobook.project.paths import DEFAULT_REMOTE_URL, PRODUCTION_DIR

NOTEBOOKS = ("01_scoping.ipynb", "02_data.ipynb", "03_modeling.ipynb", "04_error_analysis.ipynb", "05_monitoring.ipynb")
"""The stage notebooks; 05_monitoring runs once per production batch (``reprobook monitor``), not in dvc.yaml."""
BUILTIN_STAGES = ("scoping", "data", "modeling", "error_analysis")
ESTIMATORS = {
    "classification": "sklearn.ensemble.HistGradientBoostingClassifier",
    "regression": "sklearn.ensemble.HistGradientBoostingRegressor",
}
CI_SCRIPT = "ci/reprobook-ci.sh"
"""Install, test, check, run and compare with the base, gate: any CI service can call it."""
CI_WORKFLOW = ".github/workflows/reprobook.yml"
DATA_SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
PRE_COMMIT = ".pre-commit-config.yaml"
"""A local pre-commit hook running `reprobook check --quick` (pre-commit itself is the user's choice)."""
REFERENCE_FILES = (
    "dvc.yaml", "params.yaml", "MLproject", "schemas/loans.yaml", plots_page.PAGE, PRE_COMMIT,
    *(f"notebooks/{n}" for n in NOTEBOOKS),
)
"""What the reference project shares with ``reprobook new`` for builtin:loans (README and Makefile are its own)."""


@dataclass(frozen=True)
class ProjectSpec:
    """Everything the templates are filled in with."""

    name: str
    source: str = "builtin:loans"
    target: str | None = None
    task: str = "auto"
    primary_metric: str = "roc_auc"
    threshold: float | None = 0.80
    schema_file: str = "schemas/loans.yaml"
    estimator: str = ESTIMATORS["classification"]
    registered_name: str = "reprobook-loans"
    experiment: str = "reprobook"
    drop_missing_target: bool = False
    sensitive_features: list[str] = field(default_factory=lambda: ["gender"])
    classes: int | None = 2
    """How many classes the target has (None for regression): ROC and PR curves are drawn for two."""
    notes: list[str] = field(default_factory=list)
    """What was decided from the data, said to the user."""
    columns: tuple[tuple[str, str, str], ...] = ()
    """(column, role, why) for every column of the data, as ``data.columns`` lists them."""
    split_kind: str = "stratified"
    split_column: str | None = None
    split_reason: str = "stratified on the target: the classes keep their shares on both sides"
    id_column: str | None = "id"
    """``monitoring.id_column``: the data's row id, if it has one."""


def slug(name: str) -> str:
    """A registry- and experiment-safe name: lower case, digits and dashes."""
    cleaned = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    if not cleaned:
        raise UsageError(f"'{name}': a project name needs at least one letter or digit")
    return cleaned


def _templates():
    return resources.files("reprobook.project") / "templates"


def _yaml_value(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return json.dumps(value)
    return _yaml_key(value) if isinstance(value, str) else str(value)


def _yaml_key(name: str) -> str:
    """A column name as YAML reads it back unchanged: plain when safe, else quoted (JSON is YAML)."""
    import yaml

    plain = re.fullmatch(r"[A-Za-z_][\w.-]*", name) is not None
    return name if plain and yaml.safe_load(f"{name}: 1") == {name: 1} else json.dumps(name)


def render(spec: ProjectSpec, target: Path, *, reference_only: bool = False) -> list[Path]:
    """Write the project's files into ``target`` (an existing folder); return what was written."""
    import jinja2

    templates = _templates()
    env = jinja2.Environment(keep_trailing_newline=True, undefined=jinja2.StrictUndefined, autoescape=False)
    values = {
        **asdict(spec),
        **{key: _yaml_value(getattr(spec, key)) for key in ("target", "threshold", "drop_missing_target",
                                                           "split_column", "id_column")},
        "columns": [(_yaml_key(name), role, " ".join(why.split())) for name, role, why in spec.columns],
        "stages": BUILTIN_STAGES,
    }
    # The plots dvc.yaml declares are the ones the modeling stage writes for this task (the
    # built-in data's task is inferred, auto: its plots are a binary classifier's).
    plots = "regression" if spec.task == "regression" else "binary" if spec.classes == 2 else "multiclass"
    written: list[Path] = []

    def put(relative: str, text: str) -> None:
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)

    def fill(template: str, **extra: object) -> str:
        return env.from_string((templates / template).read_text()).render(**{**values, **extra})

    put("dvc.yaml", fill("dvc.yaml.j2", plots=plots))
    put("params.yaml", fill("params.yaml.j2"))
    put("MLproject", fill("MLproject.j2"))
    for notebook in NOTEBOOKS:
        put(f"notebooks/{notebook}", (templates / "notebooks" / notebook).read_text())
    if spec.source == "builtin:loans":
        put(spec.schema_file, (templates / "loans_schema.yaml").read_text())
    put(plots_page.PAGE, plots_page.page())
    put(PRE_COMMIT, (templates / "pre-commit-config.yaml").read_text())
    if reference_only:
        return written
    put("README.md", fill("README.md.j2"))
    put("Makefile", fill("Makefile.j2"))
    put(".gitignore", (templates / "gitignore").read_text())
    put("requirements.txt", f"# reprobook and, through it, everything the pipeline needs\n{requirement()}\n")
    put("tests/test_project.py", (templates / "test_project.py").read_text())
    put(CI_SCRIPT, (templates / "ci" / "reprobook-ci.sh").read_text())
    (target / CI_SCRIPT).chmod(0o755)
    put(CI_WORKFLOW, (templates / "ci" / "github-workflow.yml").read_text())
    put("data/raw/.gitkeep", "")
    put(f"{PRODUCTION_DIR}/.gitkeep", "")
    return written


def requirement() -> str:
    """How this project installs reprobook: from where this reprobook came from, else by version."""
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        direct = distribution("reprobook").read_text("direct_url.json")
    except PackageNotFoundError:
        direct = None
    url = json.loads(direct).get("url", "") if direct else ""
    return f"reprobook @ {url}" if url.startswith("file://") else f"reprobook=={__version__}"


def builtin_spec(name: str) -> ProjectSpec:
    """The built-in loan project; its model and experiment are named after the project."""
    from reprobook.ml.loans import TARGET, make_loans

    columns = _roles(make_loans(5000, 42), TARGET)
    return ProjectSpec(name=name, registered_name=f"{name}-loans", experiment=name, columns=columns,
                       notes=["data: builtin:loans (seeded synthetic loan applications)"])


def _roles(frame, target: str) -> tuple[tuple[str, str, str], ...]:
    from reprobook.ml.roles import infer_roles

    return tuple((name, found.role, found.reason) for name, found in infer_roles(frame, target).items())


def _row_id(columns: tuple[tuple[str, str, str], ...], frame) -> str | None:
    """The first id column unique per row: what a production batch's rows are joined on (monitoring.id_column)."""
    for name, role, _ in columns:
        if role == "id" and frame[name].notna().all() and frame[name].is_unique:
            return name
    return None


def spec_for_data(name: str, data: Path, target: str | None, task: str | None) -> tuple[ProjectSpec, "object"]:
    """Fill the params in from the user's file; return the spec and the loaded frame."""
    import pandas as pd

    from reprobook.ml.datasets import infer_task
    from reprobook.ml.metrics import default_metric

    kind = DATA_SUFFIXES.get(data.suffix.lower())
    if kind is None:
        raise UsageError(f"{data}: expected a .csv or .parquet file, found '{data.suffix or 'no suffix'}'")
    if not data.is_file():
        raise UsageError(f"{data}: data file not found")
    try:
        frame = pd.read_csv(data) if kind == "csv" else pd.read_parquet(data)
    except Exception as exc:  # noqa: BLE001 - any reader failure is the file's
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"{data}: not a readable {kind.upper()} file ({detail})") from None
    columns = [str(c) for c in frame.columns]
    if target is None:
        raise UsageError(f"--target: name the label column of {data.name}; its columns are: {', '.join(columns)}")
    if target not in columns:
        raise UsageError(f"--target: column '{target}' not found in {data.name}; its columns are: {', '.join(columns)}")
    duplicated = sorted({c for c in columns if columns.count(c) > 1 or re.fullmatch(re.escape(target) + r"\.\d+", c)})
    if duplicated:
        raise UsageError(f"{data.name}: column names repeat ({', '.join(duplicated)}); give every column its own name")
    notes = []
    labels = frame[target]
    missing = int(labels.isna().sum())
    if missing == len(frame):
        raise UsageError(f"{data.name}: column '{target}' has no values; expected a label on most rows")
    if missing:
        notes.append(f"{missing} row(s) have no '{target}': data.drop_missing_target is on, the data report counts them")
    resolved, reason = infer_task(labels.dropna(), task or "auto")
    n_classes = int(labels.nunique()) if resolved == "classification" else 0
    metric = default_metric(resolved, n_classes)
    notes.append(f"task: {resolved} ({reason}); primary metric: {metric}")
    from reprobook.ml.splits import propose

    columns = _roles(frame, target)
    split_kind, split_column, split_reason = propose(frame, target, {n: r for n, r, _ in columns}, resolved)
    notes.append(f"split: {split_kind}{f' on {split_column!r}' if split_column else ''} ({split_reason}); "
                 "data.split in params.yaml")
    id_column = _row_id(columns, frame)
    project = slug(name)
    spec = ProjectSpec(
        name=project, source=f"{kind}:data/raw/{data.name}", target=target, task=resolved, primary_metric=metric,
        threshold=None, schema_file=f"schemas/{project}.yaml", estimator=ESTIMATORS[resolved],
        registered_name=project, experiment=project, drop_missing_target=bool(missing), sensitive_features=[],
        classes=n_classes or None, notes=notes, columns=columns, split_kind=split_kind, split_column=split_column,
        split_reason=split_reason, id_column=id_column,
    )
    return spec, frame


def new_project(path: Path, *, data: Path | None = None, target: str | None = None, task: str | None = None,
                remote: str = DEFAULT_REMOTE_URL) -> tuple[Path, ProjectSpec]:
    """Create the project at ``path`` (a new or empty folder); return it and what was decided."""
    from reprobook.execution.fingerprint import write_fingerprints

    path = path.resolve()
    if path.exists() and any(path.iterdir()):
        raise UsageError(f"{path}: folder exists and is not empty; choose a new path")
    if data is None:
        if target or task:
            raise UsageError("--target and --task describe a data file; give it with --data")
        spec = builtin_spec(slug(path.name))
        frame = None
    else:
        spec, frame = spec_for_data(path.name, data.resolve(), target, task)
    path.mkdir(parents=True, exist_ok=True)
    try:
        run_checked(["git", "init", "--quiet"], path, "git init")
        from reprobook.tracking import gitinfo

        note = gitinfo.ensure_identity(path)
        if note:
            spec.notes.append(note)
        run_checked(["dvc", "init", "--quiet"], path, "dvc init")
        run_checked(["dvc", "config", "core.analytics", "false"], path, "dvc config")
        run_checked(["dvc", "remote", "add", "--default", "storage", remote], path, "dvc remote add")
        # `dvc init` wants no .dvc folder yet: the project's files (with the offline plots page in .dvc/) come after.
        run_checked(["dvc", "config", "plots.html_template", plots_page.SETTING], path, "dvc config")
        render(spec, path)
        if frame is not None:
            from reprobook import quality

            shutil.copy2(data, path / "data" / "raw" / data.name)
            quality.infer_schema(frame.dropna(subset=[spec.target]), label=spec.target).to_yaml(path / spec.schema_file)
        if data is not None:
            run_checked(["dvc", "add", "--quiet", f"data/raw/{data.name}"], path, "dvc add")
        from reprobook.project import ignores

        ignores.write_ignores(path)  # what DVC adds on the first run, in the first commit: the run leaves git clean
        write_fingerprints(path)
        run_checked(["git", "add", "--all"], path, "git add")
        run_checked(["git", "commit", "--quiet", "-m", f"New reprobook project {spec.name}"], path, "git commit")
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise
    return path, spec
