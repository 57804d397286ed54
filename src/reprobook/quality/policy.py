"""Which anomalies are errors, which are warnings, which are ignored (params.yaml: data.validation)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Severity = Literal["error", "warning", "ignore"]

ANOMALY_KINDS: tuple[str, ...] = (
    "empty_dataset",
    "missing_column",
    "unexpected_column",
    "type_mismatch",
    "out_of_range",
    "unexpected_category",
    "presence_below_minimum",
    "non_finite",
    "duplicate_rows",
)


class ValidationPolicy(BaseModel):
    """Severity per anomaly kind. Errors fail validation (exit 1); warnings are reported only."""

    model_config = ConfigDict(extra="forbid")

    empty_dataset: Severity = Field("error", description="the data set has no rows")
    missing_column: Severity = Field("error", description="a column the schema expects in this environment is absent")
    unexpected_column: Severity = Field(
        "warning", description="a column not in the schema, or present where the schema does not expect it"
    )
    type_mismatch: Severity = Field(
        "error", description="values of the wrong type: text in a numeric column, fractions in an integer column"
    )
    out_of_range: Severity = Field("warning", description="numbers outside the schema's range")
    unexpected_category: Severity = Field("warning", description="categories outside the schema's domain")
    presence_below_minimum: Severity = Field(
        "error", description="fewer rows have a value than the schema's min_presence"
    )
    non_finite: Severity = Field("error", description="infinity (or NaN distinct from missing) in a numeric column")
    duplicate_rows: Severity = Field("warning", description="rows identical to an earlier row")
    max_examples: int = Field(5, ge=0, le=100, description="example values listed per anomaly")

    def severity(self, kind: str) -> Severity:
        """The configured severity of an anomaly kind."""
        return getattr(self, kind)
