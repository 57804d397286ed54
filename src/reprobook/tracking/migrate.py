"""Move a project's SQLite MLflow store to the team's PostgreSQL database, run ids and all.

Why a copy of the tables rather than MLflow's API: re-logging runs through a
client gives them new ids, and a run id is what people keep (``reprobook
reproduce RUN_ID``, links in reviews, the registry's versions). Both stores
are MLflow's own SQL schema at the same migration, so every row is copied as
it is, table by table in foreign-key order, in one transaction.

Artifacts move too: a local experiment's files (``file:///.../mlartifacts``)
are uploaded into the server's artifact destination under
``migrated/<digest>/<experiment id>``, and every stored URI that pointed
into the old folder now says ``mlflow-artifacts:/migrated/...``, which the
server serves to every client (see :mod:`reprobook.tracking.server`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from reprobook.errors import ReprobookError, UsageError

KEEP_TABLES = ("alembic_version",)
MIGRATED_PREFIX = "migrated"


@dataclass(frozen=True)
class Migration:
    tables: int
    rows: int
    runs: int
    experiments: int
    artifact_folders: int


def migrate(source_uri: str, target_uri: str, artifacts_destination: str,
            say: Callable[[str], None] = lambda message: None) -> Migration:
    """Copy every row of the SQLite store ``source_uri`` into the empty store ``target_uri``."""
    import sqlalchemy as sa

    source = _source_engine(source_uri)
    target = _target_engine(target_uri)
    _check_same_schema(source, target, source_uri)
    _check_empty(target)
    source_meta, target_meta = sa.MetaData(), sa.MetaData()
    source_meta.reflect(source)
    target_meta.reflect(target)
    moves = _artifact_moves(source, artifacts_destination)
    rows = 0
    with target.begin() as into, source.connect() as out_of:
        for table in reversed(target_meta.sorted_tables):
            if table.name not in KEEP_TABLES:
                into.execute(table.delete())  # the new store's default experiment and workspace rows
        for table in target_meta.sorted_tables:
            if table.name in KEEP_TABLES or table.name not in source_meta.tables:
                continue
            copied = _copy_table(out_of, source_meta.tables[table.name], into, table, moves)
            rows += copied
            if copied:
                say(f"{table.name}: {copied} rows")
        if target.dialect.name == "postgresql":
            _advance_sequences(into, target_meta)
    for old, new in moves.items():
        _upload(old, new, artifacts_destination)
        say(f"artifacts {old} -> {new}")
    with source.connect() as connection:
        runs = connection.execute(sa.text("SELECT count(*) FROM runs")).scalar_one()
        experiments = connection.execute(sa.text("SELECT count(*) FROM experiments")).scalar_one()
    return Migration(len(target_meta.tables) - len(KEEP_TABLES), rows, runs, experiments, len(moves))


def _source_engine(uri: str):
    import sqlalchemy as sa

    if not uri.startswith("sqlite:///"):
        raise UsageError(f"the store to move must be a SQLite file (sqlite:///path/mlflow.db); found {uri}")
    path = Path(uri.removeprefix("sqlite:///"))
    if not path.is_file():
        raise UsageError(f"{path}: no such MLflow store")
    return sa.create_engine(uri)


def _target_engine(uri: str):
    """The target, its schema created by MLflow itself (the same migrations a server runs)."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    try:
        store = SqlAlchemyStore(uri, "mlflow-artifacts:/")
    except Exception as error:  # noqa: BLE001 - a driver's or MLflow's error, reported in one line
        raise ReprobookError(f"cannot open the target store: {type(error).__name__}: {str(error).splitlines()[0]}") from error
    return store.engine


def _version(engine) -> str | None:
    import sqlalchemy as sa

    with engine.connect() as connection:
        try:
            return connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one_or_none()
        except sa.exc.DBAPIError:
            return None


def _check_same_schema(source, target, source_uri: str) -> None:
    found, expected = _version(source), _version(target)
    if found != expected:
        raise UsageError(f"{source_uri} is at MLflow schema {found}, the target at {expected}: "
                         f"upgrade the file first (mlflow db upgrade {source_uri})")


def _check_empty(target) -> None:
    """Refuse to mix two stores: the target may hold only what a new store starts with."""
    import sqlalchemy as sa

    with target.connect() as connection:
        runs = connection.execute(sa.text("SELECT count(*) FROM runs")).scalar_one()
        models = connection.execute(sa.text("SELECT count(*) FROM registered_models")).scalar_one()
        experiments = connection.execute(sa.text("SELECT count(*) FROM experiments WHERE experiment_id <> 0")).scalar_one()
    if runs or models or experiments:
        raise UsageError(f"the target store is not empty ({runs} runs, {experiments} experiments, {models} registered "
                         "models): move a SQLite store into a new database only")


def _artifact_moves(source, destination: str) -> dict[str, str]:
    """Old experiment artifact location -> its new ``mlflow-artifacts:`` URI, for local folders that exist."""
    import sqlalchemy as sa

    with source.connect() as connection:
        located = connection.execute(sa.text("SELECT experiment_id, artifact_location FROM experiments")).all()
    moves = {}
    for experiment_id, location in located:
        folder = _local_folder(location)
        if folder is None or not folder.is_dir():
            continue
        digest = hashlib.sha256(location.encode()).hexdigest()[:12]
        moves[location.rstrip("/")] = f"mlflow-artifacts:/{MIGRATED_PREFIX}/{digest}/{experiment_id}"
    return moves


def _local_folder(location: str | None) -> Path | None:
    if not location:
        return None
    if location.startswith("file:"):
        return Path(unquote(urlparse(location).path))
    if "://" not in location and ":" not in location.split("/")[0]:
        return Path(location)
    return None


def _rewrite(value, moves: dict[str, str]):
    if isinstance(value, str):
        for old, new in moves.items():
            if value == old or value.startswith(old + "/"):
                return new + value[len(old):]
    return value


def _copy_table(source_connection, source_table, target_connection, target_table, moves: dict[str, str],
                chunk: int = 2000) -> int:
    import sqlalchemy as sa

    columns = [column.name for column in target_table.columns if column.name in source_table.columns]
    result = source_connection.execution_options(stream_results=True).execute(
        sa.select(*[source_table.columns[name] for name in columns]))
    copied = 0
    while batch := result.fetchmany(chunk):
        target_connection.execute(target_table.insert(),
                                  [{name: _rewrite(value, moves) for name, value in zip(columns, row)} for row in batch])
        copied += len(batch)
    return copied


def _advance_sequences(connection, metadata) -> None:
    """PostgreSQL's id counters past the copied ids (rows were inserted with their ids)."""
    import sqlalchemy as sa

    for table in metadata.sorted_tables:
        for column in table.primary_key.columns:
            if not isinstance(column.type, sa.Integer):
                continue
            sequence = connection.execute(sa.text("SELECT pg_get_serial_sequence(:t, :c)"),
                                          {"t": table.name, "c": column.name}).scalar_one()
            if sequence:
                connection.execute(sa.text(f'SELECT setval(:s, (SELECT coalesce(max("{column.name}"), 0) + 1 '
                                           f'FROM "{table.name}"), false)'), {"s": sequence})


def _upload(old: str, new: str, destination: str) -> None:
    """Copy a local experiment folder to where the server stores ``new`` (a directory or a bucket)."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    relative = new.removeprefix("mlflow-artifacts:/")
    repository = get_artifact_repository(destination.rstrip("/"))
    repository.log_artifacts(str(_local_folder(old)), relative)
