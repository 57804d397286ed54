"""Run ids people can type: any unique prefix of an MLflow run id names the run.

``reprobook runs`` shows short ids; ``compare`` and ``reproduce`` take them
back through :func:`resolve`, the one place a typed run id becomes a full one.
A prefix is looked up among the runs of the project's experiment
(``tracking.experiment``); a full 32-character id names any run in the store.
An unknown, ambiguous or malformed id is a usage error naming what was typed
(and, when ambiguous, the candidates), like a misspelt file name.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from reprobook.errors import UsageError
from reprobook.project.paths import home_root
from reprobook.tracking import store

FULL_LENGTH = 32
"""MLflow run ids are ``uuid4().hex``: 32 lowercase hexadecimal characters."""
MIN_PREFIX = 4
"""Shorter prefixes match too many runs to be worth a lookup (1 in 65536 ids starts with 4 given hex digits)."""
SHORT_LENGTH = 8
"""What ``reprobook runs`` shows: 8 hex digits collide once in ~4 billion pairs of runs."""
MAX_CANDIDATES = 5
"""Candidates an ambiguity error lists (newest first)."""
SEARCH_LIMIT = 100
HEX = frozenset("0123456789abcdef")


def started(start_time_ms: int | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    """A run's start time (MLflow milliseconds since the epoch) in local time."""
    return "" if start_time_ms is None else datetime.fromtimestamp(start_time_ms / 1000).strftime(fmt)


def short_ids(run_ids: Iterable[str], length: int = SHORT_LENGTH) -> dict[str, str]:
    """Each id's shortest prefix of at least ``length`` characters that no other given id shares."""
    ids = list(dict.fromkeys(run_ids))
    shown: dict[str, str] = {}
    for run_id in ids:
        size = length
        while size < len(run_id) and any(other != run_id and other.startswith(run_id[:size]) for other in ids):
            size += 1
        shown[run_id] = run_id[:size]
    return shown


def _candidate(run) -> str:
    stage = run.data.tags.get(store.TAG_STAGE) or "?"
    return f"  {run.info.run_id}  {stage:<14} {run.info.status:<8}  {started(run.info.start_time)}"


def _exact(client, run_id: str) -> str:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_run(run_id).info.run_id
    except MlflowException:
        raise UsageError(
            f"run {run_id} not found in the MLflow store {client.tracking_uri} "
            "(set MLFLOW_TRACKING_URI to the store that holds it)"
        ) from None


def match_prefix(client, prefix: str, experiment_ids: list[str], limit: int = SEARCH_LIMIT) -> list:
    """Active runs of these experiments whose id starts with ``prefix`` (hex, lowercase), newest first."""
    if not experiment_ids:
        return []
    return list(client.search_runs(
        experiment_ids, filter_string=f"attributes.run_id LIKE '{prefix}%'",
        max_results=limit, order_by=["attributes.start_time DESC"],
    ))


def parse(text: str, min_length: int = MIN_PREFIX) -> str:
    """What was typed, checked without the store: a full id as given, else a lowercase hex prefix.

    Cheap (MLflow is not loaded), so a malformed id fails at once.
    """
    given = text.strip()
    if len(given) >= FULL_LENGTH:
        return given
    prefix = given.lower()
    if not prefix or not set(prefix) <= HEX:
        raise UsageError(
            f"'{given}' is not a run id: expected {FULL_LENGTH} hexadecimal characters (0-9, a-f) "
            f"or at least the first {min_length} of them"
        )
    if len(prefix) < min_length:
        raise UsageError(f"run id prefix '{given}' is too short: give at least {min_length} characters of the id")
    return prefix


def resolve_in(client, text: str, experiment_ids: list[str], *, where: str, min_length: int = MIN_PREFIX) -> str:
    """The full id of the one run ``text`` names: itself if a full id, else the run its prefix starts.

    ``where`` says, in error messages, what was searched (an experiment and store).
    """
    prefix = parse(text, min_length)
    if len(prefix) >= FULL_LENGTH:
        return _exact(client, prefix)
    matches = match_prefix(client, prefix, experiment_ids)
    if len(matches) == 1:
        return matches[0].info.run_id
    given = text.strip()
    if not matches:
        raise UsageError(f"no run id starts with '{given}' in {where} (`reprobook runs` lists recent runs)")
    more = "+" if len(matches) >= SEARCH_LIMIT else ""
    listed = [_candidate(run) for run in matches[:MAX_CANDIDATES]]
    if len(matches) > MAX_CANDIDATES:
        listed.append(f"  ... and {len(matches) - MAX_CANDIDATES}{more} more")
    raise UsageError(
        f"run id prefix '{given}' is ambiguous: {len(matches)}{more} runs in {where} start with it; "
        "type more characters:\n" + "\n".join(listed)
    )


def store_label(root: Path) -> str:
    """The store as a user knows it: ``mlflow.db`` for the project's own, else the tracking URI."""
    uri = store.tracking_uri(root)
    return "mlflow.db" if uri == f"sqlite:///{home_root(root) / 'mlflow.db'}" else uri


def project_experiment(root: Path, client) -> tuple[list[str], str]:
    """The project's experiment id (none if it does not exist yet) and how to name it in a message."""
    from reprobook.project.params import project_params

    name = project_params(root).tracking.experiment
    experiment = client.get_experiment_by_name(name)
    return ([experiment.experiment_id] if experiment else []), f"experiment '{name}' of {store_label(root)}"


def resolve(root: Path, text: str, client=None, *, min_length: int = MIN_PREFIX) -> str:
    """A full run id from a full id or a unique prefix, in the project's store (see module docs)."""
    return resolve_all(root, [text], client, min_length=min_length)[0]


def resolve_all(root: Path, texts: list[str], client=None, *, min_length: int = MIN_PREFIX) -> list[str]:
    """Full run ids for several typed ids; every one is checked before the store is opened."""
    typed = [parse(text, min_length) for text in texts]
    client = client or store.client(root)
    if all(len(given) >= FULL_LENGTH for given in typed):  # no need to read params.yaml for full ids
        return [_exact(client, given) for given in typed]
    experiment_ids, where = project_experiment(root, client)
    return [resolve_in(client, given, experiment_ids, where=where, min_length=min_length) for given in texts]
