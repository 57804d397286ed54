"""The data schema: what a column must look like, as a YAML file a person can edit.

Per column: its type, the minimum fraction of rows that must have a value, the
numeric range, the categorical domain (only for small domains) and the
environments in which it must be present (a label is in TRAINING, not SERVING).
Inference is deliberately literal — the range is the observed range, the domain
the observed values — so editing the file is how a person widens it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from reprobook.errors import ReprobookError, UsageError
from reprobook.quality.kinds import (
    category_values,
    column_kind,
    is_numeric,
    numeric_values,
)

DEFAULT_ENVIRONMENTS = ["TRAINING", "SERVING"]
HEADER = """\
# reprobook data schema. Edit freely; `reprobook validate DATA --schema THIS_FILE` checks data against it.
# Per column:
#   type          integer | float | boolean | string
#   min_presence  minimum fraction of rows with a value (1.0 = never missing)
#   range         allowed numeric interval {min, max}; either end may be omitted
#   domain        allowed values of a categorical column; omit to allow any value
#   environments  where the column must be present; omit for all (a label: [TRAINING])
"""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Range(_Strict):
    """Closed numeric interval; None leaves that side open."""

    min: int | float | None = None
    max: int | float | None = None

    @model_validator(mode="after")
    def _ordered(self) -> "Range":
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self


class ColumnSchema(_Strict):
    """What one column must look like."""

    type: Literal["integer", "float", "boolean", "string"]
    min_presence: float = Field(1.0, ge=0.0, le=1.0)
    range: Range | None = None
    domain: list[str] | None = None
    environments: list[str] | None = None

    def expected_in(self, environment: str) -> bool:
        """Whether the column must be present in ``environment``."""
        return self.environments is None or environment in self.environments


class Schema(_Strict):
    """Columns in data-set order, and the environments the schema knows."""

    version: Literal[1] = 1
    environments: list[str] = Field(default_factory=lambda: list(DEFAULT_ENVIRONMENTS))
    columns: dict[str, ColumnSchema] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known_environments(self) -> "Schema":
        for name, column in self.columns.items():
            unknown = sorted(set(column.environments or []) - set(self.environments))
            if unknown:
                raise ValueError(f"column {name!r} names unknown environment(s) {unknown}; known: {self.environments}")
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain dict with the file's layout (defaults and empty fields left out)."""
        columns = {name: column.model_dump(exclude_none=True) for name, column in self.columns.items()}
        return {"version": self.version, "environments": list(self.environments), "columns": columns}

    def to_yaml(self, path: str | Path) -> Path:
        """Write the schema as commented YAML; returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        text = yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None, allow_unicode=True, width=100)
        path.write_text(HEADER + text, encoding="utf-8")
        return path

    @classmethod
    def from_yaml(cls, path: str | Path) -> "Schema":
        """Read a schema file; a malformed one raises ReprobookError naming the file and the bad key."""
        path = Path(path)
        if not path.is_file():
            raise UsageError(f"{path}: schema file not found")
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ReprobookError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from None
        if not isinstance(raw, dict):
            raise ReprobookError(f"{path}: expected a mapping with a 'columns' key, found {type(raw).__name__}")
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            raise ReprobookError(f"{path}: {_describe(exc)}") from None


def _describe(exc: ValidationError) -> str:
    """The first problem of a pydantic error as 'dotted.key: what is wrong; found X'."""
    error = exc.errors()[0]
    key = ".".join(str(part) for part in error["loc"]) or "(top level)"
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        return f"{key}: unknown key"
    if error["type"] == "missing":
        return f"{key}: required key is missing"
    return f"{key}: {message}; found {error.get('input')!r}"


def _min_presence(present_fraction: float, margin: float) -> float:
    """1.0 for a complete column, else the observed fraction minus ``margin``, rounded down to 0.01."""
    if present_fraction >= 1.0:
        return 1.0
    return max(0.0, math.floor((present_fraction - margin) * 100) / 100)


def _number(value: float, integer: bool) -> int | float:
    return int(value) if integer else float(value)


def infer_column(series: pd.Series, *, max_domain_size: int = 50, presence_margin: float = 0.05) -> ColumnSchema:
    """The schema of one column as observed."""
    kind = column_kind(series)
    n = len(series)
    present = n - int(series.isna().sum())
    column = ColumnSchema(type=kind, min_presence=_min_presence(present / n if n else 1.0, presence_margin))
    if is_numeric(kind):
        values = numeric_values(series)
        finite = values[np.isfinite(values)]
        if finite.size:
            integer = kind == "integer"
            column.range = Range(min=_number(finite.min(), integer), max=_number(finite.max(), integer))
    elif kind == "string":
        values = category_values(series).dropna().unique()
        if len(values) <= max_domain_size:
            column.domain = sorted(str(v) for v in values)
    return column


def infer_schema(
    df: pd.DataFrame,
    *,
    label: str | None = None,
    max_domain_size: int = 50,
    presence_margin: float = 0.05,
) -> Schema:
    """A schema describing ``df``; the ``label`` column is expected in TRAINING only."""
    if label is not None and label not in df.columns:
        raise ReprobookError(f"label column {label!r} is not in the data; columns are {list(map(str, df.columns))}")
    columns = {
        str(name): infer_column(df[name], max_domain_size=max_domain_size, presence_margin=presence_margin)
        for name in df.columns
    }
    if label is not None:
        columns[str(label)].environments = ["TRAINING"]
    return Schema(columns=columns)
