"""The ``evalgate`` command: the parser and the dispatch. Each command (or family) lives in its own module, which
registers its subcommand (``add_parser``) and handles it (the ``handler`` it sets); ``common`` holds what they
share. Floor 6: may import every package of the product, never the demo service."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from evalgate import __version__
from evalgate.cli import startup
from evalgate.core.errors import InputError
from evalgate.core.verdicts import ERROR as EXIT_ERROR
from evalgate.core.verdicts import EXIT_USAGE

DESCRIPTION = """\
Score a GenAI change against a golden dataset and decide whether it may ship.

Exit codes: 0 PASS · 1 FAIL · 2 usage or input error · 3 REVIEW (needs a human) · 4 ERROR (could not decide:
too many unscored cases, missing data, time budget exhausted).

Start here:
  evalgate validate                                   check golden/ (datasets, knowledge, gate.toml)
  evalgate tier --since origin/main                   which tier --tier auto would run, and why
  evalgate run --tier offline \\
      --candidate replay:golden/responses/baseline.jsonl --out out/baseline
  evalgate run --tier offline \\
      --candidate replay:golden/responses/regressed.jsonl \\
      --baseline out/baseline/results.json --out out/regressed
"""


def _parser() -> argparse.ArgumentParser:
    from evalgate.cli import calibrate, canary, ci, curate, history, init, load, merge, pr, run, shadow, tier, validate

    p = argparse.ArgumentParser(
        prog="evalgate", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--version", action="version", version=f"evalgate {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for command in (run, tier, load, merge, shadow, validate):
        command.add_parser(sub)
    pr.add_pr_commands(sub)
    init.add_init_command(sub)
    for command in (history, ci, curate, canary, calibrate):
        command.add_parser(sub)
    return p


def console() -> NoReturn:
    """The ``evalgate`` process (console script, ``python -m evalgate``): start-up without the garbage collector
    (``startup``), then ``main``; then the process ends with its code without tearing the interpreter down (as
    mypy's command line does): every file it wrote is closed and its output flushed by then, so what teardown
    would do — a final garbage collection (~0.13 s on a full run's object graph, fault bench) and freeing the
    run's objects one by one — the OS does at once."""
    startup.begin()
    try:
        code = main()
    except SystemExit as exc:  # argparse's --help, --version and usage errors: as the interpreter would end
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if exc.code is not None and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe (`| head`) or stream: nothing left to say
            stream.flush()
    os._exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    return _main(argv)


def _main(argv: Sequence[str] | None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return EXIT_USAGE
    if not getattr(args, "owns_startup", False):  # a command that ends start-up itself (run: before its calls)
        startup.done()
    try:
        return int(args.handler(args))
    except InputError as exc:
        for problem in exc.problems:
            print(str(problem), file=sys.stderr)
        print(f"evalgate: {len(exc.problems)} input problem(s); nothing was evaluated", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("evalgate: interrupted", file=sys.stderr)
        return EXIT_ERROR
    except Exception as exc:
        if os.environ.get("EVALGATE_DEBUG"):
            raise
        print(f"evalgate: ERROR: {type(exc).__name__}: {exc} (set EVALGATE_DEBUG=1 for a traceback)", file=sys.stderr)
        return EXIT_ERROR
