"""What the commands share: argparse number types, the candidate of a ``--candidate`` / ``--target`` spec, the
embedder of ``--embedder``, the baseline reader, the credentials check and the verdict summary printed after
the reports."""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from evalgate.core.config import GateConfig
from evalgate.core.errors import InputError
from evalgate.core.ports import Candidate, Embedder
from evalgate.engine.cost import CostMeter
from evalgate.engine.factories import make_titan_embedder


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
    from evalgate.adapters.aws import credentials_available

    return credentials_available()


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


CANDIDATE_KINDS = {
    "replay": "replay:FILE",
    "bedrock": "bedrock",
    "http": "http:URL",
    "lambda": "lambda:NAME[:QUALIFIER]",
}


def synthetic_signer() -> Any:
    """The signed synthetic-traffic header for the project's own calls to the service, or None."""
    from evalgate.adapters.signing import SigningUnavailable, synthetic_signer_from_env

    try:
        return synthetic_signer_from_env()
    except SigningUnavailable as exc:
        raise InputError.single("EVALGATE_SIGNING_SECRET", None, str(exc)) from None


def make_candidate(
    spec: str,
    config: GateConfig,
    *,
    flag: str = "--candidate",
    noun: str = "candidate",
    kinds: tuple[str, ...] = tuple(CANDIDATE_KINDS),
    model: str | None = None,
    prompt: str | None = None,
    settings: Any = None,
    timeout: float | None = None,
    guardrail: tuple[str | None, str | None] = (None, None),
) -> Candidate:
    """What to evaluate, from a spec (``replay:FILE``, ``bedrock``, ``http:URL``, ``lambda:NAME[:QUALIFIER]``)
    limited to ``kinds``; an unknown spec is an input error naming ``flag`` and calling it a ``noun``.
    ``settings``: the AWS client settings (adapters.aws.ClientSettings; default: the environment's); ``timeout``:
    an HTTP candidate's."""
    kind, _, rest = spec.partition(":")
    candidate = _candidate(kind, rest, config, model, prompt, settings, timeout, guardrail) if kind in kinds else None
    if candidate is not None:
        return candidate
    *others, last = [CANDIDATE_KINDS[k] for k in kinds]
    uses = f"{', '.join(others)} or {last}" if others else last
    raise InputError.single(flag, None, f"unknown {noun} '{spec}': use {uses}")


def _candidate(
    kind: str,
    rest: str,
    config: GateConfig,
    model: str | None,
    prompt: str | None,
    settings: Any,
    timeout: float | None,
    guardrail: tuple[str | None, str | None],
) -> Candidate | None:
    """The candidate of one kind, or None when the spec's remainder does not fit the kind."""
    aws: dict[str, Any] = {} if settings is None else {"settings": settings}
    if kind == "replay" and rest:
        from evalgate.adapters.replay import ReplayCandidate

        return ReplayCandidate(Path(rest))
    if kind == "bedrock" and not rest:
        from evalgate.adapters.bedrock import BedrockCandidate
        from evalgate.core.prompts import load_prompt

        gid, gver = guardrail
        extra: dict[str, Any] = {"guardrail_id": gid, "guardrail_version": gver} if gid or gver else {}
        return BedrockCandidate(
            model_id=model or config.models.generator,
            prompt=load_prompt(prompt or config.models.prompt),
            max_tokens=config.models.max_tokens,
            temperature=config.models.temperature,
            top_p=config.models.top_p,
            **aws,
            **extra,
        )
    if kind == "http" and rest:
        from evalgate.adapters.http_endpoint import http_candidate_from_env

        return http_candidate_from_env(rest) if timeout is None else http_candidate_from_env(rest, timeout=timeout)
    if kind == "lambda" and rest:
        from evalgate.adapters.lambda_fn import LambdaCandidate

        name, _, qualifier = rest.partition(":")
        return LambdaCandidate(function_name=name, qualifier=qualifier or None, synthetic=synthetic_signer(), **aws)
    return None


def embedder_kind(choice: str, judged: bool) -> str:
    """``auto``: the local MiniLM for a tier that calls no model, Titan otherwise."""
    if choice != "auto":
        return choice
    return "titan" if judged else "local"


def make_embedder(
    kind: str, model_id: str | None = None, *, max_workers: int | None = None, meter: CostMeter | None = None
) -> Embedder:
    """``local`` (MiniLM on this machine) or ``titan`` (Bedrock, ``model_id``; metered when a meter is given)."""
    if kind == "local":
        from evalgate.adapters.local import LocalEmbedder

        return LocalEmbedder()
    if kind != "titan":
        raise ValueError(f"unknown embedder '{kind}': use local or titan")
    return make_titan_embedder(model_id, max_workers=max_workers, meter=meter)
