"""Verdict <-> exit code: the one table the CLI, the pipeline's gate step and every reader of results.json use.

Pure (no pydantic), so the pipeline's promote build, which installs only boto3, can import it.
"""

from __future__ import annotations

from typing import Literal

VerdictName = Literal["PASS", "FAIL", "REVIEW", "ERROR"]
PASS, FAIL, USAGE, REVIEW, ERROR = 0, 1, 2, 3, 4
EXIT_CODES: dict[str, int] = {"PASS": PASS, "FAIL": FAIL, "REVIEW": REVIEW, "ERROR": ERROR}
EXIT_USAGE = USAGE  # bad input or usage: nothing was evaluated
EXIT_NAMES: dict[int, str] = {PASS: "PASS", FAIL: "FAIL", USAGE: "USAGE ERROR", REVIEW: "REVIEW", ERROR: "ERROR"}
