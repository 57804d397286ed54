"""Data quality: statistics, schema, validation and drift (like TFDV, calibrated, fast).

The public API lives here; each submodule has one job:
statistics (per-column summaries, streamed or in memory), schema (inference and
the editable YAML file), validation (anomalies against a schema), drift
(two-sample tests and distances with multiple-testing control).
"""

from reprobook.quality.drift import detect_drift
from reprobook.quality.drift_config import DriftConfig
from reprobook.quality.drift_report import ColumnDrift, DriftReport
from reprobook.quality.policy import ANOMALY_KINDS, ValidationPolicy
from reprobook.quality.schema import ColumnSchema, Schema, infer_schema
from reprobook.quality.statistics import ColumnStatistics, DatasetStatistics, compute_statistics
from reprobook.quality.streaming import statistics_from_file
from reprobook.quality.validation import Anomaly, ValidationReport, validate

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
