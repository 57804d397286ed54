"""Tracking: the one place that writes to MLflow, the run record, registry, environment and git state."""
