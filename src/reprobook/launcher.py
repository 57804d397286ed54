"""The ``reprobook`` console script: a stage goes to the environment's warm process
(:mod:`reprobook.warm`), every other command, and a stage with no warm process
ready, runs here through :func:`reprobook.cli.main`."""

from __future__ import annotations

import sys


def main() -> None:
    from reprobook.warm import WARM_COMMANDS, command_of

    if command_of(sys.argv[1:]) in WARM_COMMANDS:  # other commands pay nothing for the hand-over
        from reprobook.warm.client import WarmProcessLost, delegate

        try:
            code = delegate(sys.argv[1:])
        except WarmProcessLost as exc:
            sys.stderr.write(f"error: {exc}\n")
            sys.exit(1)
        if code is not None:
            sys.exit(code)
    from reprobook.cli import main as run_here

    run_here()


if __name__ == "__main__":
    main()
