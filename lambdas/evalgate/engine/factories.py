"""The one composition root for what an evaluation calls: judges, embedders, and the cost meter in front of them
and of the candidate. The CLI, the deployment hooks, the online judge and judge calibration build them here, so a
judge is made (and metered, cached, retried) the same way wherever it runs. Candidates from a ``--candidate`` /
``--target`` spec are the CLI's (``evalgate.cli.common.make_candidate``): a Lambda that imports this module does
not ship the HTTP or replay adapters.

Adapters are imported inside the functions: an offline run never loads boto3's Bedrock clients.
"""

from __future__ import annotations

from typing import Any

from evalgate.core.config import GateConfig
from evalgate.core.ports import Candidate, Embedder
from evalgate.core.retry import DEFAULT_MALFORMED_ATTEMPTS, RetryPolicy
from evalgate.engine.cache import Cache
from evalgate.engine.cost import CostMeter, MeteredCandidate, MeteredEmbedder, MeteredJudgeModel
from evalgate.engine.judge import Judge


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


def make_titan_embedder(
    model_id: str | None = None, *, max_workers: int | None = None, meter: CostMeter | None = None
) -> Embedder:
    """Titan embeddings on Bedrock (``model_id``, else Titan v2), metered when a meter is given. The local MiniLM
    is the CLI's (``evalgate.cli.common.make_embedder``): no Lambda ships it."""
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
