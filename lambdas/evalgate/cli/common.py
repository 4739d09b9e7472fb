"""What every command shares: argparse number types, the baseline reader, the credentials check and the verdict
summary printed after the reports."""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any


def number(
    kind: type[int] | type[float], lo: float | None = None, hi: float | None = None, *, lo_open: bool = False
) -> Callable[[str], Any]:
    """An argparse type: a finite ``kind`` within [lo, hi] (``lo_open``: strictly above lo); the range is in the
    message argparse prints (exit 2)."""
    low = "" if lo is None else (f"> {lo:g}" if lo_open else f">= {lo:g}")
    high = "" if hi is None else f"<= {hi:g}"
    wanted = f"{'an integer' if kind is int else 'a number'}" + (
        f" {low}{' and ' if low and high else ''}{high}" if low or high else ""
    )

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {wanted} (got {text!r})") from None
        bad = not math.isfinite(value)
        bad = bad or (lo is not None and (value <= lo if lo_open else value < lo)) or (hi is not None and value > hi)
        if bad:
            raise argparse.ArgumentTypeError(f"must be {wanted} (got {text!r})")
        return value

    return parse


def load_baseline(path: Path) -> Any:
    from evalgate.core.results import load_result

    return load_result(path, "baseline")


def aws_credentials_available() -> bool:
    import boto3

    return boto3.Session().get_credentials() is not None


def print_summary(result: Any, paths: dict[str, Path]) -> None:
    v = result.verdict
    n = len(result.cases)
    failed = sum(1 for c in result.cases if c.status == "fail")
    print(f"{v.verdict}  ({n} cases, {failed} failing, tier {result.tier}, candidate {result.candidate.get('name')})")
    for reason in v.reasons:
        print(f"  - {reason}")
    for nr in result.not_run:
        print(f"  not run: {nr['metric']}: {nr['reason']}")
    u = result.usage
    print(
        f"  usage: {u.model_calls} model calls, {u.cache_hits} cache hits, "
        f"{u.input_tokens + u.output_tokens} tokens, ${u.cost_usd:.4f}"
    )
    if result.cost and result.cost.get("cap_usd") is not None:
        print(
            f"  cost cap: ${result.cost['cap_usd']:.4f}; metered spend ${result.cost['spent_usd']:.4f}"
            + (" — STOPPED at the cap" if result.cost.get("stopped") else "")
        )
    if result.escalation and result.escalation.get("cases"):
        print(
            f"  borderline: {len(result.escalation['cases'])} case(s) re-judged by "
            f"{result.escalation['judge'].get('model_id')}"
        )
    print("  reports: " + json.dumps({k: str(p) for k, p in paths.items()}))
