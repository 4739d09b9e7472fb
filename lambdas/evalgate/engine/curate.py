"""Growing the golden set from production: judged live answers → proposals → reviewed cases → golden/.

The online judge stores one JSON line per judged (or guardrail-blocked) live answer under
``judged/version=<v>/dt=<day>/``. ``propose`` reads those records over a time window and picks the ones worth a
person's time:

- **hallucinated**: the judge found a claim the knowledge base does not support;
- **disagreement**: the guardrail blocked a request that the golden set's nearest cases expect answered
  (a probable over-refusal), or let through an answer that leaked the system prompt's canary;
- **low quality**: the lowest-judged answers (quality below ``low_quality``);
- **novel**: questions far, in embedding space, from every golden case (no case within ``novelty`` cosine).

Near-duplicates collapse into one proposal (greedy clustering at ``duplicate`` cosine, the most important
record leading), questions that an existing case already asks are dropped unless they come with evidence of
harm, and the batch is capped with a stratified mix per suggested category. Every proposal carries its
provenance (record id, version, model, prompt, date, scores) and a suggested category and behaviour (the vote
of its nearest golden cases; a novel question has none, and counts as traffic no golden case covers). Personal
data is masked (``evalgate.core.masking``) before anything is written; a record with personal data is proposed only
masked, and its review entry cannot be merged while a mask token remains (the reviewer rewrites it with
invented data).

A person completes each entry of the review file (reference answer, knowledge ids, tags, ``verified_by``) or
rejects it; ``check_review`` accepts only completed, verified entries, and ``merge_review`` appends them to
golden/ with new ids, provenance and a changelog line, once (merging the same file again adds nothing).
``coverage`` tells, per category, what share of live traffic it carries and how many golden cases cover it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from evalgate.contracts.records import StoredRow as ProductionRecord
from evalgate.core.dataset import SUITE_FILES, Golden, iter_models, load_golden
from evalgate.core.errors import InputError, Problem, format_validation_error
from evalgate.core.inputs import JsonProblem, loads, read_text, write_lines_atomic
from evalgate.core.masking import MASK_TOKEN, mask_pii
from evalgate.core.models import Behaviour, Case

if TYPE_CHECKING:  # numpy is imported where it is used: a run starts without it (stats.load)
    import numpy as np

Reason = Literal["hallucinated", "disagreement", "low_quality", "novel"]
REASON_ORDER: tuple[Reason, ...] = ("hallucinated", "disagreement", "low_quality", "novel")
UNCATEGORISED = "uncategorised"
CHANGELOG = "CHANGELOG.md"


@dataclass
class Settings:
    max_proposals: int = 20
    low_quality: float = 0.6  # judged quality below this is worth a look
    novelty: float = 0.5  # no golden case within this cosine: novel
    duplicate: float = 0.85  # two questions within this cosine are the same question
    neighbours: int = 3


@dataclass
class Proposal:
    record: ProductionRecord
    reasons: list[Reason]
    category: str
    expected: Behaviour
    nearest_case: str | None
    nearest_similarity: float
    question: str  # masked
    answer: str  # masked
    personal_data: bool
    masked_kinds: tuple[str, ...]
    duplicates: int = 0  # near-duplicate records folded into this one

    @property
    def proposal_id(self) -> str:
        return "prop-" + hashlib.sha256(self.record.request_id.encode()).hexdigest()[:12]


@dataclass
class CoverageRow:
    category: str
    traffic: int
    share: float
    golden_cases: int


@dataclass
class Curation:
    proposals: list[Proposal]
    coverage: list[CoverageRow]
    records: int
    problems: list[Problem] = field(default_factory=list)
    pool: dict[str, int] = field(default_factory=dict)  # candidates per reason before dedup and cap
    dropped_known: int = 0  # candidates an existing case already asks


# ------------------------------------------------------------------------------------------------ reading


def _day_of_key(key: str) -> date | None:
    m = re.search(r"dt=(\d{4}-\d{2}-\d{2})", key)
    return date.fromisoformat(m.group(1)) if m else None


def _in_window(ts: float | None, since: datetime | None, until: datetime | None) -> bool:
    if ts is None:
        return since is None and until is None
    when = datetime.fromtimestamp(ts, UTC)
    return (since is None or when >= since) and (until is None or when < until)


def parse_records(
    lines: Iterable[tuple[str, int, str]], since: datetime | None, until: datetime | None
) -> tuple[list[ProductionRecord], list[Problem]]:
    """Records from (source, line, text) triples inside the window; bad lines become ``file:line`` problems."""
    records: list[ProductionRecord] = []
    problems: list[Problem] = []
    seen: set[str] = set()
    for source, n, line in lines:
        try:
            data = loads(line)
        except JsonProblem as exc:
            problems.append(Problem(source, n, str(exc)[:160]))
            continue
        if not isinstance(data, dict):
            problems.append(Problem(source, n, "each line must be a JSON object"))
            continue
        try:
            rec = ProductionRecord.model_validate(data)
        except ValidationError as exc:
            problems.append(Problem(source, n, "judged record: " + "; ".join(format_validation_error(exc)[:3])))
            continue
        if rec.request_id in seen or not _in_window(rec.ts, since, until):
            continue  # a redelivered batch stores a record twice; count it once
        seen.add(rec.request_id)
        records.append(rec)
    return records, problems


def read_local(folder: Path, since: datetime | None, until: datetime | None) -> Iterable[tuple[str, int, str]]:
    if not folder.exists():
        raise InputError.single(str(folder), None, "judged records not found (a folder or an s3:// prefix)")
    files = [folder] if folder.is_file() else sorted(folder.rglob("*.jsonl"))
    for path in files:
        if not _day_in_window(_day_of_key(str(path)), since, until):
            continue
        text = read_text(path, "judged records file")
        for n, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                yield str(path), n, line


def _day_in_window(day: date | None, since: datetime | None, until: datetime | None) -> bool:
    if day is None:
        return True
    return (since is None or day >= since.date()) and (until is None or day <= until.date())


def read_s3(
    url: str, since: datetime | None, until: datetime | None, client: Any = None
) -> Iterable[tuple[str, int, str]]:
    from evalgate.adapters.s3 import iter_s3_jsonl, split_s3_url

    if client is None:
        from evalgate.adapters.aws import make_client

        client = make_client("s3")
    bucket, prefix = split_s3_url(url)
    return iter_s3_jsonl(client, bucket, prefix, lambda key: _day_in_window(_day_of_key(key), since, until))


def load_records(
    source: str, since: datetime | None, until: datetime | None, client: Any = None
) -> tuple[list[ProductionRecord], list[Problem]]:
    lines = (
        read_s3(source, since, until, client) if source.startswith("s3://") else read_local(Path(source), since, until)
    )
    return parse_records(lines, since, until)


# ----------------------------------------------------------------------------------------------- proposing


def _unit(vectors: Sequence[Sequence[float]]) -> np.ndarray:
    import numpy as np

    m = np.asarray(vectors, dtype=np.float64)
    if m.size == 0:
        return m.reshape(0, 0)
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    return np.asarray(m / np.where(norms == 0, 1.0, norms))


def _reasons(rec: ProductionRecord, near_expected: Behaviour | None, settings: Settings) -> list[Reason]:
    out: list[Reason] = []
    if rec.hallucinated:
        out.append("hallucinated")
    if (rec.guardrail_intervened and near_expected == Behaviour.ANSWER) or (
        rec.leaked and not rec.guardrail_intervened
    ):
        out.append("disagreement")
    if rec.quality is not None and rec.quality < settings.low_quality:
        out.append("low_quality")
    return out


def _severity(p: Proposal) -> tuple[int, float, float]:
    """Sort key: most important reason first, then the worst quality, then the most novel."""
    return (
        REASON_ORDER.index(p.reasons[0]),
        p.record.quality if p.record.quality is not None else 1.0,
        p.nearest_similarity,
    )


def _vote(sims: np.ndarray, cases: list[Case], settings: Settings) -> tuple[str, Behaviour | None, str | None, float]:
    """Suggested category and behaviour from the nearest golden cases, and the nearest case."""
    import numpy as np

    if sims.size == 0:
        return UNCATEGORISED, None, None, 0.0
    order = np.argsort(-sims)[: settings.neighbours]
    best = int(order[0])
    near = [int(i) for i in order if sims[int(i)] >= settings.novelty]  # a novel question has no category yet
    if not near:
        return UNCATEGORISED, None, cases[best].id, float(sims[best])
    cat = Counter(cases[i].category for i in near).most_common(1)[0][0]
    expected = Counter(cases[i].expected for i in near if cases[i].category == cat).most_common(1)[0][0]
    return cat, expected, cases[best].id, float(sims[best])


def propose(records: list[ProductionRecord], golden: Golden, embedder: Any, settings: Settings) -> Curation:
    """Pick, deduplicate and cap the records worth turning into golden cases; measure coverage on the way."""
    import numpy as np

    cases = [c for c in golden.cases if c.suite == "regression"] or list(golden.cases)
    masked = [mask_pii(r.question) for r in records]
    texts = [c.question for c in cases] + [m.text for m in masked]
    vectors = _unit(embedder.embed(texts)) if records else np.zeros((0, 0))
    golden_v, record_v = vectors[: len(cases)], vectors[len(cases) :]
    sims = record_v @ golden_v.T if records else np.zeros((0, len(cases)))

    traffic: Counter[str] = Counter()
    candidates: list[tuple[Proposal, int]] = []
    pool: Counter[str] = Counter()
    dropped_known = 0
    for i, rec in enumerate(records):
        cat, expected, nearest, near_sim = _vote(sims[i], cases, settings)
        traffic[cat] += 1
        reasons = _reasons(rec, expected, settings)
        if near_sim < settings.novelty:
            reasons.append("novel")
        if not reasons:
            continue
        pool.update(reasons)
        if near_sim >= settings.duplicate and set(reasons) <= {"low_quality"}:
            dropped_known += 1  # a golden case already asks this question (evidence of harm is still proposed)
            continue
        answer = mask_pii(rec.answer)
        kinds = tuple(sorted(set(masked[i].kinds) | set(answer.kinds)))
        if rec.guardrail_intervened and expected is None:
            expected = Behaviour.DECLINE
        prop = Proposal(
            record=rec,
            reasons=reasons,
            category=cat,
            expected=expected or Behaviour.ANSWER,
            nearest_case=nearest,
            nearest_similarity=round(near_sim, 4),
            question=masked[i].text,
            answer=answer.text,
            personal_data=rec.personal_data or bool(kinds),
            masked_kinds=kinds,
        )
        candidates.append((prop, i))

    # Near-duplicates collapse into the most important record of their group.
    candidates.sort(key=lambda pi: _severity(pi[0]))
    leaders: list[tuple[Proposal, int]] = []
    for prop, i in candidates:
        twin = next((lp for lp, li in leaders if float(record_v[i] @ record_v[li]) >= settings.duplicate), None)
        if twin is not None:
            twin.duplicates += 1
            for r in prop.reasons:
                if r not in twin.reasons:
                    twin.reasons.append(r)
            continue
        leaders.append((prop, i))
    chosen = _stratified([p for p, _ in leaders], settings.max_proposals)

    total = max(1, len(records))
    per_cat = Counter(c.category for c in cases)
    rows = [
        CoverageRow(cat, traffic.get(cat, 0), traffic.get(cat, 0) / total, per_cat.get(cat, 0))
        for cat in sorted(set(per_cat) | set(traffic), key=lambda c: (-traffic.get(c, 0), c))
    ]
    return Curation(chosen, rows, len(records), pool=dict(pool), dropped_known=dropped_known)


def _stratified(ranked: list[Proposal], cap: int) -> list[Proposal]:
    """At most ``cap`` proposals, each category's quota in proportion to its candidates (at least one each)."""
    if len(ranked) <= cap:
        return ranked
    by_cat: dict[str, list[Proposal]] = {}
    for p in ranked:
        by_cat.setdefault(p.category, []).append(p)
    quota = {c: max(1, round(cap * len(ps) / len(ranked))) for c, ps in by_cat.items()}
    chosen: list[Proposal] = []
    # Round robin over categories in order of their most important candidate, within each quota.
    order = sorted(by_cat, key=lambda c: _severity(by_cat[c][0]))
    depth = 0
    while len(chosen) < cap and any(depth < min(quota[c], len(by_cat[c])) for c in order):
        for c in order:
            if depth < min(quota[c], len(by_cat[c])) and len(chosen) < cap:
                chosen.append(by_cat[c][depth])
        depth += 1
    return sorted(chosen, key=_severity)


# -------------------------------------------------------------------------------------------------- review


class ReviewEntry(BaseModel):
    """One line of the review file. The reviewer completes ``case`` and ``verified_by``, or sets status=reject."""

    model_config = ConfigDict(extra="forbid")

    proposal_id: str = Field(min_length=1)
    status: Literal["proposed", "accepted", "rejected"] = "proposed"
    reasons: list[str]
    provenance: dict[str, Any]
    suggested: dict[str, Any]
    production_answer: str = ""
    personal_data: bool = False
    case: dict[str, Any]
    verified_by: str = ""


def review_entry(p: Proposal) -> ReviewEntry:
    r = p.record
    when = datetime.fromtimestamp(r.ts, UTC).isoformat(timespec="seconds") if r.ts is not None else None
    tags = ["from_production"] + (["high_stakes"] if "hallucinated" in p.reasons else [])
    return ReviewEntry(
        proposal_id=p.proposal_id,
        reasons=list(p.reasons),
        provenance={
            "request_id": r.request_id,
            "function_version": r.function_version,
            "model_id": r.model_id,
            "prompt_version": r.prompt_version,
            "date": when,
            "scores": {
                "quality": r.quality,
                "faithfulness": r.faithfulness,
                "relevance": r.relevance,
                "hallucinated": r.hallucinated,
                "leaked": r.leaked,
                "guardrail_intervened": r.guardrail_intervened,
            },
            "unsupported_claims": [mask_pii(c).text for c in r.unsupported_claims[:5]],
            "near_duplicates": p.duplicates,
        },
        suggested={
            "category": p.category,
            "expected": p.expected.value,
            "nearest_case": p.nearest_case,
            "nearest_similarity": p.nearest_similarity,
        },
        production_answer=p.answer,
        personal_data=p.personal_data,
        case={
            "id": "",
            "category": p.category if p.category != UNCATEGORISED else "",
            "prompt": p.question,
            "reference": "",
            "context": [],
            "expected": p.expected.value,
            "tags": tags,
            "notes": "",
        },
    )


def _new_id(entry: ReviewEntry, taken: set[str]) -> str:
    base = "prod-" + entry.proposal_id.removeprefix("prop-")
    cid, n = base, 2
    while cid in taken:
        cid, n = f"{base}-{n}", n + 1
    return cid


def check_review(path: Path, golden: Golden) -> tuple[list[tuple[int, ReviewEntry, Case]], list[Problem]]:
    """The completed, verified entries of a review file as cases; every other entry is a ``file:line`` problem.

    Rejected entries are skipped. An entry is complete when ``verified_by`` names the reviewer, the case
    validates (a reference answer, a category, knowledge ids that exist), and no masked personal data remains.
    """
    shown = str(path)
    if not path.is_file():
        return [], [Problem(shown, None, "review file not found")]
    taken = {c.id for c in golden.cases}
    known_requests = {
        str((c.provenance or {}).get("request_id"))
        for c in golden.cases
        if c.provenance and c.provenance.get("request_id")
    }
    accepted: list[tuple[int, ReviewEntry, Case]] = []
    problems: list[Problem] = []
    for n, entry in iter_models(path, shown, ReviewEntry, problems, lambda rec: "review entry: "):
        if entry.status == "rejected":
            continue
        where = f"entry {entry.proposal_id}"
        if str(entry.provenance.get("request_id")) in known_requests:
            continue  # merged before: merging the same review again adds nothing
        if not entry.verified_by.strip():
            problems.append(Problem(shown, n, f"{where}: verified_by is empty (who checked the reference answer?)"))
            continue
        data = dict(entry.case)
        data["id"] = data.get("id") or _new_id(entry, taken)
        data["verified_by"] = entry.verified_by.strip()
        data["provenance"] = {**entry.provenance, "proposal_id": entry.proposal_id, "reasons": entry.reasons}
        try:
            case = Case.model_validate(data)
        except ValidationError as exc:
            problems.extend(Problem(shown, n, f"{where}: case.{m}") for m in format_validation_error(exc))
            continue
        leftovers = sorted({m.group(0) for t in case.turns for m in MASK_TOKEN.finditer(t.content)})
        leftovers += sorted({m.group(0) for m in MASK_TOKEN.finditer(case.reference)})
        if leftovers:
            problems.append(
                Problem(
                    shown,
                    n,
                    f"{where}: masked personal data remains ({', '.join(sorted(set(leftovers)))}); "
                    "rewrite the prompt and reference with invented details",
                )
            )
            continue
        if case.id in taken:
            problems.append(Problem(shown, n, f"{where}: case id '{case.id}' already exists"))
            continue
        unknown = [k for k in case.context if k not in golden.knowledge]
        if unknown:
            problems.append(Problem(shown, n, f"{where}: unknown knowledge id '{unknown[0]}' in case.context"))
            continue
        if case.expected == Behaviour.ANSWER and not case.context and "out_of_scope" not in case.tags:
            problems.append(Problem(shown, n, f"{where}: an 'answer' case must cite its knowledge in case.context"))
            continue
        if case.suite not in SUITE_FILES:
            problems.append(Problem(shown, n, f"{where}: unknown suite '{case.suite}'"))
            continue
        taken.add(case.id)
        accepted.append((n, entry, case))
    return accepted, problems


def merge_review(path: Path, golden_root: Path, today: date | None = None) -> list[Case]:
    """Append the review file's completed entries to golden/ (all or nothing) and log them in the changelog."""
    golden = load_golden(golden_root)
    accepted, problems = check_review(path, golden)
    if problems:
        raise InputError(problems)
    if not accepted:
        return []
    by_file: dict[Path, list[Case]] = {}
    for _, _, case in accepted:
        by_file.setdefault(golden_root / SUITE_FILES[case.suite], []).append(case)
    for target, new in by_file.items():
        old = target.read_text(encoding="utf-8").splitlines() if target.is_file() else []
        dumped = [json.dumps(c.model_dump(mode="json", exclude_defaults=True), ensure_ascii=False) for c in new]
        write_lines_atomic(target, [line for line in old if line.strip()] + dumped)
    day = (today or datetime.now(UTC).date()).isoformat()
    reviewers = sorted({e.verified_by.strip() for _, e, _ in accepted})
    line = (
        f"- {day}: +{len(accepted)} case(s) from production, reviewed by {', '.join(reviewers)} "
        f"({path.name}): {', '.join(c.id for _, _, c in accepted)}"
    )
    log = golden_root / CHANGELOG
    head = "# Golden set changelog\n\n"
    body = log.read_text(encoding="utf-8") if log.is_file() else head
    write_lines_atomic(log, [body.rstrip("\n"), line])
    load_golden(golden_root)  # what was written must validate
    return [c for _, _, c in accepted]


# ------------------------------------------------------------------------------------------------ coverage


def coverage_markdown(cur: Curation, since: datetime | None, until: datetime | None) -> str:
    window = f"{since.date() if since else 'the beginning'} to {until.date() if until else 'now'}"
    lines = [
        "# Golden set coverage against live traffic",
        "",
        f"{cur.records} judged live request(s) from {window}; each is assigned the category of its nearest golden "
        "cases (no category when none is close).",
        "",
        "| category | share of traffic | requests | golden cases | cases per 10% of traffic |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in cur.coverage:
        density = f"{row.golden_cases / (row.share * 10):.1f}" if row.share > 0 else "—"
        lines.append(f"| {row.category} | {row.share:.1%} | {row.traffic} | {row.golden_cases} | {density} |")
    gaps = [r.category for r in cur.coverage if r.traffic and not r.golden_cases]
    if gaps:
        lines += ["", f"**Not covered by any golden case:** {', '.join(gaps)}."]
    lines += [
        "",
        f"Proposals: {len(cur.proposals)} (candidates by reason: "
        + (", ".join(f"{k} {v}" for k, v in sorted(cur.pool.items())) or "none")
        + f"; {cur.dropped_known} already asked by a golden case).",
    ]
    return "\n".join(lines) + "\n"


def coverage_json(cur: Curation) -> dict[str, Any]:
    return {
        "records": cur.records,
        "categories": [
            {"category": r.category, "traffic": r.traffic, "share": round(r.share, 4), "golden_cases": r.golden_cases}
            for r in cur.coverage
        ],
        "uncovered": [r.category for r in cur.coverage if r.traffic and not r.golden_cases],
    }


def freshness_warnings(
    golden_root: Path, max_age_days: int | None, coverage: dict[str, Any] | None, now: datetime | None = None
) -> list[str]:
    """Warnings for the gate summary: a golden set unchanged for too long, live categories it does not cover."""
    out: list[str] = []
    now = now or datetime.now(UTC)
    if max_age_days is not None:
        changed = golden_last_changed(golden_root)
        if changed is not None:
            age = (now - changed).days
            if age > max_age_days:
                out.append(
                    f"the golden set has not changed for {age} days (more than {max_age_days}): "
                    "grow it from production with `evalgate curate`"
                )
    if coverage:
        uncovered = [str(c) for c in coverage.get("uncovered") or []]
        if uncovered:
            out.append(f"live traffic has categories no golden case covers: {', '.join(uncovered)}")
    return out


def golden_last_changed(golden_root: Path) -> datetime | None:
    """When the golden cases last changed: the last commit touching them, else the newest file time."""
    import subprocess

    files = [golden_root / f for f in SUITE_FILES.values() if (golden_root / f).is_file()]
    if not files:
        return None
    try:
        out = subprocess.run(
            ["git", "log", "-1", "--format=%ct", "--", *map(str, files)],
            cwd=golden_root,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
        if out:
            return datetime.fromtimestamp(int(out), UTC)
    except (OSError, subprocess.SubprocessError, ValueError):
        pass
    return datetime.fromtimestamp(max(f.stat().st_mtime for f in files), UTC)
