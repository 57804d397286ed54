"""Check everything checkable before any stage runs, so a mistake never costs the last good outputs.

DVC deletes a stage's outputs before it runs the stage: a misspelt
hyperparameter found inside the modeling notebook has already cost the model
and its metrics. ``reprobook run`` therefore checks, before DVC starts, what
the params say about each other (the threshold within the metric's range, the
metric fits the task, the estimator importable, of the right kind and
accepting its hyperparameters, sensitive features and dropped columns not the
target and present in the schema, a registry name MLflow accepts), that the
tracking store can be written, and that the disk has room. Every problem is
reported at once, one line each, naming the key.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
from pathlib import Path
from urllib.parse import urlparse

from reprobook.errors import ReprobookError
from reprobook.project.params import Params

MIN_FREE_BYTES = 200 * 1024 * 1024
CONNECT_TIMEOUT_SECONDS = 5.0
REGISTERED_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\- ]*")
SQLITE_HEADER = b"SQLite format 3\x00"


class PreflightError(ReprobookError):
    """One or more problems found before running anything."""


def check(root: Path, params: Params) -> None:
    """Raise :class:`PreflightError` listing every problem found, or return quietly."""
    problems = [
        *params_problems(root, params),
        *store_problems(root),
        *remote_problems(root),
        *disk_problems(root),
    ]
    if problems:
        header = "nothing was run; " if len(problems) == 1 else f"nothing was run; {len(problems)} problems:\n  "
        raise PreflightError(header + "\n  ".join(problems))


def _last_targets(root: Path) -> dict:
    """What the last scoping run decided (task, target), if it ran."""
    from reprobook.project.paths import TARGETS_FILE

    try:
        return json.loads((root / TARGETS_FILE).read_text())
    except (OSError, ValueError):
        return {}


def known_task(root: Path, params: Params) -> str | None:
    """The task if it is known before running: set in params, or decided by the last scoping run."""
    if params.scoping.task in ("classification", "regression"):
        return params.scoping.task
    return _last_targets(root).get("task")


def params_problems(root: Path, params: Params) -> list[str]:
    from reprobook.ml.metrics import METRICS

    problems: list[str] = []
    task = known_task(root, params)
    metric = METRICS.get(params.scoping.primary_metric or "")
    if params.scoping.primary_metric and metric is None:
        problems.append(f"scoping.primary_metric: unknown metric '{params.scoping.primary_metric}'; "
                        f"expected one of: {', '.join(METRICS)}")
    if task is None and metric is not None:
        # The data has not decided the task yet: the metric and the estimator must at least agree.
        kind = _estimator_task(params)
        if kind and kind != metric.task:
            problems.append(f"scoping.primary_metric '{metric.name}' is a {metric.task} metric but model.estimator "
                            f"'{params.model.estimator}' is for {kind}: change one of them")
            return problems
        task = metric.task
    if metric is not None and task and metric.task != task:
        fitting = ", ".join(m for m, spec in METRICS.items() if spec.task == task)
        problems.append(f"scoping.primary_metric: '{metric.name}' is a {metric.task} metric but the task is {task}; "
                        f"expected one of: {fitting}")
    threshold = params.scoping.threshold
    if metric is not None and threshold is not None and not metric.bounds[0] <= threshold <= metric.bounds[1]:
        low, high = metric.bounds
        problems.append(f"scoping.threshold: {threshold} can never be met by {metric.name}, "
                        f"whose values lie in [{low:g}, {high:g}]")
    problems += _estimator_problems(params, task)
    target = params.data.target or _last_targets(root).get("target")
    file_problems = _data_file_problems(root, params)
    if file_problems:
        # A header that repeats a name cannot be checked against: its problem is the one to fix first.
        problems += file_problems
    else:
        problems += _column_problems(root, params, target)
        problems += design_problems(root, params)
    name = params.model.registered_name
    if not REGISTERED_NAME.fullmatch(name) or name != name.strip():
        problems.append(f"model.registered_name: '{name}' is not a registry name MLflow accepts; use letters, "
                        "digits, '-', '_', '.' (no '/', ':' or '%')")
    return problems


def _column_problems(root: Path, params: Params, target: str | None) -> list[str]:
    """Columns that params name (drop_columns, data.columns, sensitive features) and the table lacks."""
    from reprobook.ml.datasets import roles_of_another_table

    # The raw file's header when it can be read cheaply (the columns drop_columns and data.columns name are
    # those of the source, which the schema may no longer list), else the schema's columns.
    source = _source_columns(root, params)
    columns = source if source is not None else _schema_columns(root, params)
    where = f"the data file {params.data.source}" if source is not None else f"the schema {params.data.schema_file}"
    foreign = roles_of_another_table(params.data.columns, sorted(columns), params.data.source) if columns else None
    problems = [foreign] if foreign else []
    for key, names in (("data.drop_columns", params.data.drop_columns),
                       ("data.columns", [] if foreign else list(params.data.columns)),
                       ("error_analysis.sensitive_features", params.error_analysis.sensitive_features)):
        for name in names:
            if target and name == target:
                if key != "data.columns":
                    problems.append(f"{key}: '{name}' is the target (data.target); a feature list cannot hold it")
            elif columns is not None and name not in columns:
                problems.append(f"{key}: no column '{name}' in {where}")
    return problems


def _data_file_problems(root: Path, params: Params) -> list[str]:
    """A CSV whose header repeats a column (pandas would rename the copy, silently)."""
    from reprobook.ml.datasets import check_csv_header
    from reprobook.project.paths import source_file

    path = source_file(params.data.source, root) if params.data.source.startswith("csv:") else None
    if path is None or not path.is_file():
        return []
    try:
        check_csv_header(path)
    except ReprobookError as exc:
        return [str(exc)]
    return []


def design_problems(root: Path, params: Params) -> list[str]:
    """A design matrix that would not fit in ``model.max_memory_mb``, estimated from the raw file (csv:/parquet:)
    and the declared roles: refused here, before DVC deletes any output, rather than in the modeling kernel.

    pyarrow reads the file (no pandas); only the level counts of the
    categorical and boolean columns are computed. A column without a declared
    role is counted as the data stage would treat an unknown one: numeric.
    """
    from reprobook.ml import design
    from reprobook.project.paths import source_file

    kind = params.data.source.partition(":")[0]
    path = source_file(params.data.source, root) if kind in ("csv", "parquet") else None
    if path is None or not path.is_file() or not params.data.columns:
        return []
    try:
        import pyarrow.compute as pc

        if kind == "parquet":
            import pyarrow.parquet as pq

            table = pq.read_table(path)
        else:
            import pyarrow.csv as pcsv

            table = pcsv.read_csv(path)
    except (OSError, ValueError, ImportError):
        return []  # the data stage reads it and names what is wrong
    if len(set(table.column_names)) != len(table.column_names):
        return []  # a repeated header: header_problems names it
    model, roles = params.model, params.data.columns
    dropped = set(params.data.drop_columns)
    target = params.data.target
    n_classes = int(pc.count_distinct(table[target]).as_py()) if target in table.column_names else 2
    widths = {}
    for name in table.column_names:
        role = roles.get(name, "numeric")
        if name in dropped or name == target:
            continue
        levels = 0
        if role in ("categorical", "boolean"):
            column = table[name]
            levels = int(pc.count_distinct(column).as_py()) + int(column.null_count > 0)
        widths[name] = design.width(design.encoder(role, levels, model.onehot_max_levels, model.text_encoder != "none"),
                                    levels, model.onehot_max_levels, n_classes)
    rows = int(table.num_rows * (1 - params.data.test_size))
    try:
        design.check_memory(rows, widths, design.memory_limit_mb(model.max_memory_mb))
    except ReprobookError as exc:
        return [str(exc)]
    return []


def _estimator_task(params: Params) -> str | None:
    """The task the configured estimator is for, when the data has not decided it yet."""
    return _estimator_facts(params, None)["kind"]


def _estimator_problems(params: Params, task: str | None) -> list[str]:
    return _estimator_facts(params, task)["problems"]


def _estimator_facts(params: Params, task: str | None) -> dict:
    """What the estimator is for and what is wrong with its settings: computed with scikit-learn once per
    environment and settings when the estimator is installed code (:mod:`reprobook.project.envcache`),
    every time when it is the project's own."""
    from reprobook.project.envcache import cached, is_installed_module

    if not is_installed_module(params.model.estimator):
        return _check_estimator(params, task)
    settings = json.dumps([params.model.model_dump(mode="json"), task], sort_keys=True, default=str)
    key = hashlib.sha256(settings.encode()).hexdigest()[:24]
    return cached(f"preflight.estimator.{key}", lambda: _check_estimator(params, task))


def _check_estimator(params: Params, task: str | None) -> dict:
    from sklearn.base import is_classifier, is_regressor

    from reprobook.ml.estimators import make_estimator, resolve_estimator

    kind = None
    try:
        estimator = resolve_estimator(params.model.estimator)()
        kind = "classification" if is_classifier(estimator) else "regression" if is_regressor(estimator) else None
    except Exception:  # reported below
        pass
    try:
        estimator = make_estimator(params.model, task or "auto")
        estimator._validate_params()  # scikit-learn's own check of every hyperparameter value
    except ReprobookError as exc:
        return {"kind": kind, "problems": [str(exc)]}
    except Exception as exc:  # InvalidParameterError and friends: a value the estimator refuses
        return {"kind": kind, "problems": [f"model.params: {exc}"]}
    if params.model.search:  # a sweep's names and values, checked before DVC deletes anything
        from sklearn.pipeline import Pipeline

        from reprobook.ml import search

        alone = Pipeline([(search.MODEL_STEP, estimator)])
        try:
            search.check_names(alone, params.model.search)
            search.check_values(alone, search.grid(params.model.search))
        except ReprobookError as exc:
            return {"kind": kind, "problems": [str(exc)]}
    return {"kind": kind, "problems": []}


def _source_columns(root: Path, params: Params) -> set[str] | None:
    """The header of a csv:/parquet: source (one line, or the parquet footer), None when not at hand."""
    from reprobook.project.paths import source_file

    kind = params.data.source.partition(":")[0]
    path = source_file(params.data.source, root) if kind in ("csv", "parquet") else None
    if path is None or not path.is_file():
        return None
    try:
        if kind == "parquet":
            import pyarrow.parquet as pq

            return set(pq.read_schema(path).names)
        import csv

        with path.open(newline="", encoding="utf-8", errors="replace") as handle:
            return {h.strip() for h in next(csv.reader(handle), [])}
    except (OSError, ValueError, ImportError):
        return None


def _schema_columns(root: Path, params: Params) -> set[str] | None:
    if not params.data.schema_file or not (root / params.data.schema_file).is_file():
        return None
    import yaml

    try:
        schema = yaml.safe_load((root / params.data.schema_file).read_text()) or {}
    except yaml.YAMLError:
        return None
    columns = schema.get("columns") if isinstance(schema, dict) else None
    return set(columns) if isinstance(columns, dict) else None


def store_problems(root: Path) -> list[str]:
    """The tracking store can be written: a SQLite file (present, writable, really SQLite) or a server that answers."""
    from reprobook.tracking.store import tracking_uri

    uri = tracking_uri(root)
    if uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///"))
        path = path if path.is_absolute() else Path("/" + str(path))
        if path.exists():
            if not path.is_file():
                return [f"tracking store {path}: not a file"]
            with path.open("rb") as handle:
                head = handle.read(len(SQLITE_HEADER))
            if head and head != SQLITE_HEADER:
                return [f"tracking store {path}: not an SQLite database (corrupt?); move it aside to start a new one"]
            if not _writable(path):
                return [f"tracking store {path}: read-only; make it writable (chmod u+w) or set MLFLOW_TRACKING_URI"]
        elif not _writable(path.parent):
            return [f"tracking store {path}: its folder is not writable"]
        return []
    parsed = urlparse(uri)
    if parsed.scheme in ("http", "https"):
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        try:
            socket.create_connection((parsed.hostname or "127.0.0.1", port), timeout=CONNECT_TIMEOUT_SECONDS).close()
        except OSError as exc:
            return [f"tracking store {_without_credentials(parsed)}: unreachable ({exc.strerror or exc}); "
                    "start the server or fix MLFLOW_TRACKING_URI"]
    return []


REMOTE_SECRETS = ("access_key_id", "secret_access_key", "session_token", "password", "account_key", "sas_token",
                  "connection_string", "gdrive_client_secret", "key_passphrase")


def remote_problems(root: Path) -> list[str]:
    """A credential in ``.dvc/config``, the committed file, would reach every clone and the git history."""
    import configparser

    config = root / ".dvc" / "config"
    if not config.is_file():
        return []
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(config)
    except configparser.Error:
        return []  # DVC reports a malformed config itself
    problems = []
    for section in parser.sections():
        found = [key for key in parser[section] if key in REMOTE_SECRETS]
        header = section.strip("'")  # DVC writes ['remote "name"']
        if found and header.startswith("remote"):
            name = header.split('"')[1] if '"' in header else header
            problems.append(f".dvc/config (committed) holds {', '.join(found)} of remote '{name}': move it to the "
                            f"git-ignored .dvc/config.local (dvc remote modify --local {name} {found[0]} ...) or the "
                            "environment (AWS_ACCESS_KEY_ID, ...), and out of git history")
    return problems


def _without_credentials(parsed) -> str:
    return f"{parsed.scheme}://{parsed.hostname}{f':{parsed.port}' if parsed.port else ''}{parsed.path}"


def _writable(path: Path) -> bool:
    return os.access(path, os.W_OK)


def disk_problems(root: Path) -> list[str]:
    free = shutil.disk_usage(root).free
    if free < MIN_FREE_BYTES:
        return [f"{root}: only {free // (1024 * 1024)} MB free on disk; a run needs at least "
                f"{MIN_FREE_BYTES // (1024 * 1024)} MB (reports, models, the DVC cache, the tracking store)"]
    return []
