"""``evalgate load``: an open-loop load test with a latency gate.

**Open loop.** Arrival times are drawn up front — Poisson (exponential gaps) or fixed intervals at the
offered rate — and each request is fired at its scheduled time whatever happened to earlier ones: a slow
response never delays the next send, so the offered rate is what was asked for (no coordinated omission).
Requests run on a bounded worker pool sized by Little's law for the rate (``rate x max(4 x SLO, 1 s)`` with
headroom, capped by ``max_workers``). A request that cannot *start* within ``late_tolerance_ms`` of its
scheduled time (every worker busy) is not sent: it is counted as **late/dropped** and reported.

**Which latency.** Both are measured from a request's *scheduled* send time (so any delay in starting it
counts against the system, never hides):

- **time to first token (TTFT)**: the start delay plus the TTFT the target reports for its own call (the
  Bedrock target streams with ConverseStream and times the first text delta; an HTTP or Lambda target reads
  ``latency.ttft_ms`` of the answer document, docs/CONTRACTS.md);
- **total answer time**: to the complete response, as the client sees it. Service time (from the actual send)
  is reported alongside. Timed-out requests enter the distribution at their elapsed time (a lower bound of
  their latency) and are counted as timeouts.

**The gate** (``gate.toml [load]``, flags override; the rules live in ``evalgate.core.latency``):

- FAIL (exit 1): p95 TTFT above the SLO, or p95 total answer time above the baseline's p95 plus the tolerated
  regression (``--baseline``: a previous load run's results.json; +X ms or +Y%, whichever is reached first)
  (point estimates; with ``[gate] decision = "lower_bound"`` the upper end of the bootstrap interval), or
  throttles above ``max_throttle_rate`` (not enough capacity at this rate);
- ERROR (exit 4): errors above ``max_error_rate``, fewer than ``min_samples`` completed requests, an SLO
  with no TTFT reported by the target, or — when
  the latency did not already fail — more than ``max_late_rate`` of requests dropped as late (the generator
  could not hold the schedule, so a pass would not be trustworthy);
- PASS otherwise. Percentiles p50/p95/p99 carry bootstrap intervals (``evalgate.core.stats.quantile_interval``).

**Bounded**: the schedule holds at most ``max_requests`` requests and lasts at most ``max_duration_s``; every
request has a timeout, and the run ends at ``duration + timeout + 5 s`` at the latest.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from evalgate.core.config import GateConfig
from evalgate.core.dataset import Golden
from evalgate.core.errors import InputError, Problem, ProviderError, ThrottledError
from evalgate.core.gate import interval_aggregate, ladder, latency_aggregates, latency_reasons
from evalgate.core.latency import LatencyBudget
from evalgate.core.models import Case, MetricValue
from evalgate.core.ports import Candidate
from evalgate.core.results import Aggregate, CaseResult, RunResult, load_result, run_identity
from evalgate.core.stats import quantile, wilson

Status = Literal["pending", "ok", "error", "throttled", "timeout", "dropped"]
LATENCY_DEFINITION = (
    "from each request's scheduled send time (open loop: includes any start delay, so slow responses cannot "
    "hide by delaying later sends): time to first token = start delay + the TTFT the target reports; total "
    "answer time = to the complete response as the client sees it"
)
START_LEAD_S = 0.05
GRACE_S = 5.0


@dataclass
class RequestRecord:
    index: int
    case_id: str
    scheduled_s: float  # offset from the start of the schedule
    started_s: float | None = None
    finished_s: float | None = None
    status: Status = "pending"
    error: str = ""
    target_ttft_ms: float | None = None  # TTFT the target reported, from its own send

    @property
    def ttft_ms(self) -> float | None:
        """Time to first token from the scheduled send time (start delay + the target's TTFT)."""
        if self.status != "ok" or self.target_ttft_ms is None or self.started_s is None:
            return None
        return (self.started_s - self.scheduled_s) * 1000.0 + self.target_ttft_ms

    @property
    def latency_ms(self) -> float | None:
        """End-to-end latency from the scheduled send time (the gated latency)."""
        if self.finished_s is None or self.status not in ("ok", "timeout"):
            return None
        return (self.finished_s - self.scheduled_s) * 1000.0

    @property
    def service_ms(self) -> float | None:
        if self.finished_s is None or self.started_s is None or self.status not in ("ok", "timeout"):
            return None
        return (self.finished_s - self.started_s) * 1000.0

    @property
    def start_lag_ms(self) -> float | None:
        return None if self.started_s is None else (self.started_s - self.scheduled_s) * 1000.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "i": self.index,
            "case": self.case_id,
            "scheduled_ms": round(self.scheduled_s * 1000, 3),
            "start_lag_ms": None if self.start_lag_ms is None else round(self.start_lag_ms, 3),
            "ttft_ms": None if self.ttft_ms is None else round(self.ttft_ms, 3),
            "latency_ms": None if self.latency_ms is None else round(self.latency_ms, 3),
            "service_ms": None if self.service_ms is None else round(self.service_ms, 3),
            "status": self.status,
            "error": self.error,
        }


@dataclass(frozen=True)
class LoadPlan:
    rate: float  # requests per second offered
    duration_s: float
    arrival: Literal["poisson", "fixed"]
    budget: LatencyBudget
    timeout_s: float
    late_tolerance_s: float
    workers: int
    seed: int
    peak_rps: float | None = None
    factor: float | None = None
    baseline_p95_ms: float | None = None  # p95 total answer time of the baseline run (None: total not gated)
    baseline_run: str | None = None


def arrival_offsets(rate: float, duration_s: float, kind: str, seed: int) -> list[float]:
    """Scheduled send times (seconds from the start) of an open-loop schedule."""
    if rate <= 0 or duration_s <= 0:
        raise ValueError("rate and duration must be positive")
    if kind == "fixed":
        n = math.floor(rate * duration_s + 1e-9)
        return [i / rate for i in range(n)]
    if kind != "poisson":
        raise ValueError(f"unknown arrival process {kind!r}")
    rng = random.Random(seed)
    out: list[float] = []
    t = rng.expovariate(rate)
    while t < duration_s:
        out.append(t)
        t += rng.expovariate(rate)
    return out


def pool_size(rate: float, latency_ms: float, max_workers: int) -> int:
    """Workers for ``rate`` by Little's law (concurrency = rate x latency) at ``latency_ms`` (at least 1 s), with
    50% headroom; at least 4, at most ``max_workers``."""
    need = math.ceil(rate * max(latency_ms / 1000.0, 1.0) * 1.5) + 4
    return max(1, min(max_workers, max(4, need)))


def expected_requests(rate: float, duration_s: float) -> int:
    return math.floor(rate * duration_s + 1e-9)


def check_bounds(rate: float, duration_s: float, max_requests: int, max_duration_s: float) -> None:
    problems = []
    if rate <= 0:
        problems.append("--rps must be positive")
    if duration_s <= 0:
        problems.append("--duration must be positive")
    elif duration_s > max_duration_s:
        problems.append(f"--duration {duration_s:g}s is above the limit of {max_duration_s:g}s ([load] max_duration_s)")
    if rate > 0 and duration_s > 0:
        n = expected_requests(rate, duration_s)
        # Poisson counts vary: allow ~4 standard deviations above the mean.
        bound = n + 4 * math.sqrt(max(n, 1))
        if bound > max_requests:
            problems.append(
                f"{rate:g} rps for {duration_s:g}s is about {n} requests; the limit is {max_requests} "
                "([load] max_requests or --max-requests)"
            )
        if n < 1:
            problems.append(f"{rate:g} rps for {duration_s:g}s schedules no request")
    if problems:
        raise InputError([Problem("evalgate load", None, p) for p in problems])


class LoadGenerator:
    """Fires requests at their scheduled times on a bounded pool; records every request's outcome."""

    def __init__(
        self,
        target: Candidate,
        golden: Golden,
        cases: Sequence[Case],
        plan: LoadPlan,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not cases:
            raise ValueError("no prompts to send")
        self.target = target
        self.golden = golden
        self.cases = list(cases)
        self.plan = plan
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0

    def schedule(self) -> list[RequestRecord]:
        offsets = arrival_offsets(self.plan.rate, self.plan.duration_s, self.plan.arrival, self.plan.seed)
        order = list(self.cases)
        random.Random(self.plan.seed + 1).shuffle(order)
        return [RequestRecord(i, order[i % len(order)].id, off) for i, off in enumerate(offsets)]

    def run(self) -> list[RequestRecord]:
        records = self.schedule()
        by_id = {c.id: c for c in self.cases}
        pool = ThreadPoolExecutor(max_workers=self.plan.workers, thread_name_prefix="load")
        futures: list[Future[None]] = []
        t0 = self._clock() + START_LEAD_S

        closed = threading.Event()  # set at the hard deadline: late finishers no longer touch the records

        def fire(rec: RequestRecord) -> None:
            start = self._clock()
            if start - (t0 + rec.scheduled_s) > self.plan.late_tolerance_s:
                rec.status = "dropped"
                rec.error = f"could not start within {self.plan.late_tolerance_s * 1000:g} ms of its scheduled time"
                return
            rec.started_s = start - t0
            with self._lock:
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
            case = by_id[rec.case_id]
            status: Status = "ok"
            error = ""
            ttft: float | None = None
            try:
                ttft = self.target.generate(case, self.golden.knowledge_for(case), rec.index).ttft_ms
            except ThrottledError as exc:
                status, error = "throttled", str(exc)[:300]
            except ProviderError as exc:
                msg = str(exc)
                status = "timeout" if "timed out" in msg.lower() else "error"
                error = msg[:300]
            except Exception as exc:  # an adapter bug must not kill the schedule
                status, error = "error", f"{type(exc).__name__}: {exc}"[:300]
            finally:
                finished = self._clock() - t0
                with self._lock:
                    self.in_flight -= 1
                    if not closed.is_set():
                        rec.finished_s, rec.status, rec.error = finished, status, error
                        rec.target_ttft_ms = ttft

        hard_deadline = t0 + self.plan.duration_s + self.plan.timeout_s + GRACE_S
        try:
            for rec in records:
                due = t0 + rec.scheduled_s
                now = self._clock()
                if due > now:
                    self._sleep(due - now)
                futures.append(pool.submit(fire, rec))  # never waits for a response: open loop
            wait(futures, timeout=max(0.0, hard_deadline - self._clock()))
        finally:
            with self._lock:
                closed.set()
            pool.shutdown(wait=False, cancel_futures=True)
        for rec in records:
            if rec.status == "pending":
                rec.status = "error" if rec.started_s is not None else "dropped"
                rec.error = rec.error or "still running at the run's hard deadline"
        return records


def _rate_aggregate(name: str, count: int, n: int, limit: float | None, config: GateConfig, note: str) -> Aggregate:
    """A rate against its ``[load]`` limit by the gate's rule: above the limit fails (the limits bound the observed
    rate, whatever ``[gate] decision``), an interval reaching across it is borderline."""
    iv = wilson(count, n, config.gate.confidence)
    direction: Literal["max"] | None = "max" if limit is not None else None
    return interval_aggregate(name, "load", iv, "wilson", limit, direction, "point", note=note)


def _pass_reason(ttft: Aggregate | None, total: Aggregate, plan: LoadPlan, n_sent: int) -> str:
    parts = []
    if ttft is not None and ttft.value is not None:
        slo = f" (SLO {plan.budget.ttft_slo_ms:g} ms)" if plan.budget.ttft_slo_ms is not None else ""
        parts.append(f"p95 time to first token {ttft.value:.0f} ms{slo}")
    if total.value is not None:
        limit = f" (limit {total.threshold:.0f} ms vs the baseline)" if total.threshold is not None else ""
        parts.append(f"p95 total answer time {total.value:.0f} ms{limit}")
    if not parts:
        return "no latency measured"
    return "; ".join(parts) + f" at {plan.rate:g} rps ({n_sent} requests)"


def baseline_total_p95(path: Any) -> tuple[float, str]:
    """The p95 total answer time of a previous load run (its results.json) and that run's id."""
    from pathlib import Path

    p = Path(path)
    previous = load_result(p, "--baseline load run's results.json")
    if previous.tier != "load":
        raise InputError.single(
            str(p), None, f"--baseline: a load run's results.json is needed, not tier {previous.tier!r}"
        )
    agg = next((a for a in previous.aggregates if a.metric == "p95_latency_ms" and a.value is not None), None)
    if agg is None or agg.value is None:
        raise InputError.single(str(p), None, "--baseline: the run has no p95_latency_ms to compare with")
    return float(agg.value), previous.run_id


def summarise(
    records: Sequence[RequestRecord],
    plan: LoadPlan,
    config: GateConfig,
    target: Candidate,
    cases: Sequence[Case],
    started: datetime,
    max_in_flight: int = 0,
) -> RunResult:
    """The load test as a RunResult: aggregates (p50/p95/p99 with intervals, error/throttle/late rates),
    one case per prompt, the verdict, and the run details in ``load``."""
    lc = config.load
    scheduled = len(records)
    sent = [r for r in records if r.status != "dropped"]
    ok = [r for r in records if r.status == "ok"]
    timeouts = [r for r in records if r.status == "timeout"]
    errors = [r for r in records if r.status == "error"]
    throttled = [r for r in records if r.status == "throttled"]
    dropped = [r for r in records if r.status == "dropped"]
    lat = [v for r in ok + timeouts if (v := r.latency_ms) is not None]
    ttft = [v for r in ok if (v := r.ttft_ms) is not None]
    service = [v for r in ok + timeouts if (v := r.service_ms) is not None]
    lags = [v for r in sent if (v := r.start_lag_ms) is not None]
    n_sent = len(sent)

    how = "from the scheduled send (ms)"
    aggregates = [
        *latency_aggregates("load", ttft, lat, plan.budget, plan.baseline_p95_ms, config, how),
        _rate_aggregate("error_rate", len(errors), n_sent, lc.max_error_rate, config, "errors among sent requests"),
        _rate_aggregate(
            "throttle_rate", len(throttled), n_sent, lc.max_throttle_rate, config, "HTTP 429/503 or throttling"
        ),
        _rate_aggregate(
            "late_rate", len(dropped), scheduled, lc.max_late_rate, config, "requests that could not start on time"
        ),
        _rate_aggregate("timeout_rate", len(timeouts), n_sent, None, config, f"requests over {plan.timeout_s:g}s"),
    ]
    aggs = {a.metric: a for a in aggregates}
    p95 = aggs["p95_latency_ms"]
    p95_ttft = aggs.get("p95_ttft_ms")
    latency_failed = p95.status == "fail" or (p95_ttft is not None and p95_ttft.status == "fail")

    fails: list[str] = [f"{why}, at {plan.rate:g} rps" for why in latency_reasons(aggregates, plan.budget)]
    errs: list[str] = []
    if p95_ttft is not None and p95_ttft.status == "insufficient" and ok:
        errs.append(
            f"the SLO is on time to first token, but {target.name} reported none for {len(ok)} successful "
            "requests (an HTTP/Lambda target must return 'latency.ttft_ms', docs/CONTRACTS.md)"
        )
    tr = aggs["throttle_rate"]
    if tr.status == "fail" and tr.value is not None:
        fails.append(
            f"throttled {len(throttled)} of {n_sent} requests ({tr.value:.1%} > {lc.max_throttle_rate:.1%}): "
            f"not enough capacity at {plan.rate:g} rps"
        )
    er = aggs["error_rate"]
    if er.status == "fail" and er.value is not None:
        sample = f" (e.g. {errors[0].error})" if errors else ""
        errs.append(f"{len(errors)} of {n_sent} requests failed ({er.value:.1%} > {lc.max_error_rate:.1%}){sample}")
    if len(lat) < lc.min_samples:
        errs.append(f"only {len(lat)} completed requests (minimum {lc.min_samples}): cannot judge the latency")
    lr = aggs["late_rate"]
    if lr.status == "fail" and lr.value is not None and not latency_failed:
        errs.append(
            f"{len(dropped)} of {scheduled} requests could not start within {plan.late_tolerance_s * 1000:g} ms of "
            f"their schedule ({lr.value:.1%} > {lc.max_late_rate:.1%}, {plan.workers} workers): the offered rate was "
            "not held, so the latency cannot be trusted"
        )
    verdict = ladder(errs, fails, [], [_pass_reason(p95_ttft, p95, plan, n_sent)], aggregates)

    per_case: list[CaseResult] = []
    for c in cases:
        mine = [r for r in records if r.case_id == c.id]
        if not mine:
            continue
        good = [v for r in mine if r.status == "ok" and (v := r.latency_ms) is not None]
        bad = [r for r in mine if r.status in ("error", "throttled", "timeout")]
        cr = CaseResult(
            id=c.id,
            suite="load",
            category=c.category,
            tags=list(c.tags),
            expected=c.expected.value,
            question=c.question,
            latency_ms=quantile(good, 0.5) if good else None,
            metrics={
                "failed_requests": MetricValue(
                    name="failed_requests",
                    value=len(bad) / len(mine),
                    reason=f"{len(bad)} of {len(mine)} requests failed, throttled or timed out",
                )
            },
        )
        if not good:
            cr.status = "error"
            cr.failures = [f"no request for this prompt succeeded: {bad[0].error if bad else 'all dropped'}"]
        per_case.append(cr)

    elapsed = [r.started_s for r in sent if r.started_s is not None]
    span = (max(elapsed) - min(elapsed)) if len(elapsed) > 1 else 0.0
    load = {
        "target": {"name": target.name, **target.identity()},
        "latency": LATENCY_DEFINITION,
        "offered_rps": plan.rate,
        "peak_rps": plan.peak_rps,
        "factor": plan.factor,
        "duration_s": plan.duration_s,
        "arrival": plan.arrival,
        "seed": plan.seed,
        "ttft_slo_ms": plan.budget.ttft_slo_ms,
        "total_regression_ms": plan.budget.regression_ms,
        "total_regression_pct": plan.budget.regression_pct,
        "baseline_total_p95_ms": plan.baseline_p95_ms,
        "baseline_run": plan.baseline_run,
        "workers": plan.workers,
        "late_tolerance_ms": plan.late_tolerance_s * 1000,
        "timeout_s": plan.timeout_s,
        "scheduled": scheduled,
        "sent": n_sent,
        "ok": len(ok),
        "errors": len(errors),
        "throttled": len(throttled),
        "timeouts": len(timeouts),
        "dropped_late": len(dropped),
        "achieved_send_rps": (n_sent - 1) / span if span > 0 else None,
        "max_in_flight": max_in_flight,
        "start_lag_p99_ms": quantile(lags, 0.99) if lags else None,
        "service_time_p95_ms": quantile(service, 0.95) if service else None,
        "error_samples": sorted({r.error for r in errors + throttled + timeouts})[:5],
    }
    return RunResult(
        **run_identity(started.isoformat()),
        tier="load",
        suites=["load"],
        candidate={"name": target.name, **target.identity()},
        repeats=1,
        config=config.model_dump(mode="json"),
        config_sha256=config.fingerprint(),
        not_run=[
            {
                "metric": "quality",
                "reason": "a load test measures latency, errors and throttles; answers are not scored",
            }
        ],
        cases=per_case,
        aggregates=aggregates,
        verdict=verdict,
        load=load,
    )
