"""The ``reprobook`` command line.

One module per command group (:mod:`.pipeline`, :mod:`.project`,
:mod:`.quality`, :mod:`.reproduce`), each mapping arguments to one library
call. This module is the one place that turns exceptions into exit codes:
a :class:`~reprobook.errors.ReprobookError` is one short message (no
traceback unless ``--debug`` or ``REPROBOOK_DEBUG=1``), a usage error exits 2.
"""

from __future__ import annotations

import atexit
import gc
import os
import sys
from importlib import import_module

import typer
from rich.console import Console

# typer >= 0.29 raises from its own vendored click, not from `click`.
from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError

from reprobook import __version__
from reprobook.errors import ReprobookError
from reprobook.tracking.secrets import redact_text

COMMAND_GROUPS = ("reprobook.cli.project", "reprobook.cli.pipeline", "reprobook.cli.quality", "reprobook.cli.reproduce",
                  "reprobook.cli.monitoring", "reprobook.cli.simulate", "reprobook.cli.deployment", "reprobook.cli.team",
                  "reprobook.cli.warm")
USAGE_EXIT = 2

app = typer.Typer(
    help="Notebooks as a versioned (DVC), parameterized (papermill), tracked (MLflow), reproducible pipeline.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)


def _version(value: bool) -> None:
    if value:
        print(f"reprobook {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="print the version and exit"),
) -> None:
    """Notebooks as a versioned (DVC), parameterized (papermill), tracked (MLflow), reproducible pipeline."""


for _module in COMMAND_GROUPS:
    import_module(_module).register(app)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app, turning errors into a message and an exit code."""
    # Registered first, so it runs last: the interpreter's final garbage collection walks every object
    # MLflow, SQLAlchemy and pandas created (0.4-0.5 s measured at the end of a stage) only to free
    # memory the process gives back anyway. Frozen objects are skipped; files are closed by then.
    atexit.register(gc.freeze)
    debug = os.environ.get("REPROBOOK_DEBUG") == "1"
    args = list(sys.argv[1:] if argv is None else argv)
    if "--debug" in args:
        args.remove("--debug")
        debug = True
    if not args:
        args = ["--help"]
    try:
        # Without standalone mode the command's exit code is returned, not raised.
        code = app(args=args, standalone_mode=False, prog_name="reprobook")
        sys.exit(code if isinstance(code, int) else 0)
    except ReprobookError as exc:
        if debug:
            raise
        console.print(f"error: {redact_text(str(exc))}", style="red", highlight=False, markup=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except NoArgsIsHelpError as exc:
        # A command group called without a command: its help, and success.
        print(exc.ctx.get_help() if exc.ctx else "")
        sys.exit(0)
    except UsageError as exc:
        hint = f"\nTry '{exc.ctx.command_path} --help' for help." if exc.ctx else ""
        console.print(f"error: {exc.format_message()}{hint}", highlight=False, markup=False, soft_wrap=True)
        sys.exit(USAGE_EXIT)
    except ClickException as exc:
        console.print(f"error: {exc.format_message()}", highlight=False, markup=False, soft_wrap=True)
        sys.exit(getattr(exc, "exit_code", 1))
    except (typer.Abort, KeyboardInterrupt):
        console.print("aborted")
        sys.exit(130)
    except Exception as exc:
        locked = None if debug else _store_locked(exc)
        if locked is None:
            raise
        console.print(f"error: {locked}", style="red", highlight=False, markup=False, soft_wrap=True)
        sys.exit(1)


def _store_locked(error: Exception) -> str | None:
    """The one-line message for a SQLite tracking store other writers kept locked, else None."""
    from pathlib import Path

    from reprobook.tracking import store

    try:
        uri = store.tracking_uri(Path.cwd())
    except Exception:  # noqa: BLE001 - no project here: the message is the error's own
        return None
    return store.locked_message(error, uri)


if __name__ == "__main__":
    main()
