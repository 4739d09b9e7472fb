"""The one composition root for what an evaluation calls: candidates from a spec, judges, embedders and the cost
meter in front of them. The CLI, the deployment hooks, the online judge and judge calibration build them here,
so a judge is made (and metered, cached, retried) the same way wherever it runs.

Adapters are imported inside the functions: an offline run never loads boto3's Bedrock clients.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evalgate.core.config import GateConfig
from evalgate.core.errors import InputError
from evalgate.core.ports import Candidate, Embedder
from evalgate.core.retry import DEFAULT_MALFORMED_ATTEMPTS, RetryPolicy
from evalgate.engine.cache import Cache
from evalgate.engine.cost import CostMeter, MeteredCandidate, MeteredEmbedder, MeteredJudgeModel
from evalgate.engine.judge import Judge

CANDIDATE_KINDS = {
    "replay": "replay:FILE",
    "bedrock": "bedrock",
    "http": "http:URL",
    "lambda": "lambda:NAME[:QUALIFIER]",
}


def make_meter(config: GateConfig, cap_usd: float | None) -> CostMeter | None:
    """A meter when a cap is in force (flag, else ``[cost] max_usd``), else None (usage is still counted)."""
    return CostMeter(config, cap_usd) if cap_usd is not None else None


def make_judge(
    model_id: str,
    *,
    cache: Cache | None = None,
    meter: CostMeter | None = None,
    policy: RetryPolicy | None = None,
    malformed_attempts: int = DEFAULT_MALFORMED_ATTEMPTS,
) -> Judge:
    """A Bedrock judge, metered when a meter is given (the runner replaces ``policy`` with the run's)."""
    from evalgate.adapters.bedrock import BedrockJudgeModel

    model: Any = BedrockJudgeModel(model_id=model_id)
    if meter is not None:
        model = MeteredJudgeModel(model, meter)
    return Judge(model, cache=cache, policy=policy, malformed_attempts=malformed_attempts)


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
    from evalgate.adapters.bedrock import TitanEmbedder

    options: dict[str, Any] = {} if max_workers is None else {"max_workers": max_workers}
    titan: Embedder = TitanEmbedder(model_id, **options) if model_id else TitanEmbedder(**options)
    return MeteredEmbedder(titan, meter) if meter is not None else titan


def meter_candidate(candidate: Candidate, meter: CostMeter | None, config: GateConfig) -> Candidate:
    """A live candidate behind the meter (priced as its model, else ``[models] generator``); a replay as is."""
    if meter is None or not getattr(candidate, "live", True):
        return candidate
    model_hint = getattr(candidate, "model_id", None) or config.models.generator
    max_out = int(getattr(candidate, "max_tokens", None) or config.models.max_tokens)
    return MeteredCandidate(candidate, meter, model_hint, max_out)


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
