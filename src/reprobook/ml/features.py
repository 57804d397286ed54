"""The feature columns of a project, read from the test split's schema alone.

The registry binds a model name to its feature columns, and the runner checks
that binding *before* the modeling notebook runs. At that point there is no
model yet, and the outer process must stay light: so the columns come from
the parquet footer (no rows read, no pandas or scikit-learn loaded). They are
the columns ``modeling.xy`` gives the model: every column but the target, in
file order.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from reprobook.project.paths import TEST_FILE

if TYPE_CHECKING:
    import pandas as pd


def xy(frame: "pd.DataFrame", target: str) -> tuple["pd.DataFrame", "pd.Series"]:
    """Features (every column but the target, in file order) and the target."""
    return frame.drop(columns=[target]), frame[target]


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
    return [name for name in schema.names if name != target and name not in index]
