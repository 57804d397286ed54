"""Data quality: statistics, schema, validation and drift (like TFDV, calibrated, fast).

The public API lives here; each submodule has one job:
statistics (per-column summaries, streamed or in memory), schema (inference and
the editable YAML file), validation (anomalies against a schema), drift
(two-sample tests and distances with multiple-testing control).
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

# Names are imported on first use (PEP 562): params validation needs only the
# config models, and loading the test statistics (scipy.stats) would add about
# 1.5 s to every `reprobook stage` start.
_EXPORTS = {
    "detect_drift": "drift",
    "DriftConfig": "drift_config",
    "ColumnDrift": "drift_report",
    "DriftReport": "drift_report",
    "ANOMALY_KINDS": "policy",
    "ValidationPolicy": "policy",
    "ColumnSchema": "schema",
    "Schema": "schema",
    "infer_schema": "schema",
    "ColumnStatistics": "statistics",
    "DatasetStatistics": "statistics",
    "compute_statistics": "statistics",
    "statistics_from_file": "streaming",
    "Anomaly": "validation",
    "ValidationReport": "validation",
    "validate": "validation",
}


if TYPE_CHECKING:  # the same names, visible to type checkers and to the stages' code fingerprints
    from .drift import detect_drift
    from .drift_config import DriftConfig
    from .drift_report import ColumnDrift, DriftReport
    from .policy import ANOMALY_KINDS, ValidationPolicy
    from .schema import ColumnSchema, Schema, infer_schema
    from .statistics import ColumnStatistics, DatasetStatistics, compute_statistics
    from .streaming import statistics_from_file
    from .validation import Anomaly, ValidationReport, validate


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


__all__ = [
    "ANOMALY_KINDS",
    "Anomaly",
    "ColumnDrift",
    "ColumnSchema",
    "ColumnStatistics",
    "DatasetStatistics",
    "DriftConfig",
    "DriftReport",
    "Schema",
    "ValidationPolicy",
    "ValidationReport",
    "compute_statistics",
    "detect_drift",
    "infer_schema",
    "statistics_from_file",
    "validate",
]
