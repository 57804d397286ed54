"""The stage's kernel process: ``ipykernel_launcher`` without the debugger.

A stage's notebook runs unattended under papermill, where nobody attaches a
debugger, and importing debugpy is a quarter of a kernel's start-up work
(0.085 s of 0.33 s measured with cProfile). ipykernel loads it only to learn
whether it can offer debugging; with ``debugpy`` marked missing while
ipykernel loads, it runs without, and the mark is removed at once, so a
notebook that imports debugpy itself still gets it. Everything else is what
``python -m ipykernel_launcher`` does. The ``reprobook`` kernelspec is
unchanged: Jupyter keeps its debugger (:mod:`reprobook.execution.kernel` swaps
the module only in the stage's command line).
"""

import sys
from pathlib import Path

if __name__ == "__main__":
    # As ipykernel_launcher: the working folder leaves sys.path while ipykernel loads (IPython puts it back).
    if sys.path[0] == "" or Path(sys.path[0]) == Path.cwd():
        del sys.path[0]
    sys.modules["debugpy"] = None  # type: ignore[assignment]  # import debugpy -> ImportError, for ipykernel
    import ipykernel.debugger  # noqa: F401  decides now: no debugger
    from ipykernel import kernelapp

    del sys.modules["debugpy"]
    kernelapp.launch_new_instance()
