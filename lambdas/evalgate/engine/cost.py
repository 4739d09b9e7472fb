"""Spend control: price every model call from ``gate.toml [pricing]`` and refuse the call that could cross
``--max-cost`` *before* it is made.

Each metered call first **reserves** a conservative estimate of its cost — input characters divided by
``[cost] chars_per_token`` (2 by default; English runs about 4 characters a token) priced as input, plus the
request's maximum output tokens priced as output — and is refused with ``BudgetExceeded`` when

    spent + reserved (calls in flight) + this estimate > cap

After the call the reservation is replaced by the call's actual cost (from the tokens the service reports).
Because an estimate bounds the call's real cost, the total spend never exceeds the cap, whatever the
concurrency. The first refusal stops the run: every later call is refused too, and the runner turns the
refusal into an ERROR verdict whose first reason names the cap.

The wrappers (``MeteredCandidate``, ``MeteredJudgeModel``, ``MeteredEmbedder``) put a meter in front of the
ports without the adapters knowing; a model with no price while a cap is set is refused (fail closed: a
call whose cost cannot be bounded cannot be allowed under a cap).
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from evalgate.core.config import GateConfig
from evalgate.core.errors import BudgetExceeded
from evalgate.core.models import Case, Generation, KnowledgeEntry
from evalgate.core.ports import Candidate, Embedder, JudgeCall, JudgeModel, ToolSpec

# A candidate we cannot inspect (HTTP endpoint, Lambda) adds a system prompt we do not see: allow this much.
SYSTEM_PROMPT_ALLOWANCE_CHARS = 4000
DEFAULT_JUDGE_MAX_TOKENS = 1024
GUARDRAIL_PRICE_KEY = "guardrail"  # [pricing.guardrail] input_per_1k = USD per 1,000 text units
GUARDRAIL_POLICIES = 6  # an ApplyGuardrail call is billed per text unit per configured policy (at most 6)


def call_cost(config: GateConfig, model_id: str | None, input_tokens: int, output_tokens: int) -> float:
    """USD for one call at the configured price (0 when the model has no price)."""
    price = config.price(model_id)
    if price is None:
        return 0.0
    return input_tokens / 1000 * price.input_per_1k + output_tokens / 1000 * price.output_per_1k


@dataclass
class Reservation:
    what: str
    model_id: str
    estimate: float
    settled: bool = False


class CostMeter:
    """Thread-safe spend tracker with an optional cap (``cap_usd=None``: track only, never refuse)."""

    def __init__(self, config: GateConfig, cap_usd: float | None = None, chars_per_token: float | None = None) -> None:
        if cap_usd is not None and cap_usd <= 0:
            raise ValueError("the cost cap must be positive")
        self.config = config
        self.cap_usd = cap_usd
        self.chars_per_token = chars_per_token or config.cost.chars_per_token
        self.spent_usd = 0.0
        self.reserved_usd = 0.0
        self.calls = 0
        self.refused = 0
        self.stop_reason: str | None = None
        self.overruns: list[str] = []  # calls whose actual cost exceeded their estimate (should never happen)
        self._lock = threading.Lock()

    @property
    def stopped(self) -> bool:
        return self.stop_reason is not None

    def tokens_for(self, chars: int) -> int:
        return math.ceil(chars / self.chars_per_token)

    def estimate(self, model_id: str, input_chars: int, max_output_tokens: int) -> float:
        """Upper estimate of one call's cost. Raises BudgetExceeded when a cap is set and the model is unpriced."""
        price = self.config.price(model_id)
        if price is None:
            if self.cap_usd is None:
                return 0.0
            raise self._stop(
                f"--max-cost ${self.cap_usd:.4f} cannot be enforced: model '{model_id}' has no price in gate.toml "
                "[pricing]; stopped before calling it"
            )
        return call_cost(self.config, model_id, self.tokens_for(input_chars), max_output_tokens)

    def reserve(self, what: str, model_id: str, input_chars: int, max_output_tokens: int) -> Reservation:
        """Reserve the estimated cost of the next call, or raise BudgetExceeded (and stop the run)."""
        with self._lock:
            if self.stop_reason is not None:
                self.refused += 1
                raise BudgetExceeded(self.stop_reason)
        return self.reserve_usd(what, model_id, self.estimate(model_id, input_chars, max_output_tokens))

    def reserve_usd(self, what: str, model_id: str, estimate_usd: float) -> Reservation:
        """Reserve an already estimated cost (see ``reserve``)."""
        with self._lock:
            if self.stop_reason is not None:
                self.refused += 1
                raise BudgetExceeded(self.stop_reason)
            if self.cap_usd is not None and self.spent_usd + self.reserved_usd + estimate_usd > self.cap_usd:
                self.refused += 1
                self.stop_reason = (
                    f"--max-cost ${self.cap_usd:.4f} reached: the next call ({what}, estimated at most "
                    f"${estimate_usd:.4f}) on top of ${self.spent_usd:.4f} spent and ${self.reserved_usd:.4f} in "
                    "flight could exceed it, so the run stopped before making it"
                )
                raise BudgetExceeded(self.stop_reason)
            self.reserved_usd += estimate_usd
            return Reservation(what=what, model_id=model_id, estimate=estimate_usd)

    def settle(self, r: Reservation, actual_usd: float | None) -> None:
        """Replace the reservation by the actual cost (``None``: the call failed before costing anything known,
        so the estimate is kept as spent — conservative)."""
        with self._lock:
            if r.settled:
                return
            r.settled = True
            self.reserved_usd = max(0.0, self.reserved_usd - r.estimate)
            cost = r.estimate if actual_usd is None else actual_usd
            if actual_usd is not None and actual_usd > r.estimate + 1e-12:
                self.overruns.append(f"{r.what}: actual ${actual_usd:.6f} > estimate ${r.estimate:.6f}")
            self.spent_usd += cost
            self.calls += 1

    def release(self, r: Reservation) -> None:
        """The call was refused by the service before doing work (throttled): nothing was spent."""
        with self._lock:
            if not r.settled:
                r.settled = True
                self.reserved_usd = max(0.0, self.reserved_usd - r.estimate)

    def _stop(self, reason: str) -> BudgetExceeded:
        with self._lock:
            if self.stop_reason is None:
                self.stop_reason = reason
            self.refused += 1
        return BudgetExceeded(reason)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "cap_usd": self.cap_usd,
                "spent_usd": round(self.spent_usd, 6),
                "in_flight_usd": round(self.reserved_usd, 6),
                "metered_calls": self.calls,
                "refused_calls": self.refused,
                "stopped": self.stop_reason is not None,
                "reason": self.stop_reason,
                "chars_per_token": self.chars_per_token,
                "overruns": list(self.overruns),
            }


def _guarded(meter: CostMeter, r: Reservation, call: Callable[[], Any], cost_of: Callable[[Any], float]) -> Any:
    from evalgate.core.errors import ThrottledError

    try:
        out = call()
    except ThrottledError:
        meter.release(r)  # refused for capacity: not billed
        raise
    except BaseException:
        meter.settle(r, None)  # unknown: count the estimate
        raise
    meter.settle(r, cost_of(out))
    return out


class MeteredCandidate:
    """A live candidate behind a cost meter. Attributes not defined here come from the wrapped candidate."""

    def __init__(self, inner: Candidate, meter: CostMeter, model_id: str, max_output_tokens: int) -> None:
        self._inner = inner
        self._meter = meter
        self._model_id = model_id
        self._max_out = max_output_tokens
        self.name = inner.name
        self.live = inner.live

    def __getattr__(self, item: str) -> Any:
        return getattr(self._inner, item)

    def identity(self) -> dict[str, Any]:
        return self._inner.identity()

    def input_chars(self, case: Case, knowledge: list[KnowledgeEntry]) -> int:
        request = getattr(self._inner, "request", None)
        if callable(request):  # Bedrock: the exact request that will be sent
            return len(json.dumps(request(case, knowledge), ensure_ascii=False))
        chars = sum(len(t.content) for t in case.turns) + sum(len(k.text) + len(k.title) for k in knowledge)
        return chars + len(case.untrusted_context or "") + SYSTEM_PROMPT_ALLOWANCE_CHARS

    def generate(self, case: Case, knowledge: list[KnowledgeEntry], repeat: int) -> Generation:
        r = self._meter.reserve(
            f"candidate {self._model_id} on {case.id}", self._model_id, self.input_chars(case, knowledge), self._max_out
        )

        def cost(g: Generation) -> float:
            model = g.model_id or self._model_id
            return call_cost(self._meter.config, model, g.input_tokens or 0, g.output_tokens or 0)

        result: Generation = _guarded(self._meter, r, lambda: self._inner.generate(case, knowledge, repeat), cost)
        return result


class MeteredJudgeModel:
    """A judge model behind a cost meter."""

    def __init__(self, inner: JudgeModel, meter: CostMeter) -> None:
        self._inner = inner
        self._meter = meter
        self.model_id = inner.model_id

    def __getattr__(self, item: str) -> Any:
        return getattr(self._inner, item)

    def call(self, system: str, user: str, tool: ToolSpec) -> JudgeCall:
        chars = len(system) + len(user) + len(json.dumps(tool.schema)) + len(tool.description)
        max_out = int(getattr(self._inner, "max_tokens", DEFAULT_JUDGE_MAX_TOKENS) or DEFAULT_JUDGE_MAX_TOKENS)
        r = self._meter.reserve(f"judge {self.model_id}", self.model_id, chars, max_out)

        def cost(c: JudgeCall) -> float:
            return call_cost(self._meter.config, self.model_id, c.input_tokens, c.output_tokens)

        result: JudgeCall = _guarded(self._meter, r, lambda: self._inner.call(system, user, tool), cost)
        return result


class MeteredEmbedder:
    """A remote (priced) embedder behind a cost meter; each text is one InvokeModel call."""

    def __init__(self, inner: Embedder, meter: CostMeter) -> None:
        self._inner = inner
        self._meter = meter
        self.name = inner.name
        self.model_id = inner.model_id

    def __getattr__(self, item: str) -> Any:
        return getattr(self._inner, item)

    def embed(self, texts: list[str]) -> list[list[float]]:
        chars = sum(len(t) for t in dict.fromkeys(texts))
        r = self._meter.reserve(f"embeddings {self.model_id} ({len(texts)} texts)", self.model_id, chars, 0)
        before = getattr(self._inner, "input_tokens", None)

        def cost(_: Any) -> float:
            after = getattr(self._inner, "input_tokens", None)
            if isinstance(before, int) and isinstance(after, int) and after >= before:
                # Concurrent calls share the counter, so the delta may include theirs: cap it at the estimate.
                return min(r.estimate, call_cost(self._meter.config, self.model_id, after - before, 0))
            return r.estimate

        result: list[list[float]] = _guarded(self._meter, r, lambda: self._inner.embed(texts), cost)
        return result


def guardrail_estimate_units(texts: Sequence[str]) -> int:
    """Text units an ApplyGuardrail call may bill: one per started 1,000 characters, per policy."""
    return sum(max(1, math.ceil(len(t) / 1000)) for t in texts) * GUARDRAIL_POLICIES
