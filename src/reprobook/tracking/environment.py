"""Capture the software environment of a run, without its secrets.

Records what a reproduction must match: Python, platform, the exact version of
every installed distribution, and the environment variables that change
behaviour (thread counts, MLflow/DVC settings). Secrets are redacted by
:mod:`reprobook.tracking.secrets`: the value of a variable named like a
credential, and any value shaped like one (a connection string's account
key, a URL's user-info, a SAS signature, a GitHub token). Who made the
commit (``GIT_AUTHOR_*``, ``GIT_COMMITTER_*``) is personal, not an input of the
run: neither is recorded.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import sys
from typing import Any

from reprobook.tracking.secrets import REDACTED, redact_env

CAPTURED_PREFIXES = (
    "MLFLOW_", "DVC_", "PYTHON", "OMP_", "MKL_", "OPENBLAS_", "CUDA_", "REPROBOOK_",
    "AWS_", "AZURE_", "GOOGLE_", "GIT_",
)
IGNORED_NAMES = {"PYTHONSTARTUP", "OLDPWD", "PWD"}
IDENTITY = re.compile(r"^GIT_(?:AUTHOR|COMMITTER)_(?:NAME|EMAIL|DATE)$")
"""Git identity variables: who ran it, not what it ran on; the same rule for author and committer."""

__all__ = ["REDACTED", "capture", "package_differences", "packages", "redact", "relevant_variables"]


def redact(name: str, value: str) -> str:
    """The value to record for environment variable ``name``."""
    return redact_env(name, value)


def packages() -> dict[str, str]:
    """Every installed distribution and its exact version, sorted by name (read once per environment:
    :mod:`reprobook.project.envcache`)."""
    from reprobook.project.envcache import cached

    return cached("packages", installed_packages)


def installed_packages() -> dict[str, str]:
    """:func:`packages`, read from the distributions' metadata now."""
    found: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            found[name.lower().replace("_", "-")] = dist.version
    return dict(sorted(found.items()))


def relevant_variables(environ: dict[str, str] | None = None) -> dict[str, str]:
    environ = dict(os.environ if environ is None else environ)
    return {
        name: redact(name, value)
        for name, value in sorted(environ.items())
        if name.startswith(CAPTURED_PREFIXES) and name not in IGNORED_NAMES and not IDENTITY.match(name)
    }


def capture(environ: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "packages": packages(),
        "variables": relevant_variables(environ),
    }


def package_differences(then: dict[str, str], now: dict[str, str]) -> list[dict[str, str | None]]:
    """Distributions whose version differs (or that exist on one side only)."""
    return [
        {"package": name, "then": then.get(name), "now": now.get(name)}
        for name in sorted(set(then) | set(now))
        if then.get(name) != now.get(name)
    ]
