"""The design matrix's size, from the column roles and their level counts: known before any fit.

One rule, used twice: by the modeling stage on the training split
(:func:`reprobook.ml.estimators.build_pipeline`), and by ``reprobook run``'s
preflight on the raw file (:mod:`reprobook.project.preflight`), so a
configuration that cannot fit in memory is refused before DVC deletes any
output. Free of pandas and scikit-learn: the preflight stays light.
"""

from __future__ import annotations

import os

from reprobook.errors import ReprobookError

DATETIME_PARTS = ("elapsed_days", "year", "month", "day", "weekday", "hour")
TEXT_COMPONENTS = 32
BYTES_PER_VALUE = 8
PEAK_COPIES = 3
"""The design matrix exists about three times at the peak of a fit: the blocks, their stack, the estimator's copy."""


def encoder(role: str, levels: int, onehot_max_levels: int, text: bool) -> str | None:
    """The encoder a feature of ``role`` with ``levels`` distinct values (missing counted) gets, or None."""
    if role == "numeric":
        return "numeric"
    if role in ("categorical", "boolean"):
        return "onehot" if levels <= onehot_max_levels else "target"
    if role == "datetime":
        return "datetime"
    if role == "text" and text:
        return "text"
    return None


def width(kind: str | None, levels: int, onehot_max_levels: int, n_classes: int) -> int:
    """Design-matrix columns of one feature (an upper bound: one-hot keeps at most its cap)."""
    return {
        None: 0,
        "numeric": 1,
        "onehot": min(levels, onehot_max_levels),
        "target": n_classes if n_classes > 2 else 1,
        "datetime": len(DATETIME_PARTS),
        "text": TEXT_COMPONENTS,
    }[kind]


def memory_limit_mb(configured: int | None) -> int:
    """``model.max_memory_mb``, or a quarter of this machine's physical memory."""
    if configured is not None:
        return configured
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 8 * 1024**3
    return max(256, int(total / 4 / 1024**2))


def check_memory(rows: int, widths: dict[str, int], limit_mb: int) -> float:
    """The estimated peak size (MB) of fitting on ``rows`` rows; refuse, naming the widest columns, past the limit."""
    total = sum(widths.values())
    needed = rows * total * BYTES_PER_VALUE * PEAK_COPIES / 1024**2
    if needed > limit_mb:
        widest = sorted(widths.items(), key=lambda item: -item[1])[:3]
        named = ", ".join(f"'{name}' {cols} columns" for name, cols in widest)
        raise ReprobookError(
            f"model.max_memory_mb: fitting on {rows} rows x {total} encoded columns needs about {needed:,.0f} MB, "
            f"expected at most {limit_mb:,} MB; widest: {named}. Lower model.onehot_max_levels, set those columns' "
            "role to ignored in data.columns (params.yaml), or raise model.max_memory_mb"
        )
    return needed
