"""Run an evaluation: generate (cached, bounded, throttle-aware) → embed (cached, batched) → judge (cached)
→ combine per case → aggregates, baseline comparison, drift, diversity → verdict."""

from __future__ import annotations

import hashlib
import random
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from . import __version__
from .cache import Cache
from .config import GateConfig
from .dataset import Golden
from .errors import ProviderError, ThrottledError
from .gate import aggregate_suite, compare, decide, drift_from_pairs
from .judge import Judge
from .metrics import dispersion, distinct_n, similarity
from .models import Behaviour, Case, Generation, MetricValue
from .prompts import DEFAULT_CANARY
from .providers.base import Candidate, Embedder
from .results import CaseResult, Diversity, Drift, RunResult, Usage
from .scoring import RepeatScore, combine, judge_rubrics, run_judge, score_generation


class AdaptiveLimiter:
    """Concurrency limit that halves on throttling and creeps back up on success (AIMD)."""

    def __init__(self, maximum: int) -> None:
        self.maximum = max(1, maximum)
        self.limit = float(self.maximum)
        self.active = 0
        self.throttles = 0
        self.lowest = self.limit
        self._cond = threading.Condition()

    @contextmanager
    def slot(self) -> Iterator[Callable[[], None]]:
        throttled = False

        def mark() -> None:
            nonlocal throttled
            throttled = True

        with self._cond:
            while self.active >= max(1, int(self.limit)):
                self._cond.wait()
            self.active += 1
        try:
            yield mark
        finally:
            with self._cond:
                self.active -= 1
                if throttled:
                    self.throttles += 1
                    self.limit = max(1.0, self.limit / 2)
                    self.lowest = min(self.lowest, self.limit)
                else:
                    self.limit = min(float(self.maximum), self.limit + 1.0 / max(self.limit, 1.0))
                self._cond.notify_all()


def _h(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class _Progress:
    def __init__(self, enabled: bool, total: int) -> None:
        self._bar: Any = None
        if enabled and sys.stderr.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), transient=True
            )
            self._bar.start()
            self._task = self._bar.add_task("evaluating", total=total)
        self._lock = threading.Lock()

    def advance(self, description: str | None = None) -> None:
        if self._bar is not None:
            with self._lock:
                self._bar.update(self._task, advance=1, **({"description": description} if description else {}))

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


class Runner:
    def __init__(
        self,
        *,
        golden: Golden,
        candidate: Candidate,
        config: GateConfig,
        tier: str,
        judge: Judge | None,
        embedder: Embedder | None,
        cache: Cache | None = None,
        concurrency: int = 16,
        progress: bool = False,
        deadline: float | None = None,
        throttle_attempts: int = 6,
        backoff_s: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.golden = golden
        self.candidate = candidate
        self.config = config
        self.tier = tier
        self.judge = judge
        self.embedder = embedder
        self.cache = cache
        self.concurrency = max(1, concurrency)
        self.limiter = AdaptiveLimiter(self.concurrency)
        self.progress = progress
        self.deadline = deadline
        self.throttle_attempts = throttle_attempts
        self.backoff_s = backoff_s
        self._sleep = sleep
        self.usage = Usage()
        self._lock = threading.Lock()
        self.timed_out = False

    # -- generation ---------------------------------------------------------------------------------
    def _generation_key(self, case: Case, repeat: int) -> dict[str, Any]:
        kb = self.golden.knowledge_for(case)
        return {
            "candidate": self.candidate.identity(),
            "turns": [t.model_dump() for t in case.turns],
            "knowledge": [(k.id, _h(k.text)) for k in kb],
            "untrusted": _h(case.untrusted_context or ""),
            "canary": case.injection.canary if case.injection else DEFAULT_CANARY,
            "repeat": repeat,
        }

    def _expired(self) -> bool:
        if self.deadline is not None and time.monotonic() > self.deadline:
            self.timed_out = True
            return True
        return False

    def generate(self, case: Case, repeat: int) -> Generation:
        if self._expired():
            return Generation(case_id=case.id, repeat=repeat, error="time budget exhausted before this case ran")
        live = getattr(self.candidate, "live", True)
        key = self._generation_key(case, repeat) if live and self.cache is not None else None
        if key is not None and self.cache is not None:
            hit = self.cache.get("generation", key)
            if hit is not None:
                with self._lock:
                    self.usage.cache_hits += 1
                return Generation.model_validate({**hit, "cached": True})
        knowledge = self.golden.knowledge_for(case)
        delay = self.backoff_s
        for attempt in range(self.throttle_attempts):
            with self.limiter.slot() as throttled:
                try:
                    gen = self.candidate.generate(case, knowledge, repeat)
                except ThrottledError as exc:
                    throttled()
                    if attempt == self.throttle_attempts - 1:
                        return Generation(case_id=case.id, repeat=repeat, error=f"throttled {attempt + 1} times: {exc}")
                    wait = getattr(exc, "retry_after", None) or delay * (1 + random.random())
                except ProviderError as exc:
                    return Generation(case_id=case.id, repeat=repeat, error=str(exc))
                else:
                    break
            self._sleep(wait)
            delay = min(delay * 2, 20.0)
            if self._expired():
                return Generation(case_id=case.id, repeat=repeat, error="time budget exhausted while throttled")
        if live:
            with self._lock:
                self.usage.model_calls += 1
                self._add_tokens(gen.model_id or "candidate", gen.input_tokens or 0, gen.output_tokens or 0)
            if key is not None and self.cache is not None and gen.output is not None and not gen.error:
                self.cache.put("generation", key, gen.model_dump(exclude={"cached"}))
        return gen

    def _add_tokens(self, model_id: str, tin: int, tout: int) -> None:
        self.usage.input_tokens += tin
        self.usage.output_tokens += tout
        m = self.usage.by_model.setdefault(model_id, {"input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0})
        m["input_tokens"] += tin
        m["output_tokens"] += tout
        price = self.config.price(model_id)
        if price:
            cost = tin / 1000 * price.input_per_1k + tout / 1000 * price.output_per_1k
            m["cost_usd"] += cost
            self.usage.cost_usd += cost

    # -- embeddings ---------------------------------------------------------------------------------
    def _embedding_key(self, text: str) -> dict[str, Any]:
        assert self.embedder is not None
        return {"embedder": self.embedder.model_id, "text": _h(text)}

    def embed(self, texts: Sequence[str]) -> dict[str, list[float]]:
        """Embeddings for unique texts, through the cache; misses are embedded in one call."""
        if self.embedder is None:
            return {}
        out: dict[str, list[float]] = {}
        missing: list[str] = []
        for t in dict.fromkeys(texts):
            hit = self.cache.get("embedding", self._embedding_key(t)) if self.cache is not None else None
            if hit is not None:
                out[t] = hit["v"]
                with self._lock:
                    self.usage.cache_hits += 1
            else:
                missing.append(t)
        if missing:
            vecs = self.embedder.embed(missing)
            with self._lock:
                self.usage.model_calls += len(missing) if not getattr(self.embedder, "batched", False) else 1
            for t, v in zip(missing, vecs, strict=True):
                out[t] = v
                if self.cache is not None:
                    self.cache.put("embedding", self._embedding_key(t), {"v": v})
        return out

    # -- the run ------------------------------------------------------------------------------------
    def run(
        self,
        cases: Sequence[Case],
        baseline: RunResult | None = None,
        repeats: int = 1,
        not_run: Sequence[dict[str, str]] = (),
    ) -> RunResult:
        """One task graph on one bounded pool: each answer's judge and embedding calls start as soon as the
        answer exists, so no phase waits for the slowest call of another phase."""
        started = datetime.now(UTC)
        repeats = max(1, repeats)
        tasks = [(c, r) for c in cases for r in range(repeats)]
        rubrics = {c.suite: judge_rubrics(self.config.skipped_metrics(c.suite)) for c in cases}
        judge_calls = sum(len(rubrics[c.suite]) for c, _ in tasks) if self.judge else 0
        bar = _Progress(self.progress, len(tasks) + judge_calls)
        fatal: list[str] = []
        gens: dict[tuple[str, int], Generation] = {}
        judged: dict[tuple[str, int], dict[str, MetricValue]] = {}
        vectors: dict[str, list[float]] = {}
        requested: set[str] = set()
        # Batched embedders (the local model) embed everything at the end in one call; remote ones per text.
        per_text = self.embedder is not None and not getattr(self.embedder, "batched", False)
        pending: list[Future[None]] = []
        pool = ThreadPoolExecutor(max_workers=self.concurrency)

        def submit(fn: Callable[..., None], *args: Any) -> None:
            with self._lock:
                pending.append(pool.submit(fn, *args))

        def embed_task(text: str) -> None:
            try:
                vectors.update(self.embed([text]))
            except ProviderError as exc:
                with self._lock:
                    fatal.append(f"embeddings failed: {exc}")

        def want_embedding(text: str) -> None:
            with self._lock:
                if text in requested:
                    return
                requested.add(text)
            submit(embed_task, text)

        def judge_task(case: Case, g: Generation, rubric: str) -> None:
            assert self.judge is not None and g.output is not None
            mv = run_judge(self.judge, rubric, case, g.output, self.golden.knowledge_for(case))
            with self._lock:
                judged.setdefault((case.id, g.repeat), {})[rubric] = mv
            bar.advance("judging")

        def gen_task(case: Case, repeat: int) -> None:
            g = self.generate(case, repeat)
            with self._lock:
                gens[(case.id, repeat)] = g
            bar.advance("generating")
            if g.output is None:
                return
            if self.judge is not None:
                for rubric in rubrics[case.suite]:
                    submit(judge_task, case, g, rubric)
            if per_text:
                want_embedding(g.output)

        side_texts = [c.reference for c in cases if c.expected == Behaviour.ANSWER]
        if baseline:
            side_texts += [b.output for b in baseline.cases if b.output]
        try:
            for t in tasks:
                submit(gen_task, *t)
            if per_text:
                for text in side_texts:
                    want_embedding(text)
            done = 0
            while True:
                with self._lock:
                    batch = pending[done:]
                if not batch:
                    break
                wait(batch)
                for f in batch:
                    f.result()  # re-raise anything unexpected (provider errors are handled inside tasks)
                done += len(batch)
            if self.embedder is not None and not per_text:
                texts = [g.output for g in gens.values() if g.output is not None] + side_texts
                try:
                    vectors.update(self.embed(texts))
                except (ProviderError, RuntimeError) as exc:
                    fatal.append(f"embeddings failed: {exc}")
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            bar.close()
        by_case: dict[str, list[Generation]] = {c.id: [gens[(c.id, r)] for r in range(repeats)] for c in cases}
        pairs: list[tuple[Case, Generation]] = [(c, g) for c in cases for g in by_case[c.id]]
        scores: list[RepeatScore] = []
        for c, g in pairs:
            sim = None
            if g.output is not None and g.output in vectors and c.reference in vectors:
                sim = similarity(vectors[g.output], vectors[c.reference])
            jm = judged.get((c.id, g.repeat), {}) if self.judge is not None else None
            skip = self.config.skipped_metrics(c.suite)
            scores.append(score_generation(c, g, self.golden.knowledge_for(c), sim, jm, skip))
        score_by_case: dict[str, list[RepeatScore]] = {}
        for (c, _), s in zip(pairs, scores, strict=True):
            score_by_case.setdefault(c.id, []).append(s)
        embedder_name = self.embedder.name if self.embedder else None
        results: list[CaseResult] = []
        for c in cases:
            th = self.config.thresholds_for(c.suite, embedder_name)
            cr = combine(c, by_case.get(c.id, []), score_by_case.get(c.id, []), th)
            cost = 0.0
            for g in cr.generations:
                price = self.config.price(g.model_id)
                if price and not g.cached:
                    cost += (g.input_tokens or 0) / 1000 * price.input_per_1k
                    cost += (g.output_tokens or 0) / 1000 * price.output_per_1k
            cr.cost_usd = cost
            results.append(cr)
        if self.judge is not None:
            ju = self.judge.usage
            self.usage.model_calls += ju.calls
            self.usage.cache_hits += ju.cache_hits
            self._add_tokens(self.judge.model_id, ju.input_tokens, ju.output_tokens)
        if self.timed_out:
            fatal.append("time budget exhausted: not every case was evaluated")
        not_run_names = {n["metric"] for n in not_run}
        aggregates = []
        for suite in sorted({c.suite for c in cases}):
            aggregates += aggregate_suite(
                [r for r in results if r.suite == suite], suite, self.config, embedder_name, not_run_names
            )
        comparisons = compare(results, baseline, self.config) if baseline else []
        drift = self._drift(results, baseline, vectors, repeats)
        diversity = self._diversity(results, baseline, vectors)
        verdict, unscored = decide(aggregates, comparisons, drift, diversity, results, self.config, fatal)
        finished = datetime.now(UTC)
        return RunResult(
            run_id=uuid.uuid4().hex[:12],
            started_at=started.isoformat(),
            finished_at=finished.isoformat(),
            tool_version=__version__,
            tier=self.tier,
            suites=sorted({c.suite for c in cases}),
            candidate={"name": self.candidate.name, **self.candidate.identity()},
            judge=self.judge.identity() if self.judge else None,
            embedder={"name": self.embedder.name, "model_id": self.embedder.model_id} if self.embedder else None,
            baseline={"run_id": baseline.run_id, "candidate": baseline.candidate.get("name")} if baseline else None,
            repeats=repeats,
            config=self.config.model_dump(mode="json"),
            not_run=list(not_run),
            cases=results,
            aggregates=aggregates,
            comparisons=comparisons,
            drift=drift,
            diversity=diversity,
            unscored=unscored,
            usage=self.usage,
            hallucinations=[
                {"case_id": r.id, "suite": r.suite, "claims": r.unsupported_claims, "output": r.output}
                for r in results
                if r.hallucinated
            ],
            verdict=verdict,
        )

    def _drift(
        self, results: list[CaseResult], baseline: RunResult | None, vectors: dict[str, list[float]], repeats: int
    ) -> Drift | None:
        if not vectors:
            return None
        noise: dict[str, float] = {}
        if repeats > 1:
            for r in results:
                outs = [g.output for g in r.generations if g.output is not None and g.output in vectors]
                ds = [1 - similarity(vectors[a], vectors[b]) for i, a in enumerate(outs) for b in outs[i + 1 :]]
                if ds:
                    noise[r.id] = sum(ds) / len(ds)
        base_noise = baseline.drift.noise if baseline and baseline.drift and baseline.drift.noise_measured else None
        if baseline is None:
            if not noise:
                return None
            return Drift(
                noise=sum(noise.values()) / len(noise), noise_measured=True, threshold=self.config.gate.drift_threshold
            )
        base = {b.id: b.output for b in baseline.cases if b.output}
        raw: list[float] = []
        nz: list[float] = []
        for r in results:
            bo = base.get(r.id)
            if r.output is None or bo is None or r.output not in vectors or bo not in vectors:
                continue
            raw.append(1 - similarity(vectors[r.output], vectors[bo]))
            nz.append(noise.get(r.id, base_noise if base_noise is not None else 0.0))
        measured = bool(noise) or base_noise is not None
        return drift_from_pairs(raw, nz if measured else None, self.config)

    def _diversity(
        self, results: list[CaseResult], baseline: RunResult | None, vectors: dict[str, list[float]]
    ) -> Diversity | None:
        outs = [r.output for r in results if r.output]
        if len(outs) < 2:
            return None
        d = Diversity(distinct_1=distinct_n(outs, 1), distinct_2=distinct_n(outs, 2))
        vecs = [vectors[o] for o in outs if o in vectors]
        d.dispersion = dispersion(vecs) if len(vecs) >= 2 else None
        if baseline and baseline.diversity:
            b = baseline.diversity
            d.baseline_distinct_2, d.baseline_dispersion = b.distinct_2, b.dispersion
            drop = self.config.gate.diversity_drop
            notes = []
            if b.distinct_2 and d.distinct_2 is not None and d.distinct_2 < (1 - drop) * b.distinct_2:
                notes.append(f"distinct-2 {d.distinct_2:.3f} vs baseline {b.distinct_2:.3f}")
            if b.dispersion and d.dispersion is not None and d.dispersion < (1 - drop) * b.dispersion:
                notes.append(f"embedding dispersion {d.dispersion:.3f} vs baseline {b.dispersion:.3f}")
            d.collapsed = bool(notes)
            d.note = "; ".join(notes) + (f" (drop > {drop:.0%})" if notes else "")
        return d


def run_evaluation(
    *,
    golden: Golden,
    cases: Sequence[Case],
    candidate: Candidate,
    config: GateConfig,
    tier: str,
    judge: Judge | None,
    embedder: Embedder | None,
    baseline: RunResult | None = None,
    repeats: int = 1,
    concurrency: int = 16,
    cache: Cache | None = None,
    progress: bool = False,
    deadline: float | None = None,
    not_run: Sequence[dict[str, str]] = (),
) -> RunResult:
    runner = Runner(
        golden=golden,
        candidate=candidate,
        config=config,
        tier=tier,
        judge=judge,
        embedder=embedder,
        cache=cache,
        concurrency=concurrency,
        progress=progress,
        deadline=deadline,
    )
    return runner.run(cases, baseline=baseline, repeats=repeats, not_run=not_run)
