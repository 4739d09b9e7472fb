"""Run an evaluation: generate (cached) → embed (cached, batched) → judge (cached) → combine per case →
aggregates, baseline comparison, drift, diversity → verdict. Every remote call of a run goes through one
``RetryPolicy`` (``evalgate.core.retry``): bounded adaptive concurrency, back-off, give-up rules."""

from __future__ import annotations

import functools
import hashlib
import itertools
import queue
import sys
import threading
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypedDict, Unpack

from evalgate import __version__
from evalgate.core.config import GROUNDING_METRICS, GateConfig
from evalgate.core.dataset import Golden
from evalgate.core.errors import BudgetExceeded, ProviderError
from evalgate.core.gate import aggregate_suite, compare, decide, drift_from_pairs
from evalgate.core.metrics import distinct_n, similarity
from evalgate.core.models import Behaviour, Case, Generation, KnowledgeEntry, MetricValue
from evalgate.core.ports import Candidate, Embedder
from evalgate.core.prompts import DEFAULT_CANARY
from evalgate.core.results import Aggregate, CaseResult, Comparison, Diversity, Drift, RunResult, Usage, Verdict
from evalgate.core.retry import FOLLOW_UP, GENERATE, GaveUp, RetryPolicy
from evalgate.core.stats import load as load_statistics
from evalgate.engine.cache import Cache, pack_vector, unpack_vector
from evalgate.engine.cost import CostMeter, call_cost
from evalgate.engine.guardrails import (
    Assessment,
    GroundingScore,
    GuardrailChecker,
    Source,
    annotate_case,
    grounding_metrics,
    grounding_source,
    guardrail_input_text,
    guardrail_role,
    safety_aggregates,
)
from evalgate.engine.judge import Judge
from evalgate.engine.judge_trust import (
    RetestCache,
    decide_with_trust,
    flaky_cases,
    rescore_reasons,
    retest_targets,
    retest_wanted,
    self_agreement,
    unrescorable,
)
from evalgate.engine.scoring import JUDGE_METRICS, RepeatScore, combine, judge_rubrics, run_judge, score_generation

# An external judge for a whole run at once (a Bedrock evaluation job): (case, answer, knowledge) items in,
# per-(case id, repeat) metrics out.
JudgeItem = tuple[Case, Generation, list[KnowledgeEntry]]
BatchJudge = Callable[[list[JudgeItem]], dict[tuple[str, int], dict[str, MetricValue]]]


# The task graph's order (lower first, then in submission order), so that a run does not end on sparse waves of
# calls waiting for each other: a retest (the judge's second opinion, the end of its chain) first, then an answer's
# judgements (a retest may follow them) before new answers are asked for, and last the calls nothing waits for
# (embeddings, guardrail checks), which fill the slots the others leave free.
RETEST, JUDGE, NEW_ANSWER, SIDE = range(4)


class _PriorityPool:
    """Worker threads that take the lowest priority number first, then in submission order (see ``RETEST``...).
    Threads outnumber the concurrency limit so that calls sleeping in back-off do not idle a slot; the retry
    policy bounds calls in flight."""

    def __init__(self, workers: int) -> None:
        self._q: queue.PriorityQueue[tuple[int, int, Callable[[], None] | None, Future[None] | None]] = (
            queue.PriorityQueue()
        )
        self._seq = itertools.count()
        self._threads = [threading.Thread(target=self._work, daemon=True, name=f"eval-{i}") for i in range(workers)]
        for t in self._threads:
            t.start()

    def submit(self, priority: int, fn: Callable[..., None], *args: Any) -> Future[None]:
        fut: Future[None] = Future()

        def run() -> None:
            if not fut.set_running_or_notify_cancel():
                return
            try:
                fn(*args)
            except BaseException as exc:
                fut.set_exception(exc)
            else:
                fut.set_result(None)

        self._q.put((priority, next(self._seq), run, fut))
        return fut

    def _work(self) -> None:
        while True:
            _, _, job, _ = self._q.get()
            if job is None:
                return
            job()

    def shutdown(self, cancel: bool = False) -> None:
        """Stop the workers after the queued work (``cancel``: drop the work not started yet)."""
        while cancel:
            try:
                *_, fut = self._q.get_nowait()
            except queue.Empty:
                break
            if fut is not None:
                fut.cancel()
        for _ in self._threads:
            self._q.put((sys.maxsize, next(self._seq), None, None))
        for t in self._threads:
            t.join()


def guardrail_model(guardrail: GuardrailChecker) -> str:
    return f"guardrail {guardrail.guardrail_id}:{guardrail.guardrail_version}"


def _h(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class _Progress:
    """The progress line on stderr (when it is a terminal: stdout carries the summary a user may pipe), with the
    retry policy's current concurrency and retries."""

    def __init__(self, enabled: bool, total: int) -> None:
        self._bar: Any = None
        if enabled and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self._bar.start()
            self._task = self._bar.add_task("evaluating", total=total)
        self._lock = threading.Lock()

    def advance(self, description: str | None = None, policy: RetryPolicy | None = None) -> None:
        if self._bar is not None:
            if description and policy is not None:
                description = (
                    f"{description} · concurrency {policy.limit}/{policy.max_concurrency} · retries {policy.retries}"
                )
            with self._lock:
                self._bar.update(self._task, advance=1, **({"description": description} if description else {}))

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


@dataclass(frozen=True)
class RunOptions:
    """How a run runs, apart from what it runs with (the collaborators ``Runner`` takes beside it).

    ``deadline`` (monotonic) bounds the run's retry policy when none is given; ``borderline_margin``: judged
    scores this close to a threshold are retested and, with an escalation judge, re-judged by it;
    ``keep_vector_sum``: record the diversity's vector sum (a shard's, for the merge); ``grounding``: the
    guardrail's contextual grounding filters (GROUNDING, RELEVANCE) each judged answer is checked with;
    ``meanwhile``: the caller's work that only the end of the run needs (loading the report writers, say), done
    on the calling thread while the first calls are in flight — before them it would delay the first request,
    after them it would add to the run's end."""

    tier: str
    repeats: int = 1
    concurrency: int = 16
    progress: bool = False
    deadline: float | None = None
    borderline_margin: float = 0.03
    keep_vector_sum: bool = False
    grounding: tuple[str, ...] = ()
    meanwhile: Callable[[], None] | None = None


class Collaborators(TypedDict, total=False):
    """What a ``Runner`` calls besides the candidate (each optional): judges, embedder, cache, the run's retry
    policy, the cost meter, the guardrail checker."""

    judge: Judge | None
    embedder: Embedder | None
    cache: Cache | None
    policy: RetryPolicy | None
    meter: CostMeter | None
    guardrail: GuardrailChecker | None
    escalation_judge: Judge | None
    batch_judge: BatchJudge | None


class Runner:
    def __init__(
        self,
        *,
        golden: Golden,
        candidate: Candidate,
        config: GateConfig,
        options: RunOptions,
        judge: Judge | None = None,
        embedder: Embedder | None = None,
        cache: Cache | None = None,
        policy: RetryPolicy | None = None,
        meter: CostMeter | None = None,
        guardrail: GuardrailChecker | None = None,
        escalation_judge: Judge | None = None,
        batch_judge: BatchJudge | None = None,
    ) -> None:
        self.options = options
        self.golden = golden
        self.candidate = candidate
        self.config = config
        self.tier = options.tier
        self.judge = judge
        self.embedder = embedder
        self.cache = cache
        self.concurrency = max(1, options.concurrency)
        # One policy for every remote call of the run (the judges' too); ``deadline`` (monotonic) bounds it.
        self.policy = policy or RetryPolicy(self.concurrency, deadline=options.deadline)
        for j in (judge, escalation_judge):
            if j is not None:
                j.policy = self.policy
        self.progress = options.progress
        self.usage = Usage()
        self._lock = threading.Lock()
        self.timed_out = False
        self.meter = meter  # the candidate, judges and embedder are metered by wrappers sharing it (cost.py)
        self.guardrail = guardrail
        # The guardrail's contextual grounding filters (GROUNDING, RELEVANCE): each judged answer is checked too.
        self.grounding = tuple(k for k in GROUNDING_METRICS if k in options.grounding) if guardrail is not None else ()
        self.escalation_judge = escalation_judge
        self.borderline_margin = options.borderline_margin
        self.batch_judge = batch_judge
        self.keep_vector_sum = options.keep_vector_sum
        self.escalation_record: dict[str, Any] | None = None
        self.evaluation_jobs: list[dict[str, Any]] = []
        self.retest_judge: Judge | None = None
        self.self_agreement: dict[str, Any] | None = None

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
        if self.policy.expired():
            self.timed_out = True
            return True
        return False

    def generate(self, case: Case, repeat: int) -> Generation:
        if self._expired():
            return Generation(case_id=case.id, repeat=repeat, error="time budget exhausted before this case ran")
        if self.meter is not None and self.meter.stop_reason:
            return Generation(case_id=case.id, repeat=repeat, error=f"not run: {self.meter.stop_reason}")
        live = getattr(self.candidate, "live", True)
        key = self._generation_key(case, repeat) if live and self.cache is not None else None
        if key is not None and self.cache is not None:
            hit = self.cache.get("generation", key)
            if hit is not None:
                with self._lock:
                    self.usage.cache_hits += 1
                return Generation.model_validate({**hit, "cached": True})
        knowledge = self.golden.knowledge_for(case)
        try:
            if live:
                gen = self.policy.call(
                    lambda: self.candidate.generate(case, knowledge, repeat),
                    model=self.candidate_model,
                    priority=GENERATE,
                )
            else:  # a replay reads a file: nothing to retry or to throttle
                gen = self.candidate.generate(case, knowledge, repeat)
        except ProviderError as exc:
            return Generation(case_id=case.id, repeat=repeat, error=str(exc))
        except BudgetExceeded as exc:
            return Generation(case_id=case.id, repeat=repeat, error=f"not run: {exc}")
        if live:
            with self._lock:
                self.usage.model_calls += 1
                self._add_tokens(gen.model_id or "candidate", gen.input_tokens or 0, gen.output_tokens or 0)
            if key is not None and self.cache is not None and gen.output is not None and not gen.error:
                self.cache.put("generation", key, gen.model_dump(exclude={"cached"}))
        return gen

    @property
    def candidate_model(self) -> str:
        """The name the candidate's calls are reported under (model id for Bedrock, else the candidate's name)."""
        return str(getattr(self.candidate, "model_id", None) or self.candidate.name)

    def _add_tokens(self, model_id: str, tin: int, tout: int) -> None:
        self.usage.input_tokens += tin
        self.usage.output_tokens += tout
        m = self.usage.by_model.setdefault(model_id, {"input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0})
        m["input_tokens"] += tin
        m["output_tokens"] += tout
        cost = call_cost(self.config, model_id, tin, tout)
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
            vector = unpack_vector(hit) if hit is not None else None
            if vector is not None:
                out[t] = vector
                with self._lock:
                    self.usage.cache_hits += 1
            else:
                missing.append(t)
        if missing:
            embedder = self.embedder
            if getattr(embedder, "batched", False):  # in-process model: nothing to retry
                vecs = embedder.embed(missing)
            else:
                vecs = self.policy.call(lambda: embedder.embed(missing), model=embedder.model_id, priority=FOLLOW_UP)
            with self._lock:
                self.usage.model_calls += len(missing) if not getattr(self.embedder, "batched", False) else 1
            for t, v in zip(missing, vecs, strict=True):
                out[t] = v
                if self.cache is not None:
                    self.cache.put("embedding", self._embedding_key(t), pack_vector(v))
        return out

    # -- the run ------------------------------------------------------------------------------------
    def run(
        self,
        cases: Sequence[Case],
        baseline: RunResult | None = None,
        not_run: Sequence[dict[str, str]] = (),
    ) -> RunResult:
        """One task graph on one bounded pool: each answer's judge, embedding and guardrail calls start as soon
        as the answer exists, so no phase waits for the slowest call of another phase. Then, optionally, an
        external batch judge (Bedrock evaluation job) and the heavy judge on borderline cases."""
        started = datetime.now(UTC)
        repeats = max(1, self.options.repeats)
        st = self._execute(cases, repeats, baseline)
        if self.batch_judge is not None and not self._budget_stopped():
            self._run_batch_judge(cases, st)
        results = self._score(cases, st)
        if self.judge is not None and not self._budget_stopped() and not self.policy.expired():
            self.self_agreement = self._retest(cases, st, results)
        if self.escalation_judge is not None and self.judge is not None and not self._budget_stopped():
            results = self._escalate(cases, st, results)
        for judge in (self.judge, self.escalation_judge, self.retest_judge):
            if judge is not None:
                ju = judge.usage
                self.usage.model_calls += ju.calls
                self.usage.cache_hits += ju.cache_hits
                self._add_tokens(judge.model_id, ju.input_tokens, ju.output_tokens)
        emb_tokens = getattr(self.embedder, "input_tokens", None)
        if isinstance(emb_tokens, int) and emb_tokens > 0 and self.embedder is not None:
            self._add_tokens(self.embedder.model_id, emb_tokens, 0)
        if self.guardrail is not None:
            self.usage.model_calls += self.guardrail.calls
            self.usage.cache_hits += self.guardrail.cache_hits
        faults = self._faults(st)
        self.usage.retries = sum(
            int(m.get("retries", 0)) + int(m.get("malformed_retries", 0)) for m in faults["models"].values()
        )
        fatal = st.fatal
        fatal += self.policy.gave_up()
        if self.timed_out:
            fatal.append("time budget exhausted: not every case was evaluated")
        if self.meter is not None and self.meter.stop_reason:
            fatal.insert(0, self.meter.stop_reason)
        drift = self._drift(results, baseline, st.vectors, repeats)
        diversity = self._diversity(results, baseline, st.vectors)
        embedder_name = self.embedder.name if self.embedder else None
        aggregates, comparisons, verdict, unscored = gate_results(
            results,
            baseline,
            self.config,
            embedder_name,
            {n["metric"] for n in not_run},
            fatal,
            drift,
            diversity,
            retest=self.self_agreement,
        )
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
            config_sha256=self.config.fingerprint(),
            not_run=list(not_run),
            cases=results,
            aggregates=aggregates,
            comparisons=comparisons,
            drift=drift,
            diversity=diversity,
            unscored=unscored,
            usage=self.usage,
            hallucinations=hallucination_list(results),
            verdict=verdict,
            escalation=self.escalation_record,
            cost=self.meter.snapshot() if self.meter is not None else None,
            guardrail=(
                {**self.guardrail.identity(), "calls": self.guardrail.calls, "units": self.guardrail.units}
                if self.guardrail is not None
                else None
            ),
            evaluation_jobs=list(self.evaluation_jobs),
            fatal=list(fatal),
            faults=faults,
            dataset_sha256=self.golden.fingerprint(cases),
            self_agreement=self.self_agreement,
            flaky=flaky_cases(results),
        )

    def _faults(self, st: _RunState) -> dict[str, Any]:
        """The policy's per-model account plus what became of the calls: unscored judgements and embeddings,
        errored answers and guardrail checks, unparseable judge replies asked again."""
        snap = self.policy.snapshot()
        models: dict[str, dict[str, Any]] = snap["models"]

        def add(model: str, key: str, n: int) -> None:
            if n:
                m = models.setdefault(model, {})
                m[key] = m.get(key, 0) + n

        add(self.candidate_model, "errors", sum(1 for g in st.gens.values() if g.error))
        for judge in (self.judge, self.escalation_judge, self.retest_judge):
            if judge is not None:
                add(judge.model_id, "malformed_retries", judge.usage.malformed_retries)
        if self.judge is not None:
            unscored = sum(1 for ms in st.judged.values() for mv in ms.values() if mv.unscored)
            add(self.judge.model_id, "unscored", unscored)
        if self.embedder is not None:
            add(self.embedder.model_id, "unscored", sum(1 for t in st.wanted_vectors if t not in st.vectors))
        if self.guardrail is not None:
            errors = sum(1 for checks in st.guard.values() for a in checks.values() if isinstance(a, str))
            errors += sum(1 for g in st.grounded.values() if isinstance(g, str))
            add(guardrail_model(self.guardrail), "errors", errors)
        return snap

    def _budget_stopped(self) -> bool:
        return self.meter is not None and self.meter.stopped

    def _execute(self, cases: Sequence[Case], repeats: int, baseline: RunResult | None) -> _RunState:
        st = _RunState()
        tasks = [(c, r) for c in cases for r in range(repeats)]
        rubrics = {c.suite: judge_rubrics(self.config.skipped_metrics(c.suite)) for c in cases}
        judge_calls = sum(len(rubrics[c.suite]) for c, _ in tasks) if self.judge else 0
        bar = _Progress(self.progress, len(tasks) + judge_calls)
        # Batched embedders (the local model) embed everything at the end in one call; remote ones per text.
        per_text = self.embedder is not None and not getattr(self.embedder, "batched", False)
        guard_suites = set(self.config.guardrail.suites) if self.guardrail is not None else set()
        pending: list[Future[None]] = []
        pool = _PriorityPool(min(256, 2 * self.concurrency + 4))

        def score(case: Case) -> None:
            gens = [st.gens[(case.id, r)] for r in range(repeats) if (case.id, r) in st.gens]
            st.scored[case.id] = self._score_case(case, gens, st)

        # Each case is scored on the thread that brings back its last input, while other calls are in flight, so
        # the run's end does not wait for it; not with a batch judge or a batched embedder, whose inputs arrive
        # after the task graph (``_score`` scores those cases).
        ready = _ScoreWhenReady(cases, repeats, score, self.batch_judge is None and (per_text or not self.embedder))

        def submit(fn: Callable[..., None], *args: Any, priority: int = SIDE, case: str | None = None) -> None:
            """Queue a task; ``case``: a task the case's score waits for."""
            if case is not None:
                ready.opened(case)
                fn = functools.partial(_then, fn, functools.partial(ready.closed, case))
            with self._lock:
                pending.append(pool.submit(priority, fn, *args))

        def embed_task(text: str) -> None:
            try:
                st.vectors.update(self.embed([text]))
            except GaveUp:
                pass  # reported once per model by the policy (the run is ERROR); the similarity is unscored
            except (ProviderError, BudgetExceeded) as exc:
                with self._lock:
                    st.fatal.append(f"embeddings failed: {exc}")
            finally:
                ready.text_done(text)

        def want_embedding(text: str) -> None:
            with self._lock:
                if text in st.wanted_vectors:
                    return
                st.wanted_vectors.add(text)
            submit(embed_task, text)

        def judge_task(case: Case, g: Generation, rubric: str) -> None:
            assert self.judge is not None and g.output is not None
            mv = self._judge_one(self.judge, rubric, case, g.output)
            with self._lock:
                st.judged.setdefault((case.id, g.repeat), {})[rubric] = mv
            bar.advance("judging", self.policy)
            # The judge's retest of this judgement (judge_trust.retest_targets' rule) starts now, not in a wave
            # after the last judgement; ``_retest`` compares the two once every first judgement is in.
            first = self._first_judgement(case, g.repeat, rubric, mv)
            if (
                first is not None
                and retest_wanted((case.id, rubric), *first, self.borderline_margin, self.config)
                and not self._budget_stopped()
                and not self.policy.expired()
            ):
                submit(retest_task, case, g.output, rubric, priority=RETEST)

        def retest_task(case: Case, output: str, rubric: str) -> None:
            mv = self._judge_one(self._retest_judge(), rubric, case, output)
            with self._lock:
                st.retests[(case.id, rubric)] = mv

        def guard_task(case: Case, source: Source, repeat: int, text: str) -> None:
            assert self.guardrail is not None
            result: Assessment | str
            if self._budget_stopped():
                result = f"not run: {self.meter.stop_reason if self.meter else ''}"
            else:
                guardrail = self.guardrail
                try:
                    result = self.policy.call(lambda: guardrail.check(source, text), model=guardrail_model(guardrail))
                except (ProviderError, BudgetExceeded) as exc:
                    result = str(exc)
            with self._lock:
                st.guard.setdefault(case.id, {})[(source, repeat)] = result

        def grounding_task(case: Case, g: Generation, source: str) -> None:
            assert self.guardrail is not None and g.output is not None
            result: dict[str, GroundingScore] | str
            if self._budget_stopped():
                result = f"not run: {self.meter.stop_reason if self.meter else ''}"
            else:
                guardrail, answer = self.guardrail, g.output
                try:
                    result = self.policy.call(
                        lambda: guardrail.grounding(case.question, source, answer), model=guardrail_model(guardrail)
                    )
                except (ProviderError, BudgetExceeded) as exc:
                    result = str(exc)
            with self._lock:
                st.grounded[(case.id, g.repeat)] = result

        def gen_task(case: Case, repeat: int) -> None:
            try:
                answer_task(case, repeat)
            finally:
                ready.closed(case.id)  # counted open from the start (``_ScoreWhenReady``)

        def answer_task(case: Case, repeat: int) -> None:
            g = self.generate(case, repeat)
            with self._lock:
                st.gens[(case.id, repeat)] = g
            bar.advance("generating", self.policy)
            if g.output is None:
                return
            if self.judge is not None:
                for rubric in rubrics[case.suite]:
                    submit(judge_task, case, g, rubric, priority=JUDGE, case=case.id)
            if per_text:
                want_embedding(g.output)
                ready.needs_text(case.id, g.output)
            source = self._grounding_source(case)
            if source is not None and g.output.strip():
                submit(grounding_task, case, g, source, case=case.id)
            if case.suite in guard_suites and guardrail_role(case.tags, self.config.guardrail):
                if repeat == 0:
                    submit(guard_task, case, "INPUT", 0, guardrail_input_text(case), case=case.id)
                if g.output.strip():
                    submit(guard_task, case, "OUTPUT", repeat, g.output, case=case.id)

        side_texts = [c.reference for c in cases if c.expected == Behaviour.ANSWER]
        if baseline:
            wanted = {c.id for c in cases}  # only the cases of this run (a shard or a subset) are paired
            side_texts += [b.output for b in baseline.cases if b.output and b.id in wanted]
        ok = False
        try:
            if per_text:  # before any answer is asked for: a case is not scored before its reference is embedded
                for c in cases:
                    if c.expected == Behaviour.ANSWER:
                        ready.needs_text(c.id, c.reference)
            for t in tasks:
                submit(gen_task, *t, priority=NEW_ANSWER)
            if per_text:
                for text in side_texts:
                    want_embedding(text)
            # What only scoring needs (numpy, for the statistics) and the caller's ``meanwhile`` run while the calls
            # are in flight, once the first round is out: before, they would hold back the first requests; after,
            # they would add to the run's end. With nothing to send (a warm cache) they run once the first tasks are
            # done.
            with self._lock:
                first_tasks = list(pending)
            while self.policy.in_flight < self.policy.limit and not all(f.done() for f in first_tasks):
                wait(first_tasks, timeout=0.005)
            load_statistics()
            if self.options.meanwhile is not None:
                self.options.meanwhile()
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
                texts = [g.output for g in st.gens.values() if g.output is not None] + side_texts
                st.wanted_vectors.update(texts)
                try:
                    st.vectors.update(self.embed(texts))
                except (ProviderError, RuntimeError, BudgetExceeded) as exc:
                    st.fatal.append(f"embeddings failed: {exc}")
            ok = True
        finally:
            pool.shutdown(cancel=not ok)
            bar.close()
        return st

    def _grounding_source(self, case: Case) -> str | None:
        """What the guardrail's contextual grounding check grounds a case's answers in (the knowledge the judge
        judges faithfulness against), or None when the case is not checked: no grounding filter, no judge in
        this tier, no knowledge cited, an answer not expected, or the metrics skipped for its suite."""
        if not self.grounding or (self.judge is None and self.batch_judge is None):
            return None
        if case.expected != Behaviour.ANSWER:
            return None
        skip = self.config.skipped_metrics(case.suite)
        if "faithfulness" in skip or all(GROUNDING_METRICS[k] in skip for k in self.grounding):
            return None
        knowledge = self.golden.knowledge_for(case)
        return grounding_source(knowledge) if knowledge else None

    def _grounding_of(self, case: Case, g: Generation, st: _RunState) -> dict[str, MetricValue]:
        """The contextual grounding metrics of one answer (unscored when its check was lost or failed)."""
        if g.output is None or not g.output.strip() or self._grounding_source(case) is None:
            return {}
        skip = self.config.skipped_metrics(case.suite)
        kinds = [k for k in self.grounding if GROUNDING_METRICS[k] not in skip]
        return grounding_metrics(st.grounded.get((case.id, g.repeat), "the check did not run"), kinds)

    def _judge_one(self, judge: Judge, rubric: str, case: Case, output: str) -> MetricValue:
        if self._budget_stopped():
            return MetricValue(name=rubric, value=None, unscored=True, reason="not judged: the cost cap was reached")
        try:
            return run_judge(judge, rubric, case, output, self.golden.knowledge_for(case))
        except BudgetExceeded as exc:
            return MetricValue(name=rubric, value=None, unscored=True, reason=f"not judged: {exc}")

    def _run_batch_judge(self, cases: Sequence[Case], st: _RunState) -> None:
        assert self.batch_judge is not None
        items = [
            (c, st.gens[(c.id, r)], self.golden.knowledge_for(c))
            for c in cases
            for r in sorted(rp for cid, rp in st.gens if cid == c.id)
            if st.gens[(c.id, r)].output is not None
        ]
        try:
            judged = self.batch_judge(items)
        except (ProviderError, BudgetExceeded) as exc:
            st.fatal.append(f"batch judge failed: {exc}")
            return
        jobs = getattr(self.batch_judge, "jobs", None)
        if isinstance(jobs, list):
            self.evaluation_jobs.extend(j for j in jobs if isinstance(j, dict))
        for key, metrics in judged.items():
            st.judged.setdefault(key, {}).update(metrics)

    def _score(self, cases: Sequence[Case], st: _RunState) -> list[CaseResult]:
        """Every case's result: the one the task graph scored as its last call came back (``_execute``), or, for
        a case it did not (a batch or batched judge, a run cut short), scored now from the same inputs."""
        repeats_of: dict[str, list[int]] = {}
        for cid, r in st.gens:
            repeats_of.setdefault(cid, []).append(r)
        results: list[CaseResult] = []
        for c in cases:
            cr = st.scored.get(c.id)
            if cr is None:
                cr = self._score_case(c, [st.gens[(c.id, r)] for r in sorted(repeats_of.get(c.id, []))], st)
            results.append(cr)
        return results

    def _score_case(self, c: Case, gens: list[Generation], st: _RunState) -> CaseResult:
        """One case's result from its answers and what was measured of them (pure in ``st``: no call)."""
        judged_tier = self.judge is not None or self.batch_judge is not None
        embedder_name = self.embedder.name if self.embedder else None
        knowledge = self.golden.knowledge_for(c)
        skip = self.config.skipped_metrics(c.suite)
        scores: list[RepeatScore] = []
        for g in gens:
            sim = None
            if g.output is not None and g.output in st.vectors and c.reference in st.vectors:
                sim = similarity(st.vectors[g.output], st.vectors[c.reference])
            jm = st.judged.get((c.id, g.repeat), {}) if judged_tier else None
            rs = score_generation(c, g, knowledge, sim, jm, skip)
            rs.metrics.update(self._grounding_of(c, g, st))
            scores.append(rs)
        th = self.config.thresholds_for(c.suite, embedder_name)
        cr = combine(c, gens, scores, th)
        cr.cost_usd = sum(
            call_cost(self.config, g.model_id, g.input_tokens or 0, g.output_tokens or 0)
            for g in cr.generations
            if not g.cached
        )
        checks = st.guard.get(c.id) if self.guardrail is not None else None
        annotate_case(cr, c, checks, self.config.guardrail)
        return cr

    def _retest(self, cases: Sequence[Case], st: _RunState, results: list[CaseResult]) -> dict[str, Any] | None:
        """Judge every borderline answer and a seeded share of the rest a second time (judge_trust.py)."""
        assert self.judge is not None
        by_id = {c.id: c for c in cases}
        first: dict[tuple[str, str], tuple[float, float]] = {}
        for (cid, rep), judged in st.judged.items():
            for rubric, mv in judged.items():
                if cid in by_id and (sv := self._first_judgement(by_id[cid], rep, rubric, mv)) is not None:
                    first[(cid, rubric)] = sv
        if not first:
            return None
        targets, n_border = retest_targets(first, self.borderline_margin, self.config)
        if not targets:
            return self_agreement([], 0, self.judge.identity(), self.config) | {"judged": len(first)}
        # The task graph (``_execute``) already retested what it could; what is left (nothing, unless the first
        # judgements came from elsewhere) is retested here.
        second = {k: mv for k, mv in st.retests.items() if k in first}
        retest_judge = self._retest_judge()
        pool = ThreadPoolExecutor(max_workers=self.concurrency)
        try:
            futures = [
                (cid, rubric, pool.submit(self._judge_one, retest_judge, rubric, by_id[cid], g.output or ""))
                for cid, rubric in targets
                if (cid, rubric) not in second and (g := st.gens.get((cid, 0))) is not None and g.output is not None
            ]
            second.update({(cid, rubric): f.result() for cid, rubric, f in futures})
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        pairs = [
            (cid, rubric, first[(cid, rubric)][0], second[(cid, rubric)].value, first[(cid, rubric)][1])
            for cid, rubric in targets
            if (cid, rubric) in second
        ]
        return self_agreement(pairs, n_border, self.judge.identity(), self.config)

    def _first_judgement(self, case: Case, repeat: int, rubric: str, mv: MetricValue) -> tuple[float, float] | None:
        """(score, threshold) of a first judgement the judge may be asked to repeat (judge_trust's retest)."""
        if repeat != 0 or rubric not in JUDGE_METRICS or mv.value is None:
            return None
        limit = getattr(self.config.thresholds_for(case.suite, self.embedder.name if self.embedder else None), rubric)
        return mv.value, 0.5 if limit is None else limit

    def _retest_judge(self) -> Judge:
        """The judge again, under its own cache kind (a retest is never answered by the first judgement); one per
        run, whichever thread asks first."""
        with self._lock:
            if self.retest_judge is None:
                j = self.judge
                assert j is not None
                self.retest_judge = Judge(
                    j.model,
                    prompt_version=j.prompt_version,
                    cache=RetestCache(self.cache) if self.cache is not None else None,
                    policy=j.policy,
                    malformed_attempts=j.malformed_attempts,
                )
            return self.retest_judge

    def _escalate(self, cases: Sequence[Case], st: _RunState, results: list[CaseResult]) -> list[CaseResult]:
        """Re-judge borderline cases with the heavy judge and re-score them."""
        assert self.escalation_judge is not None
        embedder_name = self.embedder.name if self.embedder else None
        targets = borderline_targets(results, self.config, embedder_name, self.borderline_margin)
        record: dict[str, Any] = {
            "judge": self.escalation_judge.identity(),
            "margin": self.borderline_margin,
            "cases": sorted({cid for cid, _ in targets}),
            "reasons": [],
        }
        self.escalation_record = record
        if not targets:
            return results
        by_id = {c.id: c for c in cases}
        work = [
            (by_id[cid], g, rubric)
            for cid, rubric in sorted(targets)
            for (gid, _), g in sorted(st.gens.items())
            if gid == cid and g.output is not None
        ]
        pool = ThreadPoolExecutor(max_workers=self.concurrency)
        try:
            futures = {
                pool.submit(self._judge_one, self.escalation_judge, rubric, case, g.output or ""): (case, g, rubric)
                for case, g, rubric in work
            }
            for f, (case, g, rubric) in futures.items():
                mv = f.result()
                mv.details = {**mv.details, "escalated_from": self.judge.model_id if self.judge else None}
                st.judged.setdefault((case.id, g.repeat), {})[rubric] = mv
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        record["reasons"] = sorted({f"{cid}.{rubric}" for cid, rubric in targets})
        record["calls"] = len(work)
        for cid, _ in targets:
            st.scored.pop(cid, None)  # scored again below, with the heavy judge's judgements
        return self._score(cases, st)

    def _drift(
        self, results: list[CaseResult], baseline: RunResult | None, vectors: dict[str, list[float]], repeats: int
    ) -> Drift | None:
        """Drift vs the baseline's answers (README "Drift score"); the per-case terms are kept on each case
        (``drift_raw``, ``drift_noise``) so merged shards give the same score."""
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
            for r in results:
                r.drift_noise = noise.get(r.id)
            if not noise:
                return None
            return Drift(
                noise=sum(noise.values()) / len(noise), noise_measured=True, threshold=self.config.gate.drift_threshold
            )
        base = {b.id: b.output for b in baseline.cases if b.output}
        measured = bool(noise) or base_noise is not None
        for r in results:
            bo = base.get(r.id)
            if r.output is None or bo is None or r.output not in vectors or bo not in vectors:
                continue
            r.drift_raw = 1 - similarity(vectors[r.output], vectors[bo])
            r.drift_noise = noise.get(r.id, base_noise if base_noise is not None else 0.0) if measured else None
        return drift_of(results, self.config)

    def _diversity(
        self, results: list[CaseResult], baseline: RunResult | None, vectors: dict[str, list[float]]
    ) -> Diversity | None:
        outs = [r.output for r in results if r.output]
        vecs = [vectors[o] for o in outs if o in vectors]
        total = [sum(col) for col in zip(*vecs, strict=True)] if vecs else None
        return diversity_of(outs, total, len(vecs), baseline, self.config, keep_sum=self.keep_vector_sum)


def _then(fn: Callable[..., None], after: Callable[[], None], *args: Any) -> None:
    try:
        fn(*args)
    finally:
        after()


class _ScoreWhenReady:
    """Calls ``score(case)`` once nothing the case is scored from is outstanding: each of its answers (counted
    open from the start), the tasks ``opened`` for it (judgements, guardrail and grounding checks), the
    embeddings of the texts it ``needs_text`` (its answers, its reference; shared by other cases). Disabled, it
    scores nothing. Thread-safe; ``score`` runs outside its lock."""

    def __init__(self, cases: Sequence[Case], repeats: int, score: Callable[[Case], None], enabled: bool) -> None:
        self._lock = threading.Lock()
        self._cases = {c.id: c for c in cases}
        self._open = {c.id: repeats for c in cases} if enabled else {}
        self._waiting: dict[str, set[str]] = {}  # text -> the cases waiting for its embedding
        self._embedded: set[str] = set()  # texts whose embedding came back (or failed)
        self._score = score

    def opened(self, case_id: str) -> None:
        with self._lock:
            if case_id in self._open:
                self._open[case_id] += 1

    def needs_text(self, case_id: str, text: str) -> None:
        with self._lock:
            if case_id in self._open and text not in self._embedded:
                waiting = self._waiting.setdefault(text, set())
                if case_id not in waiting:
                    waiting.add(case_id)
                    self._open[case_id] += 1

    def text_done(self, text: str) -> None:
        with self._lock:
            self._embedded.add(text)
            cases = self._waiting.pop(text, set())
        for case_id in sorted(cases):
            self.closed(case_id)

    def closed(self, case_id: str) -> None:
        with self._lock:
            left = self._open.get(case_id)
            if left is None:
                return
            if left > 1:
                self._open[case_id] = left - 1
                return
            del self._open[case_id]
        self._score(self._cases[case_id])


@dataclass
class _RunState:
    gens: dict[tuple[str, int], Generation] = field(default_factory=dict)
    judged: dict[tuple[str, int], dict[str, MetricValue]] = field(default_factory=dict)
    vectors: dict[str, list[float]] = field(default_factory=dict)
    wanted_vectors: set[str] = field(default_factory=set)
    guard: dict[str, dict[tuple[Source, int], Assessment | str]] = field(default_factory=dict)
    retests: dict[tuple[str, str], MetricValue] = field(default_factory=dict)  # (case id, rubric): 2nd judgement
    grounded: dict[tuple[str, int], dict[str, GroundingScore] | str] = field(default_factory=dict)
    scored: dict[str, CaseResult] = field(default_factory=dict)  # cases scored as their last call came back
    fatal: list[str] = field(default_factory=list)


def drift_of(results: Sequence[CaseResult], config: GateConfig) -> Drift | None:
    """The run's drift from the per-case terms (``drift_raw``, ``drift_noise``); None when no case is paired."""
    paired = [r for r in results if r.drift_raw is not None]
    if not paired:
        return None
    raw = [float(r.drift_raw) for r in paired if r.drift_raw is not None]
    measured = any(r.drift_noise is not None for r in paired)
    nz = [float(r.drift_noise or 0.0) for r in paired] if measured else None
    return drift_from_pairs(raw, nz, config)


def diversity_of(
    outputs: Sequence[str],
    vector_sum: Sequence[float] | None,
    n_vectors: int,
    baseline: RunResult | None,
    config: GateConfig,
    keep_sum: bool = False,
) -> Diversity | None:
    """distinct-1/2 of the answers and their embedding dispersion (from the sum of their unit vectors:
    mean pairwise cosine = (|sum|^2 - n) / (n (n - 1))), compared with the baseline's."""
    if len(outputs) < 2:
        return None
    d = Diversity(distinct_1=distinct_n(outputs, 1), distinct_2=distinct_n(outputs, 2))
    if vector_sum is not None and n_vectors >= 2:
        sq = sum(x * x for x in vector_sum)
        d.dispersion = max(0.0, 1.0 - (sq - n_vectors) / (n_vectors * (n_vectors - 1)))
    if keep_sum and vector_sum is not None:
        d.vector_sum, d.n_vectors = [float(x) for x in vector_sum], n_vectors
    if baseline and baseline.diversity:
        b = baseline.diversity
        d.baseline_distinct_2, d.baseline_dispersion = b.distinct_2, b.dispersion
        drop = config.gate.diversity_drop
        notes = []
        if b.distinct_2 and d.distinct_2 is not None and d.distinct_2 < (1 - drop) * b.distinct_2:
            notes.append(f"distinct-2 {d.distinct_2:.3f} vs baseline {b.distinct_2:.3f}")
        if b.dispersion and d.dispersion is not None and d.dispersion < (1 - drop) * b.dispersion:
            notes.append(f"embedding dispersion {d.dispersion:.3f} vs baseline {b.dispersion:.3f}")
        d.collapsed = bool(notes)
        d.note = "; ".join(notes) + (f" (drop > {drop:.0%})" if notes else "")
    return d


def hallucination_list(results: Sequence[CaseResult]) -> list[dict[str, Any]]:
    return [
        {"case_id": r.id, "suite": r.suite, "claims": r.unsupported_claims, "output": r.output}
        for r in results
        if r.hallucinated
    ]


def gate_results(
    results: list[CaseResult],
    baseline: RunResult | None,
    config: GateConfig,
    embedder_name: str | None,
    not_run_names: set[str],
    fatal: Sequence[str],
    drift: Drift | None,
    diversity: Diversity | None,
    retest: dict[str, Any] | None = None,
) -> tuple[list[Aggregate], list[Comparison], Verdict, dict[str, float]]:
    """Aggregates (engine + safety suites), paired comparisons and the verdict for a set of case results.
    The one gating path for a run and for merged shards. ``retest``: the judge's self-agreement on this run."""
    aggregates: list[Aggregate] = []
    for suite in sorted({c.suite for c in results}):
        aggregates += aggregate_suite(
            [r for r in results if r.suite == suite], suite, config, embedder_name, not_run_names
        )
    aggregates += safety_aggregates(results, baseline, config)
    comparisons = compare(results, baseline, config) if baseline else []
    verdict, unscored = decide(aggregates, comparisons, drift, diversity, results, config, fatal)
    verdict = decide_with_trust(verdict, aggregates, results, retest, config)
    return aggregates, comparisons, verdict, unscored


def borderline_targets(
    results: Sequence[CaseResult], config: GateConfig, embedder: str | None, margin: float
) -> set[tuple[str, str]]:
    """(case id, judge rubric) pairs to re-judge with the heavy judge: a judged score within ``margin`` of its
    threshold on either side, and every case of a suite whose judged aggregate is within ``margin`` of its
    threshold (or whose interval straddles it)."""
    out: set[tuple[str, str]] = set()
    for r in results:
        th = config.thresholds_for(r.suite, embedder)
        for rubric in JUDGE_METRICS:
            limit = getattr(th, rubric)
            v = r.value(rubric)
            if limit is not None and v is not None and abs(v - limit) <= margin:
                out.add((r.id, rubric))
    for suite in sorted({r.suite for r in results}):
        group = [r for r in results if r.suite == suite]
        for agg in aggregate_suite(group, suite, config, embedder, set()):
            if agg.metric not in JUDGE_METRICS or agg.threshold is None or agg.value is None:
                continue
            if agg.status == "borderline" or abs(agg.value - agg.threshold) <= margin:
                out.update((r.id, agg.metric) for r in group if r.value(agg.metric) is not None)
    return out


def run_evaluation(
    *,
    golden: Golden,
    cases: Sequence[Case],
    candidate: Candidate,
    config: GateConfig,
    options: RunOptions,
    baseline: RunResult | None = None,
    not_run: Sequence[dict[str, str]] = (),
    **collaborators: Unpack[Collaborators],
) -> RunResult:
    """Build a ``Runner`` with these collaborators and run it."""
    runner = Runner(golden=golden, candidate=candidate, config=config, options=options, **collaborators)
    return runner.run(cases, baseline=baseline, not_run=not_run)


def rescore_baseline(
    baseline: RunResult,
    *,
    golden: Golden,
    cases: Sequence[Case],
    config: GateConfig,
    options: RunOptions,
    judge: Judge | None,
    embedder: Embedder | None,
    cache: Cache | None = None,
) -> tuple[RunResult | None, dict[str, Any]]:
    """Make the baseline comparable with this run: when it was scored by another judge (model or rubric) or
    embedder, re-score its stored answers with the current ones (through the cache) so the paired comparison
    measures the candidate, not the judge change. Returns (baseline to compare with, or None when the comparison
    must be refused; a note for results.json and the report)."""
    emb = {"name": embedder.name, "model_id": embedder.model_id} if embedder is not None else None
    reasons = rescore_reasons(baseline, judge.identity() if judge is not None else None, emb)
    if not reasons:
        return baseline, {}
    wanted = {c.id for c in cases}
    missing = unrescorable(baseline, wanted)
    if missing:
        why = (
            "; ".join(reasons)
            + f", and the baseline holds no stored answer for {len(missing)} paired case(s) ({', '.join(missing[:5])})"
            + ": its scores cannot be re-scored, so the comparison is refused"
        )
        return None, {"run_id": baseline.run_id, "refused": why, "reasons": reasons}
    paired = [c for c in cases if baseline.case(c.id) is not None]
    from evalgate.adapters.replay import ReplayCandidate

    rescored = run_evaluation(
        golden=golden,
        cases=paired,
        candidate=ReplayCandidate.from_result(baseline),
        config=config,
        options=RunOptions(tier=options.tier, repeats=baseline.repeats, concurrency=options.concurrency),
        judge=judge,
        embedder=embedder,
        cache=cache,
    )
    note = {
        "run_id": baseline.run_id,
        "reasons": reasons,
        "judge": rescored.judge,
        "embedder": rescored.embedder,
        "cases": len(paired),
        "model_calls": rescored.usage.model_calls,
        "cache_hits": rescored.usage.cache_hits,
        "cost_usd": rescored.usage.cost_usd,
    }
    kept = {c.id for c in paired}
    comparable = baseline.model_copy(
        update={
            "cases": rescored.cases + [c for c in baseline.cases if c.id not in kept],
            "judge": rescored.judge,
            "embedder": rescored.embedder,
            "drift": rescored.drift if baseline.repeats > 1 else baseline.drift,
            "diversity": rescored.diversity,
        }
    )
    return comparable, note
