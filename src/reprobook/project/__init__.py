"""The project: params (validated), stages read from dvc.yaml, paths, the notebook context, templates for `reprobook new`."""
