"""A seeded synthetic loan-approval data set, so the reference pipeline needs no download.

Built to be realistic enough to exercise every stage: numeric and categorical
features, missing values, a nonlinear decision rule with interactions, label
noise (no model can score 1.0), and subgroups on which a model does worse
(self-employed applicants and the ``islands`` region are noisier), so error
analysis has slices worth finding.

Generation is three steps, each reusable on its own (the production-batch
simulator in :mod:`reprobook.monitoring.simulate` shifts the applicants or the
approval rule between them): :func:`sample_applicants`, :func:`label`,
:func:`inject_missing`. :func:`make_loans` runs them in that order on one
random generator; the order of the draws is part of the data's identity (the
reference pipeline's DVC lock pins its output), so do not reorder them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

TARGET = "approved"
REGIONS = ["north", "south", "east", "west", "islands"]
EMPLOYMENT = ["salaried", "self_employed", "unemployed", "retired"]
PURPOSES = ["home", "car", "education", "business", "personal"]
MISSING_SHARES = {"income": 0.04, "employment_years": 0.03, "region": 0.02}
"""Share of values blanked per column, as a real export would have them."""


@dataclass(frozen=True)
class Concept:
    """The lender's approval rule: the weights a shifted concept changes, the rest is fixed.

    The debt-to-income penalty is ``debt_weight * (dti - 0.3)**2 * 10`` (the
    10 kept as a separate factor so the floating-point result, and so every
    label, is bit-for-bit the one the original formula gave). ``threshold`` is
    the logit an application must exceed. Defaults are the rule the training
    data was made with.
    """

    credit_weight: float = 0.012
    debt_weight: float = 4.0
    threshold: float = 0.0


TRAINING_CONCEPT = Concept()


def sample_applicants(n_rows: int, rng: np.random.Generator) -> pd.DataFrame:
    """The features of ``n_rows`` applications, complete (no missing values yet) and unlabelled."""
    age = rng.integers(18, 76, n_rows)
    employment = rng.choice(EMPLOYMENT, n_rows, p=[0.62, 0.2, 0.08, 0.1])
    region = rng.choice(REGIONS, n_rows, p=[0.3, 0.25, 0.2, 0.17, 0.08])
    gender = rng.choice(["female", "male", "nonbinary"], n_rows, p=[0.49, 0.49, 0.02])
    purpose = rng.choice(PURPOSES, n_rows, p=[0.3, 0.25, 0.15, 0.15, 0.15])
    income = rng.lognormal(mean=10.6, sigma=0.5, size=n_rows)
    income = np.where(employment == "unemployed", income * 0.3, income).round(2)
    credit_score = np.clip(rng.normal(660, 80, n_rows) + (age - 40) * 1.2, 300, 850).round()
    loan_amount = np.round(rng.lognormal(mean=9.6, sigma=0.7, size=n_rows), 2)
    employment_years = np.clip(rng.gamma(2.0, 4.0, n_rows), 0, age - 16).round(1)
    debt_to_income = np.clip(rng.beta(2, 5, n_rows), 0, 1).round(3)
    return pd.DataFrame(
        {
            "age": age.astype(np.int64),
            "income": income,
            "loan_amount": loan_amount,
            "credit_score": credit_score,
            "employment_years": employment_years,
            "debt_to_income": debt_to_income,
            "gender": gender,
            "region": region,
            "employment": employment,
            "purpose": purpose,
        }
    )


def label_logit(applicants: pd.DataFrame, concept: Concept = TRAINING_CONCEPT) -> np.ndarray:
    """The noiseless approval score of complete applications; approved when score plus noise > threshold."""
    column = {name: applicants[name].to_numpy() for name in applicants.columns}
    credit_score, employment, purpose = column["credit_score"], column["employment"], column["purpose"]
    return (
        concept.credit_weight * (credit_score - 650)
        + 1.5 * np.tanh((column["income"] - 2.5 * column["loan_amount"]) / 20000)
        - concept.debt_weight * (column["debt_to_income"] - 0.3) ** 2 * 10
        + 0.04 * np.minimum(column["employment_years"], 10)
        - 0.8 * (employment == "unemployed")
        + 0.3 * (purpose == "home")
        - 0.4 * (purpose == "business") * (credit_score < 620)
        + 0.5 * np.sin(column["age"] / 8.0)
    )


def label(applicants: pd.DataFrame, rng: np.random.Generator, concept: Concept = TRAINING_CONCEPT) -> np.ndarray:
    """0/1 approvals of complete applications: the rule, subgroup-dependent noise, then 5 % flipped labels."""
    region, employment = applicants["region"].to_numpy(), applicants["employment"].to_numpy()
    noisy = (employment == "self_employed") | (region == "islands")
    logit = label_logit(applicants, concept) + rng.normal(0, np.where(noisy, 2.0, 0.6))
    approved = (logit > concept.threshold).astype(np.int64)
    flip = rng.random(len(applicants)) < 0.05
    approved[flip] = 1 - approved[flip]
    return approved


def inject_missing(frame: pd.DataFrame, rng: np.random.Generator, shares: dict[str, float] = MISSING_SHARES) -> None:
    """Blank each column of ``shares`` in that share of rows, in place (one draw per column, in order)."""
    for column, share in shares.items():
        frame.loc[rng.random(len(frame)) < share, column] = np.nan


def make_loans(n_rows: int, seed: int) -> pd.DataFrame:
    """Return ``n_rows`` applications with a binary ``approved`` label."""
    rng = np.random.default_rng(seed)
    frame = sample_applicants(n_rows, rng)
    frame[TARGET] = label(frame, rng)
    inject_missing(frame, rng)
    return frame
