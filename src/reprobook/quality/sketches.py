"""Mergeable sketches for statistics of data streamed in chunks.

* :class:`QuantileSketch` — a deterministic compactor sketch (in the family of
  Manku-Rajagopalan-Lindsay and KLL). It is exact while it holds every value;
  after compaction its rank error is at most ``2 * levels / capacity`` of the
  count (about 0.15% for 10 million values with the default capacity), and in
  practice far smaller because compactions alternate their offsets.
* :class:`DistinctSketch` — k-minimum-values on 64-bit hashes: exact while the
  number of distinct values is below ``k``; above it an estimate with a relative
  standard error of about ``1/sqrt(k)`` (0.4% with the default).

Both are deterministic: the same chunks in the same order give the same result.
Both merge (``merge``): the sketch of two data sets' union from their sketches,
with the same guarantees, which is what lets partitions be summarised on
different machines (:mod:`reprobook.quality.summary`). Their state is a few
plain arrays (``state`` / ``from_state``), saved without pickle.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

QUANTILE_CAPACITY = 16_384
DISTINCT_K = 65_536


def quantiles_of_sorted(sorted_values: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """Quantiles of a sorted array with linear interpolation (numpy's default method)."""
    n = sorted_values.size
    position = probabilities * (n - 1)
    low = np.floor(position).astype(np.int64)
    high = np.minimum(low + 1, n - 1)
    fraction = position - low
    a, b = sorted_values[low], sorted_values[high]
    diff = b - a
    return np.where(fraction >= 0.5, b - diff * (1 - fraction), a + diff * fraction)


class QuantileSketch:
    """Sorted levels of values; a value at level h stands for 2**h values."""

    def __init__(self, capacity: int = QUANTILE_CAPACITY) -> None:
        self.capacity = capacity
        self.levels: list[np.ndarray] = []
        self._offsets: list[int] = []
        self.count = 0

    @property
    def exact(self) -> bool:
        """True while no compaction happened: quantiles are then exact."""
        return len(self.levels) <= 1

    @property
    def rank_error(self) -> float:
        """Bound on the rank error as a fraction of the count: 0 while exact, else ``2 * levels / capacity``.

        A compaction at level h moves at most 2**h of weight past any value
        and consumes more than ``capacity`` values of weight 2**h, so each
        level adds less than count/capacity of rank error, merges included;
        the factor 2 also covers reading a quantile off a weighted value.
        """
        return 0.0 if self.exact else 2.0 * len(self.levels) / self.capacity

    def merge(self, other: "QuantileSketch") -> None:
        """Add another sketch's values (level by level, then compact): the sketch of the union."""
        if other.capacity != self.capacity:
            raise ValueError(f"cannot merge quantile sketches of capacity {self.capacity} and {other.capacity}")
        if other.count == 0:
            return
        self.count += other.count
        for level, values in enumerate(other.levels):
            if values.size:
                self._push(level, values)
        self._compact()

    def weighted(self) -> tuple[np.ndarray, np.ndarray]:
        """The sketch's values in order and the cumulative weight up to each (the last equals ``count``)."""
        if self.count == 0:
            return np.empty(0), np.empty(0)
        values = np.concatenate(self.levels)
        weights = np.concatenate([np.full(v.size, 2.0**h) for h, v in enumerate(self.levels)])
        order = np.argsort(values, kind="stable")
        return values[order], np.cumsum(weights[order])

    def cdf(self, x: np.ndarray) -> np.ndarray:
        """Share of values <= x, within ``rank_error`` of the exact share."""
        values, cumulative = self.weighted()
        if values.size == 0:
            return np.zeros(np.shape(x))
        index = np.searchsorted(values, x, side="right")
        return np.where(index > 0, cumulative[np.maximum(index - 1, 0)], 0.0) / self.count

    def state(self) -> dict[str, np.ndarray]:
        """Plain arrays holding the whole state (for saving without pickle)."""
        sizes = np.array([v.size for v in self.levels], dtype=np.int64)
        values = np.concatenate(self.levels) if self.levels else np.empty(0)
        header = np.array([self.capacity, self.count], dtype=np.int64)
        return {"header": header, "sizes": sizes, "offsets": np.array(self._offsets, dtype=np.int64), "values": values}

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray]) -> "QuantileSketch":
        """The sketch :meth:`state` described."""
        capacity, count = (int(v) for v in state["header"])
        sketch = cls(capacity)
        sketch.count = count
        cuts = np.cumsum(state["sizes"])[:-1]
        if state["sizes"].size:
            sketch.levels = [np.asarray(v, dtype=np.float64) for v in np.split(state["values"], cuts)]
        sketch._offsets = [int(v) for v in state["offsets"]]
        return sketch

    def add(self, values: np.ndarray) -> None:
        """Add finite values (any order)."""
        if values.size == 0:
            return
        self.count += int(values.size)
        self._push(0, np.sort(values))
        self._compact()

    def _push(self, level: int, sorted_values: np.ndarray) -> None:
        while len(self.levels) <= level:
            self.levels.append(np.empty(0))
            self._offsets.append(0)
        current = self.levels[level]
        self.levels[level] = sorted_values if current.size == 0 else np.sort(np.concatenate([current, sorted_values]))

    def _compact(self) -> None:
        level = 0
        while level < len(self.levels):
            values = self.levels[level]
            if values.size > self.capacity:
                keep = values[-1:] if values.size % 2 else values[:0]
                pairs = values[: values.size - keep.size]
                offset = self._offsets[level]
                self._offsets[level] = 1 - offset
                self.levels[level] = keep
                self._push(level + 1, pairs[offset::2])
            level += 1

    def quantiles(self, probabilities: np.ndarray) -> np.ndarray:
        """Quantiles: exact (linear interpolation) before any compaction, else weighted ranks."""
        if self.count == 0:
            return np.full(probabilities.shape, np.nan)
        if self.exact:
            return quantiles_of_sorted(self.levels[0], probabilities)
        values, cumulative = self.weighted()
        ranks = probabilities * (cumulative[-1] - 1)
        return values[np.minimum(np.searchsorted(cumulative, ranks, side="right"), values.size - 1)]


class DistinctSketch:
    """The k smallest distinct 64-bit hashes seen (k-minimum-values)."""

    def __init__(self, k: int = DISTINCT_K) -> None:
        self.k = k
        self.hashes = np.empty(0, dtype=np.uint64)

    def add(self, values: np.ndarray) -> None:
        """Add non-missing values (numbers or text)."""
        if values.size == 0:
            return
        if values.dtype.kind == "f":
            values = values + 0.0  # -0.0 and 0.0 are one value
        hashed = pd.util.hash_array(values)
        if not self.exact:
            hashed = hashed[hashed < self.hashes[-1]]  # only hashes below the current k-th can enter
        merged = np.sort(np.concatenate([self.hashes, hashed]))  # a sort beats np.unique's hash table here
        keep = np.empty(merged.size, dtype=bool)
        keep[:1] = True
        np.not_equal(merged[1:], merged[:-1], out=keep[1:])
        self.hashes = merged[keep][: self.k]

    def merge(self, other: "DistinctSketch") -> None:
        """The k smallest of both sketches' hashes: the sketch of the union."""
        if other.k != self.k:
            raise ValueError(f"cannot merge distinct sketches of k={self.k} and k={other.k}")
        self.hashes = np.unique(np.concatenate([self.hashes, other.hashes]))[: self.k]

    @property
    def relative_error(self) -> float:
        """Relative standard error of :meth:`estimate`: 0 while exact, else 1/sqrt(k - 2) (KMV)."""
        return 0.0 if self.exact else 1.0 / np.sqrt(self.k - 2)

    @property
    def exact(self) -> bool:
        """True while fewer than k distinct values were seen."""
        return self.hashes.size < self.k

    def estimate(self) -> int:
        """Distinct count: exact below k, else the KMV estimate (k-1) / (k-th smallest hash fraction)."""
        if self.exact:
            return int(self.hashes.size)
        kth = float(self.hashes[-1]) / 2.0**64
        return int(round((self.k - 1) / kth))
