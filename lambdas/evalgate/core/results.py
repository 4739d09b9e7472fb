"""The run record: what ``results.json`` holds and what every report is rendered from.

A later run loads an approved ``results.json`` as its baseline, so this schema is versioned and validated.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypedDict

from pydantic import BaseModel, ConfigDict, Field

from evalgate.core.models import Case, Generation, MetricValue
from evalgate.core.verdicts import VerdictName

SCHEMA_VERSION = 1


class CaseResult(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str
    suite: str
    category: str
    tags: list[str] = Field(default_factory=list)
    expected: str
    observed: str | None = None  # behaviour seen in the (first) answer
    question: str = ""
    reference: str = ""
    output: str | None = None  # first repeat's answer
    generations: list[Generation] = Field(default_factory=list)
    metrics: dict[str, MetricValue] = Field(default_factory=dict)
    status: Literal["pass", "fail", "error", "unscored"] = "pass"
    failures: list[str] = Field(default_factory=list)
    hallucinated: bool | None = None
    unsupported_claims: list[str] = Field(default_factory=list)
    latency_ms: float | None = None  # total answer time, measured now (never a cached value)
    ttft_ms: float | None = None  # time to first token, measured now, when the candidate reports it
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    # Per-case drift terms (1 - cos vs the baseline answer, and this case's run-to-run noise), kept so that
    # shards can be merged and re-gated exactly (``evalgate merge``).
    drift_raw: float | None = None
    drift_noise: float | None = None
    # With repeats: share of repeats that pass on their own, spread (max - min) of each metric, and whether the
    # verdict flips between repeats (flaky).
    repeat_pass_rate: float | None = None
    score_spread: dict[str, float] = Field(default_factory=dict)
    flaky: bool = False

    def value(self, metric: str) -> float | None:
        m = self.metrics.get(metric)
        return m.value if m else None


class Aggregate(BaseModel):
    metric: str
    suite: str
    n: int
    n_unscored: int = 0
    value: float | None
    ci_low: float | None = None
    ci_high: float | None = None
    method: Literal["bootstrap", "wilson", "none"] = "none"
    threshold: float | None = None
    direction: Literal["min", "max"] | None = None
    status: Literal["pass", "fail", "borderline", "not_gated", "not_run", "insufficient"] = "not_gated"
    note: str = ""


class Comparison(BaseModel):
    metric: str
    suite: str
    n_paired: int
    baseline: float | None
    candidate: float | None
    diff: float | None  # candidate - baseline
    ci_low: float | None
    ci_high: float | None
    worse: bool = False  # significant and in the bad direction (after family-wise control)
    exceeds: bool = False  # worse by more than gate.max_regression
    # Added by issue 14 (optional, so older results.json files still load as baselines).
    segment: str = ""  # "" = the whole suite; "category=returns" or "tag=high_stakes" for a segment
    n_cases: int = 0  # cases in the segment (paired or not)
    test: str = ""  # "paired-t" (mean metrics) or "mcnemar-exact" (pass/fail and 0/1 rates)
    p_value: float | None = None  # one-sided, harmful direction
    p_adjusted: float | None = None  # family-wise (Holm step-down with Tarone's count) over every comparison
    broke: int | None = None  # discordant pairs: passed (or 0) on the baseline, fail (or 1) now
    fixed: int | None = None  # ... and the other way round
    worst: list[str] = Field(default_factory=list)  # ids of the cases that broke, worst first

    @property
    def label(self) -> str:
        """``pass_rate (category=returns)`` for a segment, the metric name otherwise."""
        return f"{self.metric} ({self.segment})" if self.segment else self.metric

    def evidence(self) -> str:
        """The test behind the flag, e.g. ``6 broke, 0 fixed; mcnemar-exact p=0.016, family-adjusted 0.031``."""
        parts = [f"{self.broke} broke, {self.fixed} fixed"] if self.broke is not None else []
        if self.p_value is not None:
            adjusted = f", family-adjusted {self.p_adjusted:.2g}" if self.p_adjusted is not None else ""
            parts.append(f"{self.test} p={self.p_value:.2g}{adjusted}")
        return "; ".join(parts)


class Drift(BaseModel):
    score: float | None = None  # mean excess semantic change of answers vs the baseline's (see README)
    ci_low: float | None = None
    ci_high: float | None = None
    raw: float | None = None  # mean 1 - cos(candidate, baseline) before removing noise
    noise: float | None = None  # mean 1 - cos between repeats of the candidate
    noise_measured: bool = False
    n_paired: int = 0
    threshold: float = 0.05
    significant: bool = False
    review: bool = False
    p_value: float | None = None  # one-sided t-test of the excess against 0 (issue 14)
    p_adjusted: float | None = None  # within the gate's family of tests


class Diversity(BaseModel):
    distinct_1: float | None = None
    distinct_2: float | None = None
    dispersion: float | None = None
    baseline_distinct_2: float | None = None
    baseline_dispersion: float | None = None
    collapsed: bool = False
    note: str = ""
    # Sum of the unit answer embeddings and their count: enough to recompute dispersion over merged shards.
    vector_sum: list[float] | None = None
    n_vectors: int = 0


class Usage(BaseModel):
    model_calls: int = 0
    cache_hits: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    by_model: dict[str, dict[str, float]] = Field(default_factory=dict)
    retries: int = 0  # calls made again (throttled, transient, or an unparseable judge reply); in the counts above


class Verdict(BaseModel):
    verdict: VerdictName
    exit_code: int
    reasons: list[str] = Field(default_factory=list)  # the evidence that led to the verdict, most important first


class RunIdentity(TypedDict):
    run_id: str
    started_at: str
    finished_at: str
    tool_version: str


def run_identity(started_at: str, finished_at: str | None = None) -> RunIdentity:
    """A new run's id, start and finish times (finished now unless given) and the tool version: the fields every
    run record starts with, whoever makes it (an evaluation, a merge, a skip, a load test, a shadow report)."""
    from evalgate import __version__

    return RunIdentity(
        run_id=uuid.uuid4().hex[:12],
        started_at=started_at,
        finished_at=finished_at or datetime.now(UTC).isoformat(),
        tool_version=__version__,
    )


class RunResult(BaseModel):
    model_config = ConfigDict(extra="ignore")

    schema_version: int = SCHEMA_VERSION
    run_id: str
    started_at: str
    finished_at: str
    tool_version: str
    tier: str
    suites: list[str]
    candidate: dict[str, Any]
    judge: dict[str, Any] | None = None
    embedder: dict[str, Any] | None = None
    baseline: dict[str, Any] | None = None  # where the baseline came from (path, run id)
    repeats: int = 1
    config: dict[str, Any] = Field(default_factory=dict)
    not_run: list[dict[str, str]] = Field(default_factory=list)  # metrics this tier could not compute, and why
    cases: list[CaseResult] = Field(default_factory=list)
    aggregates: list[Aggregate] = Field(default_factory=list)
    comparisons: list[Comparison] = Field(default_factory=list)
    drift: Drift | None = None
    diversity: Diversity | None = None
    unscored: dict[str, float] = Field(default_factory=dict)  # count, total, rate, budget
    usage: Usage = Field(default_factory=Usage)
    hallucinations: list[dict[str, Any]] = Field(default_factory=list)
    verdict: Verdict
    # Added by issue 5 (all optional, so older results.json files still load as baselines).
    commit: str | None = None  # git commit evaluated (the next --tier auto diffs against an approved one)
    config_sha256: str | None = None  # fingerprint of the gate config (shards of one run must share it)
    tier_decision: dict[str, Any] | None = None  # --tier auto: requested, chosen tier, reasons, changed files
    skipped: bool = False  # --tier auto skipped evaluation (docs only); cases are carried from the baseline
    shard: dict[str, Any] | None = None  # --shard k/n: index, count, cases before sharding
    merged_from: list[dict[str, Any]] = Field(default_factory=list)  # evalgate merge: the shard runs
    escalation: dict[str, Any] | None = None  # borderline cases re-judged by the heavy judge
    cost: dict[str, Any] | None = None  # --max-cost: cap, spend, whether the run was stopped
    guardrail: dict[str, Any] | None = None  # ApplyGuardrail: guardrail id/version, calls
    evaluation_jobs: list[dict[str, Any]] = Field(default_factory=list)  # Bedrock evaluation jobs used
    load: dict[str, Any] | None = None  # evalgate load: schedule, counts, latency definition
    fatal: list[str] = Field(default_factory=list)  # run-level problems (cost cap, time budget...): ERROR
    # Added by issue 19 (judges you can trust).
    dataset_sha256: str | None = None  # fingerprint of the cases evaluated and the knowledge they cite
    judge_calibration: list[dict[str, Any]] = Field(default_factory=list)  # each judge's record check
    self_agreement: dict[str, Any] | None = None  # test-retest of the judge on this run
    flaky: list[dict[str, Any]] = Field(default_factory=list)  # cases whose verdict flips between repeats
    baseline_mismatch: list[str] = Field(default_factory=list)  # --baseline-mismatch review: why it did not match
    warnings: list[str] = Field(default_factory=list)  # advice that does not change the verdict (golden freshness)
    tickets: list[dict[str, Any]] = Field(default_factory=list)  # known-error tickets opened or counted by this run
    # The retry policy's account (issue 15): concurrency (max, floor, lowest, final) and, per model, calls,
    # throttles, transient errors, retries, given-up calls, unscored judgements/embeddings and errors.
    faults: dict[str, Any] | None = None

    def case(self, case_id: str) -> CaseResult | None:
        return next((c for c in self.cases if c.id == case_id), None)


def load_result(path: Path, what: str = "results.json") -> RunResult:
    """A results.json (a baseline or a shard's run); every problem is an InputError naming the file."""
    from pydantic import ValidationError

    from evalgate.core.errors import InputError, format_validation_error
    from evalgate.core.inputs import parse_json, read_text

    name = str(path)
    data = parse_json(read_text(Path(path), f"{what} results.json" if what == "baseline" else what), name)
    if not isinstance(data, dict):
        raise InputError.single(name, None, f"not an evalgate results.json ({what}): expected a JSON object")
    try:
        return RunResult.model_validate(data)
    except ValidationError as exc:
        first = format_validation_error(exc, root="(file)")[0]
        raise InputError.single(name, None, f"not an evalgate results.json ({what}): {first}") from None


def baseline_mismatch(
    baseline: RunResult, cases: list[Case], config: dict[str, Any], sections: list[str], ignore: Sequence[str] = ()
) -> list[str]:
    """Why ``baseline`` cannot be compared with a run of ``cases`` under ``config`` (empty: it can).

    - no case id in common: every paired comparison would be "not run";
    - a shared case id whose prompt or reference differs: the baseline was made from another golden set;
    - a decision section of the gate config (``sections``: thresholds, models, gate rules...) differs, leaving out
      ``ignore`` (sections or dotted keys: the judge, whose change is handled by re-scoring the baseline).
    """
    reasons: list[str] = []
    mine = {c.id: c for c in cases}
    shared = [b for b in baseline.cases if b.id in mine]
    if not shared:
        reasons.append(
            f"the baseline shares no case id with this run ({len(baseline.cases)} baseline cases, {len(mine)} here)"
        )
    changed = [b.id for b in shared if b.question and b.reference and (b.question, b.reference) != _text(mine[b.id])]
    if changed:
        reasons.append(
            f"the baseline was made from another golden set: {len(changed)} shared case(s) differ in prompt or "
            f"reference (e.g. {', '.join(sorted(changed)[:3])})"
        )
    if baseline.config:

        def kept(section: str, value: Any) -> Any:
            if isinstance(value, dict):
                return {k: v for k, v in value.items() if f"{section}.{k}" not in ignore}
            return value

        differ = [
            s
            for s in sections
            if s in config and s not in ignore and kept(s, baseline.config.get(s)) != kept(s, config.get(s))
        ]
        if differ:
            reasons.append(
                "the baseline was made with another gate config (" + ", ".join(f"[{s}]" for s in differ) + " differ)"
            )
    return reasons


def _text(case: Case) -> tuple[str, str]:
    return case.question, case.reference


EXCERPT_CHARS = 160
# ------------------------------------------------------------------------------ what a run found, as text
# Shared by the reports and by what carries a finding out (tickets, notifications): no rendering here.


_CONTROL = re.compile("[\x00-\x08\x0e-\x1f\x7f-\x9f]")


def strip_controls(text: str) -> str:
    """Replace control characters (NUL, ANSI escape sequences' ESC...) that could corrupt a log or a terminal."""
    return _CONTROL.sub("\ufffd", text)


def one_line(text: str) -> str:
    return re.sub(r"\s+", " ", strip_controls(text)).strip()


def excerpt(text: str | None, limit: int = EXCERPT_CHARS) -> str:
    if not text:
        return ""
    flat = one_line(text)
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def answer_text(case: CaseResult) -> str | None:
    if case.output is not None:
        return case.output
    return next((g.output for g in case.generations if g.output is not None), None)


def answer_or_error(case: CaseResult) -> str:
    answer = answer_text(case)
    if answer is not None:
        return answer
    err = next((g.error for g in case.generations if g.error), None)
    return f"(no answer: {err})" if err else "(no answer)"


# --------------------------------------------------------------------------------------------------- run facts


@dataclass(frozen=True)
class HallucinationItem:
    case_id: str
    suite: str
    category: str
    claims: list[str] = field(default_factory=list)
    reason: str = ""
    answer: str = ""


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value if v is not None and str(v).strip()]
    return [str(value)] if str(value).strip() else []


def first_value(d: dict[str, Any], *keys: str) -> Any:
    return next((d[k] for k in keys if d.get(k) not in (None, "", [])), None)


def hallucination_items(result: RunResult) -> list[HallucinationItem]:
    """Every hallucination of the run: the run's own list, plus any case flagged ``hallucinated`` it missed."""
    items: list[HallucinationItem] = []
    seen: set[str] = set()
    for entry in result.hallucinations:
        cid = str(first_value(entry, "case_id", "id", "case") or "?")
        case = result.case(cid)
        reason = first_value(entry, "reason", "reasons", "judge_reason", "explanation")
        items.append(
            HallucinationItem(
                case_id=cid,
                suite=str(first_value(entry, "suite") or (case.suite if case else "")),
                category=str(first_value(entry, "category") or (case.category if case else "")),
                claims=_as_list(first_value(entry, "unsupported_claims", "claims", "claim"))
                or (list(case.unsupported_claims) if case else []),
                reason="; ".join(_as_list(reason)) or (_hallucination_reason(case) if case else ""),
                answer=str(first_value(entry, "answer", "output", "excerpt") or _case_answer(case)),
            )
        )
        seen.add(cid)
    for case in result.cases:
        if case.hallucinated and case.id not in seen:
            items.append(
                HallucinationItem(
                    case.id,
                    case.suite,
                    case.category,
                    list(case.unsupported_claims),
                    _hallucination_reason(case),
                    answer_text(case) or "",
                )
            )
    return items


def _case_answer(case: CaseResult | None) -> str:
    return (answer_text(case) or "") if case else ""


def _hallucination_reason(case: CaseResult) -> str:
    m = case.metrics.get("hallucination") or case.metrics.get("faithfulness")
    return m.reason if m else ""
