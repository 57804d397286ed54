"""What the stage notebooks call: data sources, split, estimators, metrics, plots, scoping, error analysis."""
