"""Every threshold of drift detection, in one validated model (params.yaml: data.drift)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class DriftConfig(BaseModel):
    """How reference and current data are compared, and when a column counts as drifted."""

    model_config = ConfigDict(extra="forbid")

    alpha: float = Field(
        0.05, gt=0, lt=1,
        description="significance level of the whole batch: with the default correction, a batch without drift "
        "is flagged with probability at most alpha, however many columns are tested",
    )
    correction: Literal["bonferroni", "bh", "none"] = Field(
        "bonferroni",
        description="multiple-testing correction across columns: bonferroni controls the family-wise error rate "
        "under any dependence; bh (Benjamini-Hochberg) controls the false discovery rate and, when nothing drifts, "
        "the same batch false-alarm rate (for independent or positively dependent tests), with more power when "
        "several columns drift; none tests each column at alpha (batch false alarms grow with the column count)",
    )
    decision: Literal["test", "effect", "both"] = Field(
        "test",
        description="when a column counts as drifted: test = its corrected p-value is below alpha; effect = an "
        "effect size exceeds its threshold; both = significant and large (ignores tiny but significant shifts "
        "in very large batches)",
    )
    quantile_bins: int = Field(
        10, ge=2, le=100,
        description="numeric columns: PSI, Jensen-Shannon and Hellinger use this many bins at the reference "
        "quantiles (tied edges are merged, so a discrete column may get fewer bins)",
    )
    psi_epsilon: float = Field(
        1e-4, gt=0, lt=0.01, description="floor on bin proportions in PSI, so an empty bin gives a finite value"
    )
    psi_threshold: float = Field(0.2, gt=0, description="population stability index above which the shift is large")
    js_threshold: float = Field(
        0.1, gt=0, le=1,
        description="Jensen-Shannon distance (square root of the divergence, base 2, in [0, 1]) above which the "
        "shift is large",
    )
    hellinger_threshold: float = Field(0.1, gt=0, le=1, description="Hellinger distance (in [0, 1]) above which the shift is large")
    wasserstein_threshold: float = Field(
        0.1, gt=0,
        description="Wasserstein distance divided by the reference standard deviation (population, ddof=0) "
        "above which a numeric shift is large",
    )
    linf_threshold: float = Field(
        0.1, gt=0, le=1,
        description="largest absolute difference of category proportions (L-infinity) above which a categorical "
        "shift is large",
    )
    max_categories: int = Field(
        200, ge=2,
        description="categorical columns: categories beyond the most frequent this many (pooled) are merged into "
        "'<other>' so that chi-square stays meaningful for id-like columns",
    )
    plot_bins: int = Field(20, ge=5, le=200, description="equal-width bins of the numeric distribution plots")
