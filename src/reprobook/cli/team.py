"""``reprobook server`` (a shared MLflow tracking server: PostgreSQL store, served artifacts) and
``reprobook migrate-store`` (a project's SQLite store moved into it, run ids kept).

Exit codes: 0 done (the server stopped cleanly by Ctrl-C or SIGTERM), 1 the
server or the move failed, 2 a usage error (port in use, a SQLite backend, a
target store that is not empty) with a one-line message.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

# The server module is imported when a command runs, not with the CLI (every `reprobook` call pays its imports).
DEFAULT_PORT = 5000


def server_command(
    host: Annotated[str, typer.Option(help="interface to bind; 0.0.0.0 exposes the server to the network")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="HTTP port")] = DEFAULT_PORT,
    data_dir: Annotated[Optional[Path], typer.Option(
        "--data-dir", help="PostgreSQL data and the server's log [default: $XDG_DATA_HOME/reprobook/server]")] = None,
    artifacts_destination: Annotated[Optional[str], typer.Option(
        "--artifacts-destination",
        help="where the server stores artifacts: a directory or s3://bucket/prefix (S3 credentials and "
             "MLFLOW_S3_ENDPOINT_URL from this process's environment) [default: DATA_DIR/artifacts]")] = None,
    backend_store_uri: Annotated[Optional[str], typer.Option(
        "--backend-store-uri", help="an existing PostgreSQL database (postgresql://...) instead of a local one")] = None,
    workers: Annotated[int, typer.Option(min=1, help="server worker processes")] = 2,
) -> None:
    """Start MLflow's tracking server on PostgreSQL, in the foreground, until Ctrl-C.

    Clients then need only its URL: export MLFLOW_TRACKING_URI=http://127.0.0.1:5000
    (artifacts are uploaded through the server; clients need no bucket credentials).
    """
    from reprobook.tracking.server import ServerSettings, default_data_dir, serve

    data = (data_dir or default_data_dir()).expanduser().resolve()
    artifacts = artifacts_destination or str(data / "artifacts")
    settings = ServerSettings(host=host, port=port, data_dir=data, artifacts=artifacts,
                              backend_store_uri=backend_store_uri, workers=workers)
    raise typer.Exit(serve(settings, _announce))


def _announce(settings, log: Path) -> None:
    store = "PostgreSQL" + ("" if settings.backend_store_uri else f" in {settings.data_dir / 'postgres'}")
    typer.echo(f"MLflow tracking server at {settings.url} (store: {store}; artifacts: {settings.artifacts}; "
               f"log: {log})", err=True)
    typer.echo(f"export MLFLOW_TRACKING_URI={settings.url}")
    typer.echo("Ctrl-C stops it.", err=True)


def migrate_store_command(
    source: Annotated[Path, typer.Argument(help="the SQLite store to move (a project's mlflow.db)")],
    data_dir: Annotated[Optional[Path], typer.Option(
        "--data-dir", help="the local server's folder (as for reprobook server) [default: $XDG_DATA_HOME/reprobook/server]")] = None,
    backend_store_uri: Annotated[Optional[str], typer.Option(
        "--backend-store-uri", help="an existing PostgreSQL database (postgresql://...) instead of the local server's")] = None,
    artifacts_destination: Annotated[Optional[str], typer.Option(
        "--artifacts-destination", help="the server's artifact destination [default: DATA_DIR/artifacts]")] = None,
) -> None:
    """Move a SQLite MLflow store into a new server database: every run (same ids), metric, model and artifact.

    Run it once, before the team starts logging to the server; the target must be empty.
    """
    import contextlib

    from reprobook.tracking.migrate import migrate
    from reprobook.tracking.server import default_data_dir, local_postgres

    data = (data_dir or default_data_dir()).expanduser().resolve()
    artifacts = artifacts_destination or str(data / "artifacts")
    with contextlib.ExitStack() as stack:
        target = backend_store_uri or stack.enter_context(local_postgres(data))
        done = migrate(f"sqlite:///{source.expanduser().resolve()}", target, artifacts,
                       say=lambda line: typer.echo(line, err=True))
    typer.echo(f"moved {done.runs} runs of {done.experiments} experiments ({done.rows} rows in {done.tables} tables, "
               f"{done.artifact_folders} artifact folders) from {source}")


def register(app: typer.Typer) -> None:
    """Add ``server`` and ``migrate-store`` to ``app`` as top-level commands."""
    app.command("server")(server_command)
    app.command("migrate-store")(migrate_store_command)
