"""Thread pools sized to the machine: cores available divided by the stages running at once.

Why: OpenMP (HistGradientBoosting), BLAS and NumPy each start one thread per
core by default. Two stages on 2 cores, as ``dvc queue start -j 2`` runs
them, then run four busy threads that spin for each other: two
cross-validations took 5.4 s against 0.82 s with one thread each. A stage
therefore counts the stages running on this machine (each registers itself
in a folder of live pids) and gives its kernel its share, ``cores //
running``, less the core its own process uses meanwhile (it opens the MLflow
run, builds the report exporter and loads what registering a model needs
while the cells run): measured on 2 cores, the modeling stage took 9.1-9.5 s
with a 2-thread kernel beside that work and 6.9-7.4 s with one thread, and
the same notebook as plain Python took as long with one thread as with two.
The threads go through the usual variables of the kernel's environment; a
variable the user set is left as it is, and ``REPROBOOK_THREADS`` chooses the
budget.

Results do not depend on the budget: the estimators reprobook builds are
deterministic in their thread count (HistGradientBoosting's histograms are
built per feature), and ``n_jobs`` stays 1 (:mod:`reprobook.ml.estimators`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from reprobook.execution.processes import alive

THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)
BUDGET_VARIABLE = "REPROBOOK_THREADS"
"""The budget given to a stage (also what a user sets to choose it)."""


def available_cores() -> int:
    """Cores this process may use: its CPU affinity, capped by a cgroup CPU quota (containers)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, int(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def running_stages(folder: Path) -> int:
    """Stages registered in ``folder`` whose process still lives (entries of dead ones are removed)."""
    count = 0
    for entry in folder.glob("*.pid"):
        try:
            pid = int(entry.stem)
        except ValueError:
            continue
        if alive(pid):
            count += 1
        else:
            entry.unlink(missing_ok=True)
    return count


def budget(cores: int, running: int) -> int:
    """Kernel threads for one stage when ``running`` stages share ``cores``: its share less one core for
    the stage's own process, at least one."""
    return max(1, cores // max(1, running) - 1)


@contextlib.contextmanager
def stage_budget(folder: Path) -> Iterator[dict[str, str]]:
    """Register this stage in ``folder`` for as long as the block runs; yield its kernel's thread variables.

    Registration comes before counting, so two stages starting together each
    see the other. The variables are for the kernel's environment only
    (``REPROBOOK_THREADS`` and the thread counts the user has not set): this
    process's ``os.environ`` is not touched, because the stage's background
    threads read it meanwhile (setting and removing variables while another
    thread iterates over them raised ``KeyError`` there).
    """
    folder.mkdir(parents=True, exist_ok=True)
    entry = folder / f"{os.getpid()}.pid"
    entry.touch()
    try:
        chosen = os.environ.get(BUDGET_VARIABLE)
        threads = int(chosen) if chosen and chosen.isdigit() and int(chosen) > 0 else \
            budget(available_cores(), running_stages(folder))
        yield {BUDGET_VARIABLE: str(threads), **{name: os.environ.get(name) or str(threads) for name in THREAD_VARIABLES}}
    finally:
        entry.unlink(missing_ok=True)


def stage_threads() -> int:
    """The budget of the stage this process runs in (inside the kernel); all cores outside a stage."""
    chosen = os.environ.get(BUDGET_VARIABLE, "")
    return int(chosen) if chosen.isdigit() and int(chosen) > 0 else available_cores()


def load_average() -> float:
    """The 1-minute load average (NaN where the system has none): beyond the core count, timings measure the load."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return float("nan")
