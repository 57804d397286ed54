"""Where stages read and write their files, relative to the project root.

Kept free of heavy imports: the outer `reprobook stage` process needs these
paths (for the run record) without loading pandas or scikit-learn.
"""

from __future__ import annotations

from pathlib import Path

TARGETS_FILE = "reports/scoping/outputs/targets.json"
TRAIN_FILE = "data/processed/train.parquet"
TEST_FILE = "data/processed/test.parquet"
MODEL_FILE = "models/model.joblib"
PREDICTIONS_FILE = "reports/modeling/outputs/predictions.csv"


def source_file(source: str, root: Path) -> Path | None:
    """The file a csv:/parquet: source reads (a DVC dependency), else None."""
    kind, _, location = source.partition(":")
    if kind in ("csv", "parquet"):
        path = Path(location)
        return path if path.is_absolute() else root / path
    return None
