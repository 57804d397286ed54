"""Mergeable moments: count, mean and sum of squared deviations (Chan et al.).

Merging the moments of two chunks gives the moments of their union without
revisiting the data, so mean and standard deviation of a file streamed in
chunks equal the in-memory figures up to floating-point rounding (about 1e-12
relative), not up to an approximation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Moments:
    """Count, mean and M2 (sum of squared deviations from the mean) of finite values."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0

    @classmethod
    def of(cls, values: np.ndarray) -> "Moments":
        """Moments of an array of finite values (two-pass within the array for accuracy)."""
        if values.size == 0:
            return cls()
        mean = float(values.mean())
        deviations = values - mean
        return cls(int(values.size), mean, float(np.dot(deviations, deviations)))

    def merge(self, other: "Moments") -> "Moments":
        """Chan's parallel update: the moments of the union of both samples."""
        if other.n == 0:
            return self
        if self.n == 0:
            return other
        n = self.n + other.n
        delta = other.mean - self.mean
        mean = self.mean + delta * other.n / n
        m2 = self.m2 + other.m2 + delta * delta * self.n * other.n / n
        return Moments(n, mean, m2)

    @property
    def std(self) -> float | None:
        """Sample standard deviation (ddof=1, as pandas); None below two values."""
        if self.n < 2:
            return None
        return float(np.sqrt(self.m2 / (self.n - 1)))
