"""Data sources chosen by ``data.source`` and the task they imply.

``builtin:loans`` (generated), ``sklearn:<name>`` (bundled with scikit-learn,
no download), ``csv:<path>`` and ``parquet:<path>`` (the user's file, usually
``dvc add``-ed). Every failure names the source, the file and what was found,
and says the next step: the params key to set or the command to run, because
the first run on a data set of one's own is where these errors are met.
"""

from __future__ import annotations

import difflib
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

import pandas as pd

from reprobook.errors import ReprobookError
from reprobook.project.params import DataParams
from reprobook.project.paths import PRODUCTION_DIR, source_file

if TYPE_CHECKING:  # the loaders stay free of the quality package's imports
    from reprobook.quality import Schema, ValidationReport

SKLEARN_DATASETS = ("breast_cancer", "diabetes", "digits", "iris", "wine")
MAX_CLASSES = 50
INFERRED_SCHEMA = "reports/data/outputs/schema.yaml"
"""Where the data stage writes the schema it infers from the data as loaded."""
VALIDATION_REPORT = "reports/data/outputs/validation.html"


@dataclass(frozen=True)
class Dataset:
    frame: pd.DataFrame
    target: str
    source: str
    dropped_missing_target: int = 0
    """Rows dropped because their target was missing (``data.drop_missing_target``): counted, never silent."""
    numeric_text_to_missing: int = 0
    """Non-numeric values of numeric columns made missing (``data.numeric_text: missing``)."""
    production_rows: int = 0
    """Labelled production rows added to the source's (``data/production``, written by ``reprobook retrain``)."""
    roles: dict[str, str] = field(default_factory=dict)
    """The role of every column (declared in ``data.columns``, else inferred): :mod:`reprobook.ml.roles`."""
    role_notes: tuple[str, ...] = ()
    """One line per column without a declared role: what was inferred and why."""
    dropped: tuple[str, ...] = ()
    """Columns left out: ``data.drop_columns`` and those whose role is ``ignored``. No check or model reads them,
    but they stay in the split files, so a champion that read one can still be scored against its successor."""

    @property
    def checked(self) -> pd.DataFrame:
        """The columns the data stage checks (schema, statistics, validation): all but the dropped ones."""
        return self.frame.drop(columns=list(self.dropped))


def load_dataset(params: DataParams, root: Path, *, roles: bool = True) -> Dataset:
    """Load ``params.source`` with its target column checked and extra columns dropped.

    ``roles=False`` (the scoping stage: the target and its baseline are all it
    needs) leaves ``data.columns`` unread, so a role change does not rerun it.
    """
    kind, _, name = params.source.partition(":")
    if kind == "builtin":
        from reprobook.ml.loans import TARGET, make_loans

        frame, default_target = make_loans(params.n_rows, params.seed), TARGET
    elif kind == "sklearn":
        frame, default_target = _load_sklearn(name), "target"
    else:
        frame, default_target = _read_file(kind, source_file(params.source, root), name), None
    target = _check_target(frame, params.target or default_target, params.source)
    _check_drop_columns(frame, list(params.drop_columns), target, params.source)
    if roles:
        column_roles, notes = _roles(frame, target, params)
        ignored = [name for name, role in column_roles.items() if role == "ignored"]
        optional = {name for name, role in column_roles.items() if role in ("id", "text", "ignored")}
    else:  # the scoping stage: the target is all it reads
        column_roles, notes, ignored = {}, [], list(params.drop_columns)
        optional = set(frame.columns) - {target}
    frame, production = _with_production_rows(frame, root, optional)
    frame, coerced = _numeric_text(frame, params, skip=set(ignored))
    frame, dropped = _drop_missing_target(frame, target, params)
    return Dataset(frame=frame, target=target, source=params.source, dropped_missing_target=dropped,
                   numeric_text_to_missing=coerced, production_rows=production, roles=column_roles,
                   role_notes=tuple(notes), dropped=tuple(ignored))


def roles_of_another_table(declared: Mapping[str, str], columns: Iterable[str], source: str) -> str | None:
    """One message when ``data.columns`` names two or more columns and none is in the table: the roles were
    written for another table (a new source set by ``-S data.source=...``), and a line per column would bury that."""
    names = [str(c) for c in columns]
    if len(declared) < 2 or any(name in set(names) for name in declared):
        return None
    return (f"data.columns: none of its {len(declared)} columns ({_column_list(list(declared))}) is in "
            f"{source}, whose columns are: {_column_list(names)}; the roles are another table's: "
            "set data.columns: {} to infer this table's roles (reprobook new --data FILE writes them)")


def _roles(frame: pd.DataFrame, target: str, params: DataParams) -> tuple[dict[str, str], list[str]]:
    """Every column's role (``data.columns``, else inferred and said); a declared column the data lacks is an error."""
    from reprobook.ml.roles import resolve

    declared = dict(params.columns)
    absent = [name for name in declared if name not in frame.columns and name not in params.drop_columns]
    foreign = roles_of_another_table(declared, frame.columns, params.source)
    if foreign:
        raise ReprobookError(foreign)
    if absent:
        raise ReprobookError(
            f"data.columns: '{absent[0]}' has a role in params.yaml but no column in {params.source}"
            f"{_did_you_mean(absent[0], frame.columns)}; columns are: {_column_list(frame.columns)}; "
            "correct or remove that line of data.columns"
        )
    if target in declared and declared[target] != "target":
        raise ReprobookError(
            f"data.columns: '{target}' is the target (data.target) but its role says '{declared[target]}'; "
            "expected role target; change that line, or set data.target to the label column"
        )
    wrong = [name for name, role in declared.items() if role == "target" and name != target]
    if wrong:
        raise ReprobookError(
            f"data.columns: '{wrong[0]}' has role target, but the target is '{target}' (data.target); "
            "expected one target; give that column another role"
        )
    return resolve(frame, target, declared, list(params.drop_columns))


def _with_production_rows(frame: pd.DataFrame, root: Path, optional: set[str] = frozenset()) -> tuple[pd.DataFrame, int]:
    """The source's rows followed by the labelled production rows of ``data/production`` (file name order).

    ``reprobook retrain`` writes them there (DVC-tracked, a dependency of the
    scoping and data stages), so a retrained model's data is versioned like the source.
    A column of ``optional`` (ids and text, which no model reads; every one
    but the target when roles are not read) may be absent: it is missing there.
    """
    folder = root / PRODUCTION_DIR
    files = sorted(folder.glob("*.parquet")) if folder.is_dir() else []
    parts = []
    for path in files:
        rows = pd.read_parquet(path)
        missing = [str(c) for c in frame.columns if c not in rows.columns and c not in optional]
        if missing:
            raise ReprobookError(
                f"{path}: labelled production rows lack {len(missing)} column(s) of the training data: "
                f"{_column_list(pd.Index(missing))}; expected the columns {_column_list(frame.columns)}; "
                "remove the file (dvc remove it) or write it again with `reprobook retrain`"
            )
        parts.append(rows.reindex(columns=list(frame.columns)))
    if not parts:
        return frame, 0
    return pd.concat([frame, *parts], ignore_index=True), sum(len(p) for p in parts)


# ---------------------------------------------------------------- column checks


def _column_list(columns: pd.Index, limit: int = 30) -> str:
    """The column names, comma-separated; a very wide file is cut so the message stays readable."""
    names = [str(c) for c in columns]
    if len(names) > limit:
        return f"{', '.join(names[:limit])}, ... ({len(names) - limit} more)"
    return ", ".join(names) or "(none)"


def _did_you_mean(name: str, columns: pd.Index) -> str:
    """`` (did you mean 'X'?)`` for a near miss in case or spelling, else an empty string."""
    names = [str(c) for c in columns]
    hint = [c for c in names if c.lower() == name.lower()] or difflib.get_close_matches(name, names, n=1)
    return f" (did you mean '{hint[0]}'?)" if hint else ""


def _separator_hint(columns: pd.Index) -> str:
    """A hint when the whole header is one column: the file is not comma-separated (a common export)."""
    if len(columns) != 1:
        return ""
    header = str(columns[0])
    sep = next((s for s in (";", "\t", "|") if s in header), None)
    if sep is None:
        return ""
    shown = "\\t" if sep == "\t" else sep
    return (
        f"; the header is a single column containing '{shown}': csv: sources are read as comma-separated, "
        f"so convert the file (pandas.read_csv(path, sep='{shown}').to_csv(path, index=False)) "
        "or save it as Parquet and use parquet:<path>"
    )


def _check_target(frame: pd.DataFrame, target: str | None, source: str) -> str:
    """The target column, present in ``frame``; else an error listing the columns to choose from."""
    if target is None:
        raise ReprobookError(
            f"data.target: a {source.partition(':')[0]} source needs a target column, found none; "
            f"set data.target in params.yaml to the label column, one of: {_column_list(frame.columns)}"
        )
    if target not in frame.columns:
        raise ReprobookError(
            f"data.target: column '{target}' not found in {source}{_did_you_mean(target, frame.columns)}; "
            f"columns are: {_column_list(frame.columns)}; set data.target in params.yaml to the label column"
            f"{_separator_hint(frame.columns)}"
        )
    return target


def _check_drop_columns(frame: pd.DataFrame, drop: list[str], target: str, source: str) -> None:
    """``data.drop_columns`` names columns of ``frame``, not the target."""
    if target in drop:
        raise ReprobookError(
            f"data.drop_columns: lists '{target}', which is the target (data.target); expected feature columns only; "
            "remove it from data.drop_columns in params.yaml, or set data.target to another column"
        )
    absent = [c for c in drop if c not in frame.columns]
    if absent:
        raise ReprobookError(
            f"data.drop_columns: {', '.join(map(repr, absent))} not found in {source}"
            f"{_did_you_mean(absent[0], frame.columns)}; columns are: {_column_list(frame.columns)}; "
            "correct or remove these names in data.drop_columns in params.yaml"
        )


NUMERIC_SHARE = 0.9
"""A text column is "numeric with a few stray values" when at least this share of its values are numbers."""


def numeric_with_text(column: pd.Series) -> pd.Series | None:
    """The non-numeric values of a text column that is otherwise numeric (None if it is not such a column).

    Why it matters: one ``?`` among thousands of numbers makes pandas read the
    whole column as text, and the model then one-hot encodes every distinct
    number as a category, silently.
    """
    if pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
        return None
    values = column.dropna()
    if len(values) < 10:
        return None
    text = values.astype(str).str.strip()
    numeric = pd.to_numeric(text, errors="coerce").notna()
    if numeric.all() or numeric.mean() < NUMERIC_SHARE:
        return None
    return values[~numeric]


def _numeric_text(frame: pd.DataFrame, params: DataParams, skip: set[str] = frozenset()) -> tuple[pd.DataFrame, int]:
    """Numeric columns read as text because of a few stray values: an error, or as ``data.numeric_text`` says
    (``skip``: dropped columns, which nothing reads)."""
    found = {name: stray for name in frame.columns
             if name not in skip and (stray := numeric_with_text(frame[name])) is not None}
    if not found:
        return frame, 0
    policy = params.numeric_text  # read only when needed: a stage that does not declare it runs on clean data
    if policy == "text":
        return frame, 0
    if policy == "error":
        name, stray = next(iter(found.items()))
        examples = ", ".join(repr(v) for v in list(dict.fromkeys(stray.astype(str)))[:3])
        rows = ", ".join(str(i + 2) for i in stray.index[:3])  # file lines: the header is line 1
        others = f" (also: {', '.join(map(repr, list(found)[1:]))})" if len(found) > 1 else ""
        raise ReprobookError(
            f"{params.source}: column '{name}' is numeric except {len(stray)} value(s) such as {examples} "
            f"(lines {rows}){others}; expected numbers. Fix the data, or set data.numeric_text in params.yaml "
            "to 'missing' (those values become missing, counted in the data report) or 'text' (keep it as text)"
        )
    frame = frame.copy()
    for name in found:
        frame[name] = pd.to_numeric(frame[name].astype("string").str.strip(), errors="coerce").astype("float64")
    return frame, int(sum(len(stray) for stray in found.values()))


def _drop_missing_target(frame: pd.DataFrame, target: str, params: DataParams) -> tuple[pd.DataFrame, int]:
    """``frame`` without the rows whose target is missing, and how many they were.

    Dropping is opt-in (``data.drop_missing_target``) because rows that vanish
    change what the model is judged on; the count goes into the data report.
    The flag is read only when a target is missing, so a stage that does not
    declare the key still runs on complete data.
    """
    missing = frame[target].isna()
    n_missing = int(missing.sum())
    if not n_missing:
        return frame, 0
    if n_missing == len(frame):
        raise ReprobookError(
            f"data.target: column '{target}' is missing in all {n_missing} rows; expected a label in most rows; "
            "check that data.target in params.yaml names the label column"
        )
    if not params.drop_missing_target:
        raise ReprobookError(
            f"data.target: column '{target}' has {n_missing} missing values (of {len(frame)} rows); expected none; "
            "set data.drop_missing_target: true in params.yaml to drop those rows "
            "(the data stage reports how many), or fill them in the data"
        )
    return frame.loc[~missing].reset_index(drop=True), n_missing


# ---------------------------------------------------------------- sources


def _load_sklearn(name: str) -> pd.DataFrame:
    if name not in SKLEARN_DATASETS:
        raise ReprobookError(
            f"data.source: unknown scikit-learn data set '{name}'; expected one of: {', '.join(SKLEARN_DATASETS)}"
        )
    import sklearn.datasets

    bunch = getattr(sklearn.datasets, f"load_{name}")(as_frame=True)
    frame = bunch.frame.copy()
    frame.columns = [str(c).replace(" ", "_") for c in frame.columns]
    return frame


def _read_file(kind: str, path: Path | None, location: str) -> pd.DataFrame:
    """The user's CSV or Parquet file; each way it can fail names the file and what to change."""
    assert path is not None
    if not path.is_file():
        raise ReprobookError(
            f"data.source: file {path} not found; if it is DVC-tracked, run `dvc pull`, "
            "otherwise put the file there or point data.source in params.yaml at it"
        )
    try:
        frame = pd.read_csv(path) if kind == "csv" else pd.read_parquet(path)
    except pd.errors.EmptyDataError:
        raise ReprobookError(
            f"{path}: the file is empty; expected a header row and data rows; "
            "export the data again or point data.source in params.yaml at another file"
        ) from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError, OSError) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ReprobookError(f"{path}: not a readable {kind.upper()} file ({detail}); {_format_hint(kind, location)}") from None
    if frame.empty:
        raise ReprobookError(
            f"{path}: no data rows; expected at least one; point data.source in params.yaml at the full data file"
        )
    if kind == "csv":
        check_csv_header(path)
    return frame


def check_csv_header(path: Path) -> None:
    """pandas renames a repeated column ``x`` to ``x.1``: a copy of the target would become a feature."""
    import csv
    from collections import Counter

    with path.open(newline="", encoding="utf-8", errors="replace") as handle:
        header = next(csv.reader(handle), [])
    repeated = sorted(name for name, count in Counter(h.strip() for h in header).items() if count > 1)
    if repeated:
        listed = ", ".join(f"'{name}'" for name in repeated)
        raise ReprobookError(
            f"{path}: the header repeats column {listed}; expected each name once "
            "(pandas would rename the copy, and a copy of the target would become a feature that leaks it); "
            "rename or remove the repeated column"
        )


def _format_hint(kind: str, location: str) -> str:
    """What the source prefix expects of the file, and the other prefix for a file of the other kind."""
    if kind == "csv":
        return (
            "expected UTF-8 comma-separated text with a header row; "
            f"for a Parquet file set data.source: parquet:{location} in params.yaml"
        )
    return f"expected an Apache Parquet file; for a CSV file set data.source: csv:{location} in params.yaml"


# ---------------------------------------------------------------- saved schema


def infer_schema_command(source: str, schema_file: str, target: str) -> str:
    """The command that (re)writes ``schema_file`` from the file of a csv:/parquet: source.

    A generated source (builtin:, sklearn:) has no file, so the data path is the placeholder ``DATA``.
    """
    kind, _, location = source.partition(":")
    data = shlex.quote(location) if kind in ("csv", "parquet") else "DATA"
    return f"reprobook infer-schema {data} -o {shlex.quote(schema_file)} --label {shlex.quote(target)}"


def _regenerate_schema_steps(dataset: Dataset, params: DataParams) -> list[str]:
    """How to replace an out-of-date ``data.schema_file``: from the file, or from what the data stage inferred."""
    schema_file = str(params.schema_file)
    copy = f"cp {INFERRED_SCHEMA} {shlex.quote(schema_file)}"
    if source_file(dataset.source, Path(".")) is None:
        return [f"    {copy}    (the schema the data stage inferred from {dataset.source})"]
    steps = [f"    {infer_schema_command(dataset.source, schema_file, dataset.target)}"]
    steps.append(f"  or take the schema the data stage inferred from the data as loaded: {copy}")
    return steps


def schema_mismatch_error(report: ValidationReport, dataset: Dataset, params: DataParams) -> ReprobookError:
    """The error the data stage raises when the data violates ``data.schema_file``.

    New data and an old schema disagree because the data is wrong (fix the
    data) or the schema is out of date (regenerate it and review it); the
    message keeps every anomaly and offers both ways out, and how to skip
    validation while deciding.
    """
    schema_file = params.schema_file
    n_errors = len(report.errors)
    lines = [
        f"data.schema_file: the data of {dataset.source} violates the schema {schema_file}: "
        f"{n_errors} error-severity anomal{'y' if n_errors == 1 else 'ies'}; expected none",
        report.to_text(),
        f"full report: {VALIDATION_REPORT}",
        "next step: if the data is wrong, fix it and run again; if the data is right and the schema "
        f"{schema_file} out of date, regenerate it and review it (it is the contract later data is held to):",
        *_regenerate_schema_steps(dataset, params),
        "  or set data.schema_file: null in params.yaml to skip validation",
    ]
    return ReprobookError("\n".join(lines))


def load_saved_schema(dataset: Dataset, params: DataParams, root: Path) -> Schema:
    """The schema of ``data.schema_file`` without the columns the data stage drops; an absent file says how to
    create it or skip validation.

    Dropped columns (``data.drop_columns``, role ``ignored``) are removed
    before validation, so they are not "expected, not found": dropping a
    column is one edit, whether or not the schema still lists it.
    """
    from reprobook.quality import Schema

    path = root / str(params.schema_file)
    if not path.is_file():
        steps = "\n".join(_regenerate_schema_steps(dataset, params))
        raise ReprobookError(
            f"data.schema_file: schema file {path} not found; expected a schema (YAML) there; "
            f"create it and review it:\n{steps}\n  or set data.schema_file: null in params.yaml to skip validation"
        )
    schema = Schema.from_yaml(path)
    kept = {name: column for name, column in schema.columns.items() if name not in dataset.dropped}
    return schema.model_copy(update={"columns": kept})


# ---------------------------------------------------------------- task


def infer_task(target: pd.Series, requested: str) -> tuple[str, str]:
    """Return (task, reason). Classification needs at least two classes."""
    n_unique = target.nunique(dropna=True)
    if requested == "auto":
        numeric_float = pd.api.types.is_float_dtype(target) and not (target.dropna() % 1 == 0).all()
        if numeric_float or (pd.api.types.is_numeric_dtype(target) and n_unique > MAX_CLASSES):
            task, reason = "regression", f"inferred: target '{target.name}' is numeric with {n_unique} distinct values"
        else:
            task, reason = "classification", f"inferred: target '{target.name}' has {n_unique} classes"
    else:
        task, reason = requested, "set by scoping.task"
    if task == "classification":
        if n_unique < 2:
            only = target.dropna().unique()[:1].tolist()
            raise ReprobookError(
                f"data.target: column '{target.name}' has a single class {only}; classification needs at least two; "
                "check that data.target in params.yaml names the label column"
            )
        if n_unique > MAX_CLASSES:
            raise ReprobookError(
                f"data.target: column '{target.name}' has {n_unique} classes (more than {MAX_CLASSES}); "
                "set scoping.task: regression if it is a quantity"
            )
    return task, reason
