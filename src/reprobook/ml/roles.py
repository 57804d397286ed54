"""Column roles: what each column of a table is, inferred from the data with the reason said.

A data scientist looks at a new table and sees, before anything else, which
columns are row ids, which are dates, which are free text and which are the
features. reprobook does the same: :func:`infer_roles` gives each column one
role of :data:`reprobook.project.params.ROLES` and the reason (unique per row,
a sequence, UUID-like, parses as dates, long free text, constant, empty ...).
``reprobook new`` writes them into ``params.yaml`` (``data.columns``, one line
per column, the reason as a comment); the data stage resolves them
(:func:`resolve`: declared roles win, an undeclared column is inferred and
said), drops ``ignored`` columns and records the roles in the split files, so
every later stage knows which columns are features (:data:`FEATURE_ROLES`).

An ``id`` is never a feature: it stays in the splits for joins, captures and
monitoring. ``text`` is a feature only when ``model.text_encoder`` asks for it.

Inference reads at most :data:`SAMPLE_ROWS` rows for the expensive checks
(date parsing, text length), seeded, so it takes well under a second on a
million rows and gives the same answer every time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

FEATURE_ROLES = ("numeric", "categorical", "boolean", "datetime")
"""Roles that are model features; ``text`` joins them with ``model.text_encoder``."""
KEPT_ROLES = ("id", "text")
"""Roles kept in the splits without being features (joins, captures, monitoring, the opt-in text encoder)."""
SAMPLE_ROWS = 20_000
UUID = re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$")
DATE_LIKE = re.compile(r"^\s*(\d{4}[-/.]\d{1,2}([-/.]\d{1,2})?|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4})([ T]\d{1,2}:\d{2}.*)?\s*$")
ID_NAME = re.compile(r"(^|[_\s.-])(id|uuid|guid|key|idx|row_?num(ber)?|rownum|record)$|^(unnamed: ?\d+|id_.*|index|id)$",
                     re.IGNORECASE)
CAMEL_ID = re.compile(r"[a-z](Id|ID|Key)$")
"""``customerId``, ``orderID``: an id by its name (case matters, so ``paid`` and ``valid`` are not)."""
TIME_NAME = re.compile(r"(date|time|_at$|^at_|timestamp|epoch|_ts$|^ts$|created|updated|day|month|year_month)", re.IGNORECASE)
EPOCH_SECONDS = (pd.Timestamp("2000-01-01").timestamp(), pd.Timestamp("2040-01-01").timestamp())
"""Integers in this range are read as epoch seconds (and x1000 as milliseconds) when the name says time."""
TEXT_WORDS = 5
"""A string column whose values have at least this many words on average is free text."""
TEXT_LENGTH = 40
PARSE_SHARE = 0.95
"""Share of the present values that must parse as dates for a string column to be a datetime."""
REPEATED_ID_SHARE = 0.9
"""An id-named column with fewer distinct values than this share of rows is an entity key (a group)."""
BOOLEAN_WORDS = {frozenset(pair) for pair in (("true", "false"), ("yes", "no"), ("y", "n"), ("t", "f"))}


@dataclass(frozen=True)
class Inferred:
    role: str
    reason: str


def infer_roles(frame: pd.DataFrame, target: str | None) -> dict[str, Inferred]:
    """Every column's role and why, in column order."""
    sample = frame if len(frame) <= SAMPLE_ROWS else frame.sample(SAMPLE_ROWS, random_state=0).sort_index()
    return {str(name): infer_role(frame[name], sample[name], target) for name in frame.columns}


def infer_role(column: pd.Series, sample: pd.Series | None = None, target: str | None = None) -> Inferred:
    """The role of one column (``sample``: a seeded subset for the costly checks, default the column)."""
    name = str(column.name)
    if target is not None and name == target:
        return Inferred("target", "the label (data.target)")
    sample = column if sample is None else sample
    present = column.dropna()
    n, n_present = len(column), len(present)
    if n_present == 0:
        return Inferred("ignored", "empty: no value in any row")
    distinct = int(present.nunique())
    if distinct == 1:
        return Inferred("ignored", f"constant: every value is {str(present.iloc[0])!r}")
    if pd.api.types.is_bool_dtype(column):
        return Inferred("boolean", "true/false values")
    if pd.api.types.is_datetime64_any_dtype(column):
        return Inferred("datetime", "a datetime column")
    if pd.api.types.is_numeric_dtype(column):
        return _numeric_role(name, present, n, distinct)
    return _string_role(name, present.astype(str), sample.dropna().astype(str), n, distinct)


def _numeric_role(name: str, present: pd.Series, n: int, distinct: int) -> Inferred:
    values = present.to_numpy(dtype="float64")
    integral = bool(np.all(values == np.round(values)))
    if distinct == 2 and set(np.unique(values)) <= {0.0, 1.0}:
        return Inferred("boolean", "two values, 0 and 1")
    if integral and (TIME_NAME.search(name) or values.max() - values.min() >= 86_400):
        unit = _epoch_unit(values)
        if unit:
            low, high = (pd.to_datetime(v, unit=unit) for v in (values.min(), values.max()))
            return Inferred("datetime", f"integers that read as epoch {'seconds' if unit == 's' else 'milliseconds'} "
                                        f"({low:%Y-%m-%d} to {high:%Y-%m-%d})")
    unique_per_row = distinct == len(present) == n
    if integral and unique_per_row and n >= 20 and values.max() - values.min() == n - 1:
        return Inferred("id", f"a sequence: the integers {values.min():.0f} to {values.max():.0f}, one per row")
    if integral and _id_named(name):
        if unique_per_row:
            return Inferred("id", "unique per row, named as an id")
        if distinct < REPEATED_ID_SHARE * n:
            return Inferred("id", f"an identifier repeated across rows: {distinct} values, about {n / distinct:.1f} rows each")
    if integral and unique_per_row and n >= 1000:
        return Inferred("id", f"whole numbers, unique per row ({n} rows)")
    return Inferred("numeric", f"numbers, {distinct} distinct values")


def _id_named(name: str) -> bool:
    return bool(ID_NAME.search(name) or CAMEL_ID.search(name))


def _epoch_unit(values: np.ndarray) -> str | None:
    low, high = EPOCH_SECONDS
    if low <= values.min() and values.max() <= high:
        return "s"
    if low * 1000 <= values.min() and values.max() <= high * 1000:
        return "ms"
    return None


def _string_role(name: str, present: pd.Series, sample: pd.Series, n: int, distinct: int) -> Inferred:
    lowered = set(present.str.strip().str.lower().unique()[:3])
    if distinct == 2 and frozenset(lowered) in BOOLEAN_WORDS:
        return Inferred("boolean", f"two values, {' and '.join(sorted(lowered))}")
    if sample.str.fullmatch(UUID).mean() >= PARSE_SHARE:
        return Inferred("id", "UUID-like strings")
    parsed = _parse_share(sample)
    if parsed >= PARSE_SHARE:
        return Inferred("datetime", f"strings that parse as dates ({parsed:.0%} of values, e.g. {sample.iloc[0]!r})")
    words = sample.str.split().str.len().mean()
    length = sample.str.len().mean()
    unique_per_row = distinct == len(present) == n
    if words >= TEXT_WORDS or length >= TEXT_LENGTH:
        return Inferred("text", f"free text: {words:.1f} words per value on average")
    if _id_named(name):
        if unique_per_row:
            return Inferred("id", "unique per row, named as an id")
        if distinct < REPEATED_ID_SHARE * n:
            return Inferred("id", f"an identifier repeated across rows: {distinct} values, about {n / distinct:.1f} rows each")
    if unique_per_row and n >= 20:
        if words >= 2:
            return Inferred("text", f"a different string in every row, of {words:.1f} words (names, descriptions)")
        return Inferred("id", "unique per row: a different string in every row")
    if distinct > 0.5 * n and words >= 2:
        return Inferred("text", f"{distinct} distinct strings in {n} rows, {words:.1f} words each")
    return Inferred("categorical", f"{distinct} categories")


def _parse_share(sample: pd.Series) -> float:
    """Share of values that look like dates and parse as dates (ISO 8601 first: fast, then any format)."""
    head = sample.head(2000)
    if head.empty or head.str.match(DATE_LIKE).mean() < PARSE_SHARE:
        return 0.0
    for fmt in ("ISO8601", "mixed"):
        try:
            parsed = pd.to_datetime(head, format=fmt, errors="coerce", utc=True)
        except (ValueError, TypeError, OverflowError):
            continue
        share = float(parsed.notna().mean())
        if share >= PARSE_SHARE:
            return share
    return 0.0


def resolve(frame: pd.DataFrame, target: str, declared: dict[str, str], drop: list[str] = ()) -> tuple[dict[str, str], list[str]]:
    """The role of every column of ``frame``: declared ones as declared, the rest inferred.

    Returns the roles and one line per column that had no declared role (what
    was inferred and why), so a project whose data gained a column is told so.
    ``drop`` (``data.drop_columns``) are ignored whatever is declared. The
    target is the target whatever ``declared`` says.
    """
    roles: dict[str, str] = {}
    notes: list[str] = []
    undeclared = [str(c) for c in frame.columns if str(c) not in declared and str(c) not in drop and str(c) != target]
    inferred = infer_roles(frame[undeclared], None) if undeclared else {}
    for name in map(str, frame.columns):
        if name == target:
            roles[name] = "target"
        elif name in drop:
            roles[name] = "ignored"
        elif name in declared:
            roles[name] = declared[name]
        else:
            roles[name] = inferred[name].role
            notes.append(f"column '{name}' has no role in data.columns (params.yaml); inferred {inferred[name].role}: "
                         f"{inferred[name].reason}")
    return roles, notes


def features(roles: dict[str, str], *, text: bool = False) -> list[str]:
    """The feature columns, in column order: numeric, categorical, boolean, datetime (and text when asked)."""
    wanted = FEATURE_ROLES + (("text",) if text else ())
    return [name for name, role in roles.items() if role in wanted]


def table(inferred: dict[str, Inferred]) -> str:
    """The roles as a short aligned table, one column a line, for ``reprobook new`` and the data report."""
    width = max((len(name) for name in inferred), default=6)
    lines = [f"  {'column':<{width}}  {'role':<11}  why"]
    lines += [f"  {name:<{width}}  {item.role:<11}  {item.reason}" for name, item in inferred.items()]
    return "\n".join(lines)


def role_table(roles: dict[str, str]) -> pd.DataFrame:
    """The roles as a table for the data report: each column, its role, whether the model reads it."""
    rows = [{"column": name, "role": role, "feature": role in FEATURE_ROLES or (role == "text" and "model.text_encoder")}
            for name, role in roles.items()]
    table_ = pd.DataFrame(rows, columns=["column", "role", "feature"])
    table_["feature"] = table_["feature"].map(lambda v: "only with model.text_encoder" if isinstance(v, str) else ("yes" if v else "no"))
    return table_.set_index("column")
