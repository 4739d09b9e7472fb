"""The ``evalgate`` process's start-up runs without the cyclic garbage collector.

Start-up (imports, the config and golden set, AWS clients) allocates objects that live until the process exits;
the collector's passes over them are wasted work (about 180 collections, ~40 ms before a run's first call on
the fault bench). ``begin`` pauses the collector for the console entry point; ``done`` ends start-up: what it
made moves to the permanent generation (``gc.freeze``: never walked again) and collection resumes for the work
that follows. A command ends its start-up just before its calls (``run``) or, by default, before its handler
runs (``evalgate.cli._main``). Called as a library (``main(argv)``), nothing is paused and ``done`` does nothing.
"""

from __future__ import annotations

import gc

_paused = False


def begin() -> None:
    global _paused
    if gc.isenabled():
        gc.disable()
        _paused = True


def done() -> None:
    global _paused
    if _paused:
        _paused = False
        gc.freeze()
        gc.enable()
