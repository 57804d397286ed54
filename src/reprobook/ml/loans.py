"""A seeded synthetic loan-approval data set, so the reference pipeline needs no download.

Built to be realistic enough to exercise every stage: numeric and categorical
features, missing values, a nonlinear decision rule with interactions, label
noise (no model can score 1.0), and subgroups on which a model does worse
(self-employed applicants and the ``islands`` region are noisier), so error
analysis has slices worth finding.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

TARGET = "approved"
REGIONS = ["north", "south", "east", "west", "islands"]
EMPLOYMENT = ["salaried", "self_employed", "unemployed", "retired"]
PURPOSES = ["home", "car", "education", "business", "personal"]


def make_loans(n_rows: int, seed: int) -> pd.DataFrame:
    """Return ``n_rows`` applications with a binary ``approved`` label."""
    rng = np.random.default_rng(seed)
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

    logit = (
        0.012 * (credit_score - 650)
        + 1.5 * np.tanh((income - 2.5 * loan_amount) / 20000)
        - 4.0 * (debt_to_income - 0.3) ** 2 * 10
        + 0.04 * np.minimum(employment_years, 10)
        - 0.8 * (employment == "unemployed")
        + 0.3 * (purpose == "home")
        - 0.4 * (purpose == "business") * (credit_score < 620)
        + 0.5 * np.sin(age / 8.0)
    )
    noisy = (employment == "self_employed") | (region == "islands")
    logit = logit + rng.normal(0, np.where(noisy, 2.0, 0.6))
    approved = (logit > 0).astype(np.int64)
    flip = rng.random(n_rows) < 0.05
    approved[flip] = 1 - approved[flip]

    frame = pd.DataFrame(
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
            TARGET: approved,
        }
    )
    for column, share in {"income": 0.04, "employment_years": 0.03, "region": 0.02}.items():
        frame.loc[rng.random(n_rows) < share, column] = np.nan
    return frame
