"""User-facing errors.

Every failure a user can cause (bad params, missing file, bad data) is raised as
a :class:`ReprobookError` with a short message naming the file, key or column,
what was expected and what was found. The command line prints the message
without a traceback and exits non-zero.
"""

from __future__ import annotations


class ReprobookError(Exception):
    """An error caused by user input, reported without a traceback."""

    exit_code: int = 1


class UsageError(ReprobookError):
    """Bad invocation: missing file, unreadable data (exit code 2)."""

    exit_code = 2
