"""reprobook: notebooks as a versioned, tracked, reproducible pipeline."""

__version__ = "0.1.0"
