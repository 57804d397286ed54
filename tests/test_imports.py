"""The stage runner starts light; the quality package's lazy exports all resolve."""

import subprocess
import sys


def test_every_quality_export_resolves():
    import reprobook.quality as quality

    for name in quality.__all__:
        assert getattr(quality, name) is not None, name


def test_stage_runner_does_not_load_sklearn_or_scipy_stats():
    """Heavy imports belong in the kernel; the outer process only orchestrates and tracks."""
    code = "import sys, reprobook.execution.runner, reprobook.cli; print(sorted(m for m in ('sklearn', 'scipy.stats') if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]"
