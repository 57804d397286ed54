"""The feature columns of a project: the columns whose role makes them model inputs.

The data stage records every column's role (:mod:`reprobook.ml.roles`) in
the split files' parquet metadata (:data:`ROLES_KEY`), so the splits carry
their own reading: an ``id`` column stays in them for joins and monitoring but
is never a feature, and ``text`` is one only with ``model.text_encoder``.
:func:`xy` gives the model exactly those columns. :func:`feature_columns`
reads them from the parquet footer alone (no rows, no pandas or
scikit-learn), for checks that run before the modeling notebook.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reprobook.project.paths import TEST_FILE

if TYPE_CHECKING:
    import pandas as pd

ROLES_KEY = b"reprobook.roles"
"""Parquet schema metadata of the split files: JSON of the column roles and the split that made them."""
ROLES_ATTR = "reprobook.roles"
"""``DataFrame.attrs`` key under which :func:`reprobook.ml.prep.read_split` hands the roles on."""
INPUT_ROLES = ("numeric", "categorical", "boolean", "datetime")


def input_columns(columns: list[str], target: str, roles: dict[str, str] | None, *, text: bool = False) -> list[str]:
    """The model's input columns in file order: by role when roles are known, else every column but the target."""
    if not roles:
        return [c for c in columns if c != target]
    wanted = INPUT_ROLES + (("text",) if text else ())
    return [c for c in columns if c != target and roles.get(c, "numeric") in wanted]


def xy(frame: "pd.DataFrame", target: str, roles: dict[str, str] | None = None, *,
       text: bool = False) -> tuple["pd.DataFrame", "pd.Series"]:
    """Features (the input columns by role, in file order) and the target.

    ``roles`` default to those the split file recorded (``frame.attrs``); a
    frame without any (a user's own) takes every column but the target.
    """
    roles = roles if roles is not None else frame.attrs.get(ROLES_ATTR, {}).get("roles")
    columns = input_columns([str(c) for c in frame.columns], target, roles, text=text)
    x = frame[columns].copy()
    x.attrs = {}
    return x, frame[target]


def model_inputs(model: Any, frame: "pd.DataFrame") -> "pd.DataFrame":
    """The columns of ``frame`` a fitted model reads (its ``feature_names_in_``), in its order."""
    names = getattr(model, "feature_names_in_", None)
    return frame if names is None else frame[[str(c) for c in names]]


def split_metadata(path: Path) -> dict[str, Any]:
    """The roles and split recorded in a split file's footer ({} for a file written without them)."""
    import pyarrow.parquet as pq

    metadata = pq.read_schema(path).metadata or {}
    raw = metadata.get(ROLES_KEY)
    return json.loads(raw) if raw else {}


def feature_columns(root: Path, target: str) -> list[str] | None:
    """Feature column names in order, or None when the data stage has not written the split yet."""
    path = root / TEST_FILE
    if not path.is_file():
        return None
    import pyarrow.parquet as pq

    schema = pq.read_schema(path)
    # A pandas index written as a column is not a feature (write_split writes none, but a user's file may).
    metadata = schema.pandas_metadata or {}
    index = {c for c in metadata.get("index_columns", []) if isinstance(c, str)}
    recorded = split_metadata(path)
    names = [name for name in schema.names if name not in index]
    return input_columns(names, target, recorded.get("roles"), text=bool(recorded.get("text")))
