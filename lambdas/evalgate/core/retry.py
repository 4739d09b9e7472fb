"""The one retry policy: every remote model call of a run goes through ``RetryPolicy.call``.

Generation (Bedrock, HTTP, Lambda candidates), the judge, embeddings and ApplyGuardrail share one policy per
run, so they share one view of the service's capacity; the GitHub client (``adapters.github``) retries its rate
limits and 5xx with a policy of its own per request (one call in flight). The policy has three parts:

- **Bounded, adaptive concurrency (AIMD).** At most ``limit`` calls are in flight (``limit`` starts at the
  run's ``--concurrency``). A throttled call cuts the limit by ``decrease`` — at most once per latency window
  (the smoothed latency of recent successful calls, TCP's "one reaction per round trip"), so a burst of 429s
  from one window is one signal, not sixteen — and never below ``floor`` while the run has time left. Each
  successful call adds ``1 / limit`` (about one slot per window of successes), back up to the maximum.
  Waiting callers take a freed slot in priority order (judge, embedding and guardrail calls before new
  generation), so an answer's judgement starts as soon as a slot frees.
- **Exponential back-off with full jitter** (sleep a uniform random time in ``[0, min(max_delay,
  base_delay * 2**n))``), at least the ``Retry-After`` the service sent. A call sleeps without holding a slot.
- **Give up only when it is pointless**: when the error is not retryable (validation, access, a function
  error...), when the next attempt could not start before the run's deadline (``--time-budget``), or when the
  cost meter refuses the next attempt (``BudgetExceeded`` propagates). Every given-up call is counted per
  model with its last error; the runner turns them into an ERROR verdict naming model, error and count.

Retryable: ``ThrottledError`` (429 / capacity: also signals the limiter) and ``TransientError`` (5xx, model
timeouts, dropped connections: retried without cutting concurrency). botocore's own retries are off for these
clients (``providers.aws.model_client_settings``), so nothing else retries a model call.

The clock, sleep and random source are injectable, so the rules are tested with a fake clock.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from evalgate.core.errors import ProviderError, ThrottledError, TransientError

T = TypeVar("T")

# Priorities (lower first): an answer's follow-up calls go before new answers.
FOLLOW_UP = 0  # judge, embedding, guardrail
GENERATE = 1

DEFAULT_TIME_BUDGET_S = 1800.0  # a run that cannot finish in 30 minutes is an ERROR, not a hang
DEFAULT_FLOOR_FRACTION = 0.5
DEFAULT_DECREASE = 0.7  # multiplicative decrease per window (CUBIC's beta)
DEFAULT_BASE_DELAY_S = 0.1
# Back-off cap. Under a sustained quota the limiter, not the sleep, keeps the load down; a cap of seconds lets
# every sleeping call miss the quota's refills (fault bench: a 10 s cap reached 0.77 of the quota bound, 1 s 0.9).
DEFAULT_MAX_DELAY_S = 1.0
# Attempts per judgement when the judge's reply is unparseable (the first included), then unscored; gate.toml
# [models] judge_malformed_attempts overrides it. Chosen from bench/bench_faults.py (README "Resilience").
DEFAULT_MALFORMED_ATTEMPTS = 3
INITIAL_WINDOW_S = 1.0  # the latency window before any call has succeeded
MIN_WINDOW_S = 0.02


class GaveUp(ProviderError):
    """A call the policy stopped retrying: ``model`` and ``attempts`` say which and how often it was tried."""

    def __init__(self, message: str, *, model: str, attempts: int, last: Exception) -> None:
        super().__init__(message)
        self.model = model
        self.attempts = attempts
        self.last = last


def retryable(exc: BaseException) -> bool:
    return isinstance(exc, (ThrottledError, TransientError))


@dataclass
class ModelFaults:
    """What happened to one model's calls in a run (reported per model in results.json and summary.md)."""

    calls: int = 0  # attempts sent
    succeeded: int = 0
    throttles: int = 0  # attempts refused for capacity
    transient: int = 0  # attempts that failed retryably otherwise (5xx, timeouts)
    retries: int = 0  # attempts after the first, for any reason
    gave_up: int = 0  # calls given up (not retryable, or the time budget would be crossed)
    last_error: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "succeeded": self.succeeded,
            "throttles": self.throttles,
            "transient_errors": self.transient,
            "retries": self.retries,
            "gave_up": self.gave_up,
            "last_error": self.last_error,
        }


@dataclass
class _Limiter:
    maximum: int
    floor: int
    decrease: float
    clock: Callable[[], float]
    limit: float = 0.0
    active: int = 0
    lowest: float = 0.0
    decreases: int = 0
    last_decrease: float = -math.inf
    rtt: float | None = None  # smoothed latency of successful calls
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Waiting callers as [priority, arrival, event]; a freed slot is handed to the first one (one wake-up per
    # slot, not a stampede of every waiter).
    waiting: list[list[Any]] = field(default_factory=list)
    seq: itertools.count[int] = field(default_factory=itertools.count)

    def __post_init__(self) -> None:
        self.limit = self.lowest = float(self.maximum)

    @property
    def window(self) -> float:
        return INITIAL_WINDOW_S if self.rtt is None else max(MIN_WINDOW_S, self.rtt)

    def _grant(self) -> None:
        """Under the lock: hand free slots to the first waiters."""
        while self.waiting and self.active < int(self.limit):
            entry = heapq.heappop(self.waiting)
            self.active += 1
            entry[2].set()

    def on_success(self, latency: float) -> None:
        with self.lock:
            self.rtt = latency if self.rtt is None else 0.8 * self.rtt + 0.2 * latency
            self.limit = min(float(self.maximum), self.limit + 1.0 / max(self.limit, 1.0))
            self._grant()

    def on_throttle(self) -> bool:
        """Cut the limit unless it was cut less than one latency window ago. True when it was cut."""
        with self.lock:
            now = self.clock()
            if now - self.last_decrease < self.window:
                return False
            self.last_decrease = now
            self.limit = max(float(self.floor), self.limit * self.decrease)
            self.lowest = min(self.lowest, self.limit)
            self.decreases += 1
            return True

    def acquire(self, priority: int, deadline: float | None) -> bool:
        """Take a slot, in priority order then arrival order. False when the deadline passed while waiting."""
        with self.lock:
            if deadline is not None and self.clock() >= deadline:
                return False
            if not self.waiting and self.active < int(self.limit):
                self.active += 1
                return True
            entry: list[Any] = [priority, next(self.seq), threading.Event()]
            heapq.heappush(self.waiting, entry)
        remaining = None if deadline is None else max(0.0, deadline - self.clock())
        if entry[2].wait(remaining):
            return True
        with self.lock:
            if entry[2].is_set():  # granted just as the wait ran out
                return True
            self.waiting.remove(entry)
            heapq.heapify(self.waiting)
            return False

    def release(self) -> None:
        with self.lock:
            self.active -= 1
            self._grant()


class RetryPolicy:
    """One per run (thread-safe). ``call(fn, model=..., priority=...)`` runs ``fn`` under the rules above.

    ``time_budget`` (seconds from now; ``None``: no deadline) or ``deadline`` (absolute, on ``clock``) bounds
    the retries; ``floor`` defaults to half of ``max_concurrency``."""

    def __init__(
        self,
        max_concurrency: int = 16,
        *,
        time_budget: float | None = DEFAULT_TIME_BUDGET_S,
        deadline: float | None = None,
        floor: int | None = None,
        decrease: float = DEFAULT_DECREASE,
        base_delay: float = DEFAULT_BASE_DELAY_S,
        max_delay: float = DEFAULT_MAX_DELAY_S,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        if deadline is None and time_budget is not None and time_budget <= 0:
            raise ValueError("the time budget must be positive")
        if not 0 < decrease < 1:
            raise ValueError("decrease must be between 0 and 1")
        floor = floor if floor is not None else math.ceil(max_concurrency * DEFAULT_FLOOR_FRACTION)
        if not 1 <= floor <= max_concurrency:
            raise ValueError(f"floor must be between 1 and {max_concurrency}")
        self.max_concurrency = max_concurrency
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._rng_lock = threading.Lock()
        if deadline is not None:  # an absolute deadline on ``clock`` (a hook's remaining invocation time)
            time_budget = deadline - clock()
        self.deadline = None if time_budget is None else clock() + time_budget
        self.time_budget = time_budget
        self._limiter = _Limiter(max_concurrency, floor, decrease, clock)
        self._lock = threading.Lock()
        self.faults: dict[str, ModelFaults] = {}

    # -- observations
    @property
    def limit(self) -> int:
        return int(self._limiter.limit)

    @property
    def in_flight(self) -> int:
        """Calls holding a slot now."""
        return self._limiter.active

    @property
    def floor(self) -> int:
        return self._limiter.floor

    @property
    def retries(self) -> int:
        with self._lock:
            return sum(f.retries for f in self.faults.values())

    def time_left(self) -> float | None:
        return None if self.deadline is None else self.deadline - self._clock()

    def expired(self) -> bool:
        left = self.time_left()
        return left is not None and left <= 0

    def set_time_budget(self, seconds: float) -> None:
        """Restart the deadline (a long-lived process, e.g. a Lambda, sets it per invocation)."""
        self.time_budget = seconds
        self.deadline = self._clock() + seconds

    def snapshot(self) -> dict[str, Any]:
        lim = self._limiter
        with self._lock:
            models = {m: f.to_dict() for m, f in sorted(self.faults.items())}
        return {
            "concurrency": {
                "max": lim.maximum,
                "floor": lim.floor,
                "final": int(lim.limit),
                "lowest": int(lim.lowest),
                "decreases": lim.decreases,
            },
            "time_budget_s": self.time_budget,
            "models": models,
        }

    def gave_up(self) -> list[str]:
        """One line per model with given-up calls: model, count and the last error (for the run's ERROR)."""
        with self._lock:
            return [
                f"{model}: gave up on {f.gave_up} call(s): {f.last_error}"
                for model, f in sorted(self.faults.items())
                if f.gave_up
            ]

    # -- the rule
    def backoff(self, attempt: int, retry_after: float | None) -> float:
        """Full jitter: uniform in [0, min(max_delay, base * 2**attempt)), at least Retry-After."""
        cap = min(self.max_delay, self.base_delay * (2 ** min(attempt, 30)))
        with self._rng_lock:
            delay = self._rng.uniform(0.0, cap)
        return max(delay, retry_after or 0.0)

    def _stats(self, model: str) -> ModelFaults:
        with self._lock:
            return self.faults.setdefault(model, ModelFaults())

    def _give_up(self, model: str, attempts: int, exc: Exception, why: str) -> GaveUp:
        message = f"{why}: {exc}" if why else str(exc)
        with self._lock:
            f = self.faults.setdefault(model, ModelFaults())
            f.gave_up += 1
            f.last_error = message
        return GaveUp(
            f"{model}: gave up after {attempts} attempt(s): {message}", model=model, attempts=attempts, last=exc
        )

    def call(self, fn: Callable[[], T], *, model: str, priority: int = FOLLOW_UP) -> T:
        """Run ``fn`` with retries. Raises ``GaveUp`` (a ProviderError) when it stops retrying; anything that is
        not a ``ProviderError`` (``BudgetExceeded`` included) propagates on the first occurrence."""
        stats = self._stats(model)
        attempt = 0
        while True:
            if not self._limiter.acquire(priority, self.deadline):
                raise self._give_up(model, attempt, ProviderError("no slot before the deadline"), self._budget_note())
            started = self._clock()
            try:
                with self._lock:
                    stats.calls += 1
                    stats.retries += attempt > 0
                result = fn()
            except ProviderError as exc:
                self._limiter.release()
                attempt += 1
                if isinstance(exc, ThrottledError):
                    with self._lock:
                        stats.throttles += 1
                    self._limiter.on_throttle()
                elif isinstance(exc, TransientError):
                    with self._lock:
                        stats.transient += 1
                else:
                    raise self._give_up(model, attempt, exc, "not retryable") from exc
                delay = self.backoff(attempt - 1, exc.retry_after)
                left = self.time_left()
                if left is not None and delay >= left:
                    raise self._give_up(model, attempt, exc, self._budget_note()) from exc
                self._sleep(delay)
                continue
            except BaseException:
                self._limiter.release()
                raise
            self._limiter.release()
            self._limiter.on_success(self._clock() - started)
            with self._lock:
                stats.succeeded += 1
            return result

    def _budget_note(self) -> str:
        return f"the time budget ({self.time_budget:g} s) would be crossed" if self.time_budget else "deadline"
