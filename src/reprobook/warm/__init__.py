"""A warm process per environment, from which each stage process is forked.

Why: a stage's own process spends about two seconds of CPU importing what it
needs around the kernel (MLflow, the tracking store, papermill and the
kernel client, nbconvert and its templates, scikit-learn and skops for a
model's registration). On two cores that work competes with the kernel for
the second core, and it is the same work for every stage of an environment.
So the first ``reprobook stage`` of an environment starts a process that
imports all of it once (:mod:`.zygote`), and every later one is forked from
it: the fork is a fresh process with nothing of an earlier stage in it, and
the kernel is still a fresh process started by it. The ``reprobook`` command
the user (or DVC) runs stays a thin client (:mod:`.client`) that hands over
its arguments, working folder, environment and terminal, forwards signals,
and exits with the stage's exit status.

The warm process listens on a Unix socket in a folder only its user can open
(:mod:`.location`), never on a network port. It is keyed by the environment
(interpreter, ``sys.path`` and its folders' modification times, reprobook's
own source files), so an installation or an edit starts a new one; it exits
after ``REPROBOOK_WARM_IDLE`` seconds without a stage (30 minutes), on
``reprobook warm --stop``, and is never started with ``REPROBOOK_WARM=0``.
Where it is not running yet, the stage runs in its own process as before.
"""

WARM_COMMANDS = frozenset({"stage"})
"""Commands run in a fork of the warm process: the ones a data scientist (and DVC) run over and over."""


def command_of(args: list[str]) -> str | None:
    """The subcommand: the first argument that is not an option."""
    return next((arg for arg in args if not arg.startswith("-")), None)
