"""Running stages: papermill and the kernel, executed-notebook normalising, HTML, code fingerprints, the pipeline."""
