"""Dask, for work that outgrows one process: a scheduler the user names, or a local cluster.

Why Dask rather than a pool of our own: a team already runs Dask schedulers
(on a cluster, Kubernetes, a cloud service), scikit-learn's joblib backend
speaks to them, and ``LocalCluster`` gives one machine the same interface,
so what is tested here on a local cluster is what runs on a real one.

The address comes from ``--scheduler ADDRESS`` or ``REPROBOOK_SCHEDULER``:
``tcp://host:8786`` for a running scheduler, ``local`` for a cluster of this
machine's cores started for the duration of the work (one single-threaded
worker process per core, everything bound to 127.0.0.1). Nothing is started
unless one of them is given.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from reprobook.execution.threads import available_cores

SCHEDULER_VARIABLE = "REPROBOOK_SCHEDULER"
LOCAL = "local"


class ClusterError(RuntimeError):
    """The scheduler could not be reached or the local cluster not started (a usage error)."""


def scheduler_address(explicit: str | None = None) -> str | None:
    """The scheduler asked for: ``explicit``, else ``REPROBOOK_SCHEDULER``, else None (no cluster)."""
    address = explicit if explicit is not None else os.environ.get(SCHEDULER_VARIABLE, "")
    address = address.strip()
    return address or None


@contextlib.contextmanager
def dask_client(address: str, workers: int | None = None, memory_limit: str | None = None) -> Iterator:
    """A ``distributed.Client`` on ``address`` (``local``: a cluster started and stopped here).

    A local cluster has ``workers`` processes (default: one per core) of one
    thread each: the work it gets (a partition's summaries, a model fit) is
    single-threaded, and more threads per process would only share one GIL.
    """
    from dask.distributed import Client, LocalCluster

    if address == LOCAL:
        try:
            cluster = LocalCluster(
                n_workers=workers or available_cores(),
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address="127.0.0.1:0",
                memory_limit=memory_limit or "auto",
                silence_logs=40,  # errors only: a worker's INFO lines are not the user's news
            )
        except Exception as error:  # noqa: BLE001 - reported as one line
            raise ClusterError(f"could not start a local Dask cluster: {error}") from error
        with cluster, Client(cluster) as client:
            yield client
        return
    try:
        client = Client(address, timeout="8s")
    except Exception as error:  # noqa: BLE001 - OSError, TimeoutError, ValueError for a bad address
        raise ClusterError(f"no Dask scheduler at {address} ({type(error).__name__}: {error}); "
                           f"start one (dask scheduler) or use --scheduler local") from error
    with client:
        yield client


@contextlib.contextmanager
def joblib_on(address: str | None) -> Iterator[None]:
    """scikit-learn's and joblib's parallel work on the cluster at ``address`` (None: unchanged, local).

    Results do not change: joblib returns results in submission order, and
    each task carries its own seed.
    """
    if address is None:
        yield
        return
    import joblib

    with dask_client(address), joblib.parallel_config(backend="dask"):
        yield
