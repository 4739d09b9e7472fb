"""Calibration records: a judge earns the right to gate by being measured against human labels.

``evalgate calibrate --metric judge`` grades answers whose faithfulness people have labelled — HaluEval QA (right vs
hallucinated answers), TruthfulQA answers with human truth labels, and the demo domain's own labelled answers
(``golden/judge_labels.jsonl``, each label naming who verified it) — and writes a **record**: the judge (model or
profile id, prompt version, rubric hash), the datasets with their SHA-256, N, Cohen's kappa, AUROC and agreement
with 95% intervals, the score cut that best matches the labels, date, cost, and a hash of its own content.

A judged tier checks the record of each judge it uses (:func:`check_judge`): missing, for another model or rubric,
edited after it was measured, or below the floors of ``[judge_calibration]`` → the judge may not gate.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from evalgate import __version__
from evalgate.core.config import GateConfig
from evalgate.core.dataset import iter_models
from evalgate.core.errors import InputError, Problem
from evalgate.core.models import KnowledgeEntry
from evalgate.core.stats import bootstrap_statistic, cohen_kappa, wilson
from evalgate.engine.calibrate import auroc, best_threshold, read_rows
from evalgate.engine.cost import call_cost
from evalgate.engine.judge import Judge

if TYPE_CHECKING:  # numpy is imported where it is used: a run starts without it (stats.load)
    import numpy as np

RECORD_KIND = "evalgate.judge-calibration"
RECORD_SCHEMA = 1
HALUEVAL = Path("halueval_qa") / "halueval_qa_oneturn.jsonl"
TRUTHFULQA = Path("truthfulqa") / "truthfulqa_sample.jsonl"
TRUTHFULQA_LABELS = Path("truthfulqa_judge_truth") / "truthfulqa_judge_truth_sample.jsonl"


class JudgeLabel(BaseModel):
    """One demo-domain answer whose faithfulness to the cited knowledge a person (or, said so, a reviewer) checked."""

    model_config = ConfigDict(extra="forbid")

    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")]
    case_id: str = ""
    source: str = ""
    question: Annotated[str, Field(min_length=1)]
    answer: Annotated[str, Field(min_length=1)]
    knowledge: Annotated[list[str], Field(min_length=1)]
    label: Literal["faithful", "unfaithful"]
    why: Annotated[str, Field(min_length=1)]
    verified_by: Annotated[str, Field(min_length=1)]


def load_judge_labels(path: Path, knowledge: dict[str, KnowledgeEntry] | None = None) -> list[JudgeLabel]:
    """Read a label file; every problem is ``file:line: message`` (all of them, then one InputError)."""
    shown = str(path)
    if not path.is_file():
        raise InputError.single(shown, None, "judge label file not found")
    labels: list[JudgeLabel] = []
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    for n, lab in iter_models(path, shown, JudgeLabel, problems, lambda rec: f"label '{rec.get('id', '?')}': "):
        if lab.id in seen:
            problems.append(Problem(shown, n, f"duplicate label id '{lab.id}' (first at line {seen[lab.id]})"))
            continue
        seen[lab.id] = n
        if knowledge is not None:
            unknown = [k for k in lab.knowledge if k not in knowledge]
            if unknown:
                problems.append(Problem(shown, n, f"label '{lab.id}': unknown knowledge id '{unknown[0]}'"))
                continue
        labels.append(lab)
    if not labels and not problems:
        problems.append(Problem(shown, None, "no labels in file"))
    if problems:
        raise InputError(problems)
    return labels


@dataclass(frozen=True)
class Item:
    dataset: str
    question: str
    answer: str
    knowledge: list[KnowledgeEntry]
    unfaithful: int  # the human label: 1 = the answer is not supported by the knowledge


@dataclass
class Datasets:
    items: list[Item] = field(default_factory=list)
    sources: list[dict[str, Any]] = field(default_factory=list)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _shown(path: Path) -> str:
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def labelled_items(
    benchmarks: Path, labels_path: Path | None, knowledge: dict[str, KnowledgeEntry], limit: int | None
) -> Datasets:
    """The human-labelled answers: HaluEval QA, TruthfulQA (truth labels joined with the reference answers) and,
    when given, the demo domain's label file. ``limit`` caps the rows read from each public dataset."""
    out = Datasets()
    hpath = benchmarks / HALUEVAL
    rows = read_rows(hpath, limit)
    for i, r in enumerate(rows):
        kb = [KnowledgeEntry(id=f"halueval-{i}", title="Knowledge", text=r["knowledge"], file="halueval", line=i + 1)]
        out.items.append(Item("HaluEval QA", r["question"], r["right_answer"], kb, 0))
        out.items.append(Item("HaluEval QA", r["question"], r["hallucinated_answer"], kb, 1))
    out.sources.append(
        {
            "name": "HaluEval QA",
            "path": _shown(hpath),
            "sha256": _sha256(hpath),
            "rows": len(rows),
            "items": 2 * len(rows),
        }
    )
    tpath, lpath = benchmarks / TRUTHFULQA, benchmarks / TRUTHFULQA_LABELS
    refs = {r["Question"]: r for r in read_rows(tpath, None)}
    joined = 0
    label_rows = read_rows(lpath, limit)
    for i, r in enumerate(label_rows):
        ref = refs.get(r["question"])
        if ref is None:
            continue
        joined += 1
        text = "Correct answers: " + ref["Correct Answers"]
        kb = [KnowledgeEntry(id=f"truthfulqa-{i}", title="Reference answers", text=text, file="truthfulqa", line=i + 1)]
        truth = 0 if r["completion"].strip() == "yes" else 1
        out.items.append(Item("TruthfulQA", r["question"], r["answer"], kb, truth))
    out.sources.append(
        {
            "name": "TruthfulQA (human truth labels joined with the reference answers)",
            "path": _shown(lpath),
            "sha256": _sha256(lpath),
            "references_path": _shown(tpath),
            "references_sha256": _sha256(tpath),
            "rows": len(label_rows),
            "items": joined,
        }
    )
    if labels_path is not None:
        labels = load_judge_labels(labels_path, knowledge)
        for lab in labels:
            kb = [knowledge[k] for k in lab.knowledge]
            out.items.append(Item("demo domain", lab.question, lab.answer, kb, int(lab.label == "unfaithful")))
        out.sources.append(
            {
                "name": "demo domain (golden/ labelled answers)",
                "path": _shown(labels_path),
                "sha256": _sha256(labels_path),
                "rows": len(labels),
                "items": len(labels),
                "verified_by": sorted({lab.verified_by for lab in labels}),
            }
        )
    return out


def _figures(scores: np.ndarray, unfaithful: np.ndarray, cut: float, confidence: float, seed: int) -> dict[str, Any]:
    """Kappa, agreement (at ``cut``: an answer scoring below it is called unfaithful) and AUROC, with intervals."""
    import numpy as np

    pred = (scores < cut).astype(int)

    def kappa_of(idx: np.ndarray) -> float | None:
        return cohen_kappa(pred[idx].tolist(), unfaithful[idx].tolist())

    def auroc_of(idx: np.ndarray) -> float | None:
        return auroc((1 - scores[idx]).tolist(), unfaithful[idx].tolist())

    n = len(scores)
    agree = int((pred == unfaithful).sum())
    ag = wilson(agree, n, confidence)
    k_lo, k_hi = bootstrap_statistic(n, kappa_of, confidence, 1000, seed)
    a_lo, a_hi = bootstrap_statistic(n, auroc_of, confidence, 1000, seed)
    return {
        "n": n,
        "kappa": {"value": kappa_of(np.arange(n)), "low": k_lo, "high": k_hi, "method": "bootstrap"},
        "auroc": {"value": auroc_of(np.arange(n)), "low": a_lo, "high": a_hi, "method": "bootstrap"},
        "agreement": {"value": ag.value, "low": ag.low, "high": ag.high, "agreed": agree, "method": "wilson"},
    }


def content_hash(record: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a record without its own ``content_sha256``."""
    body = {k: v for k, v in record.items() if k != "content_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def endpoint_of(judge: Judge) -> str | None:
    """Where the judge model was called (the Bedrock endpoint boto3 resolved), for the record's provenance."""
    client = getattr(judge.model, "_client", None) or getattr(judge.model, "client", None)
    meta = getattr(client, "meta", None)
    url = getattr(meta, "endpoint_url", None)
    return str(url) if url else None


def measure_judge(
    judge: Judge,
    data: Datasets,
    config: GateConfig,
    *,
    concurrency: int = 8,
    limit: int | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Grade every labelled answer with ``judge`` (faithfulness rubric) and return the sealed record."""
    import numpy as np

    def grade(item: Item) -> float | None:
        return judge.faithfulness(item.question, item.answer, item.knowledge).value

    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        graded = list(pool.map(grade, data.items))
    g = config.gate
    cut = config.thresholds.faithfulness if config.thresholds.faithfulness is not None else 0.5
    scored = [(s, it) for s, it in zip(graded, data.items, strict=True) if s is not None]
    scores = np.asarray([s for s, _ in scored], dtype=float)
    labels = np.asarray([it.unfaithful for _, it in scored], dtype=int)
    overall = _figures(scores, labels, cut, g.confidence, g.seed) if len(scored) else {"n": 0}
    per_dataset: dict[str, Any] = {}
    for name in dict.fromkeys(it.dataset for it in data.items):
        mask = np.asarray([it.dataset == name for _, it in scored], dtype=bool)
        if mask.any():
            per_dataset[name] = _figures(scores[mask], labels[mask], cut, g.confidence, g.seed)
    best: dict[str, Any] = {}
    if len(scored) and 0 < labels.sum() < len(labels):
        t, j = best_threshold(scores.tolist(), (1 - labels).tolist())  # the cut above which people said faithful
        best = {"score": t, "youden_j": j, "kappa": cohen_kappa((scores < t).astype(int).tolist(), labels.tolist())}
    usage = judge.usage
    usd = (
        call_cost(config, judge.model_id, usage.input_tokens, usage.output_tokens)
        if config.price(judge.model_id)
        else None
    )
    record: dict[str, Any] = {
        "kind": RECORD_KIND,
        "schema_version": RECORD_SCHEMA,
        "judge": {**judge.identity(), "rubric": "faithfulness", "endpoint": endpoint_of(judge)},
        "datasets": data.sources,
        "limit_per_dataset": limit,
        "n": len(data.items),
        "scored": len(scored),
        "unscored": len(data.items) - len(scored),
        "cut": cut,
        "confidence": g.confidence,
        **{k: overall[k] for k in ("kappa", "auroc", "agreement") if k in overall},
        "best_cut": best,
        "per_dataset": per_dataset,
        "measured_at": (now or datetime.now(UTC)).isoformat(),
        "tool_version": __version__,
        "cost": {
            "calls": usage.calls,
            "cache_hits": usage.cache_hits,
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "usd": usd,
        },
    }
    record["content_sha256"] = content_hash(record)
    return record


# --------------------------------------------------------------------------------------------------- records


def _slug(model_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", model_id).strip("_") or "judge"


def record_name(identity: dict[str, Any]) -> str:
    return f"judge-{_slug(str(identity.get('model_id')))}-{str(identity.get('rubric_sha256'))[:12]}.json"


def write_record(folder: Path, record: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / record_name(record["judge"])
    path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def records_dir(config: GateConfig, override: Path | str | None = None) -> Path:
    """``--records``/``--calibration``, else ``$EVALGATE_CALIBRATION_DIR``, else ``[judge_calibration] records``."""
    return Path(override or os.environ.get("EVALGATE_CALIBRATION_DIR") or config.judge_calibration.records)


def create_command(identity: dict[str, Any], folder: Path) -> str:
    return f"evalgate calibrate --metric judge --judge-model {identity.get('model_id')} --records {folder}"


@dataclass
class JudgeCheck:
    """Whether one judge may gate, and why not."""

    identity: dict[str, Any]
    ok: bool
    problems: list[str]
    path: str | None = None
    figures: dict[str, Any] = field(default_factory=dict)
    below_floors: bool = False  # a valid record whose figures fall short (measuring again would not change them)

    def to_dict(self) -> dict[str, Any]:
        return {
            "judge": self.identity,
            "ok": self.ok,
            "problems": list(self.problems),
            "record": self.path,
            **self.figures,
        }


def floor_problems(record: dict[str, Any], config: GateConfig) -> list[str]:
    """The figures of a record that fall short of ``[judge_calibration]`` (and too many unscored answers)."""
    jc = config.judge_calibration
    out: list[str] = []
    n = int(record.get("n") or 0)
    if n < jc.min_n:
        out.append(f"measured on {n} labelled answers (floor {jc.min_n})")
    unscored = int(record.get("unscored") or 0)
    if n and unscored / n > config.gate.unscored_budget:
        out.append(f"{unscored} of {n} answers unscored (budget {config.gate.unscored_budget:.0%})")
    for key, floor in (("kappa", jc.min_kappa), ("auroc", jc.min_auroc), ("agreement", jc.min_agreement)):
        fig = record.get(key) or {}
        v = fig.get("value") if isinstance(fig, dict) else None
        if v is None or v < floor:
            shown = "undefined" if v is None else f"{v:.3f}"
            ci = (
                f" [{fig['low']:.3f}, {fig['high']:.3f}]"
                if isinstance(fig, dict) and fig.get("low") is not None and fig.get("high") is not None
                else ""
            )
            out.append(f"{key} {shown}{ci} below the floor {floor:g}")
    return out


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("kind") == RECORD_KIND else None


def _local(url: str | None) -> bool:
    host = urllib.parse.urlsplit(url or "").hostname or ""
    return host in ("localhost", "::1") or host.startswith("127.")


def check_judge(identity: dict[str, Any], config: GateConfig, folder: Path, endpoint: str | None = None) -> JudgeCheck:
    """May this judge gate? Looks for its record in ``folder`` and checks identity, integrity and floors; a
    record measured against a local stand-in endpoint holds only for a judge called at a local endpoint."""
    model, rubric = identity.get("model_id"), identity.get("rubric_sha256")
    how = f"create one with `{create_command(identity, folder)}`"
    name = f"judge {model} (rubric {str(rubric)[:12]})"
    path = folder / record_name(identity)
    record = _read(path) if path.is_file() else None
    if record is None:
        others = [
            (p, r)
            for p in sorted(folder.glob("judge-*.json"))
            if (r := _read(p)) is not None and (r.get("judge") or {}).get("model_id") == model
        ]
        if others:
            rubrics = ", ".join(sorted({str((r.get("judge") or {}).get("rubric_sha256"))[:12] for _, r in others}))
            why = f"{name} has no calibration record for its rubric: {folder} holds records for rubric {rubrics} only "
            why += "(the judge prompt or rubric changed since it was measured); " + how
        elif path.is_file():
            why = f"{name}: {path} is not a calibration record; " + how
        else:
            why = f"{name} has no calibration record in {folder}; " + how
        return JudgeCheck(identity, False, [why])
    problems: list[str] = []
    if record.get("content_sha256") != content_hash(record):
        problems.append(f"{name}: {path} was changed after it was measured (its content hash does not match); " + how)
    rj = record.get("judge") or {}
    for key in ("model_id", "prompt_version", "rubric_sha256"):
        if rj.get(key) != identity.get(key):
            problems.append(f"{name}: {path} is for {key} {rj.get(key)!r}, not {identity.get(key)!r}; " + how)
    measured_at = rj.get("endpoint")
    if (measured_at is None or _local(measured_at)) and endpoint is not None and not _local(endpoint):
        problems.append(
            f"{name}: {path} was measured against a local stand-in ({measured_at or 'in-process'}), not the "
            "Bedrock endpoint this run calls; " + how
        )
    short = floor_problems(record, config)
    if short and not problems:
        problems.append(f"{name} is below the calibration floors ({path}): " + "; ".join(short))
    figures = {
        "measured_at": record.get("measured_at"),
        "n": record.get("n"),
        "kappa": (record.get("kappa") or {}).get("value"),
        "auroc": (record.get("auroc") or {}).get("value"),
        "agreement": (record.get("agreement") or {}).get("value"),
        "content_sha256": record.get("content_sha256"),
    }
    below = bool(short) and len(problems) == 1
    return JudgeCheck(identity, not problems, problems, str(path), figures, below)


def summary_lines(record: dict[str, Any]) -> list[str]:
    def fig(key: str) -> str:
        f = record.get(key) or {}
        v, lo, hi = f.get("value"), f.get("low"), f.get("high")
        if v is None:
            return f"{key} undefined"
        return f"{key} {v:.3f}" + (f" [{lo:.3f}, {hi:.3f}]" if lo is not None and hi is not None else "")

    cost = record.get("cost") or {}
    usd = cost.get("usd")
    best = record.get("best_cut") or {}
    lines = [
        f"judge {record['judge'].get('model_id')} rubric {str(record['judge'].get('rubric_sha256'))[:12]}: "
        f"{record.get('n')} labelled answers ({record.get('unscored')} unscored)",
        f"  {fig('kappa')}, {fig('auroc')}, {fig('agreement')} at the cut {record.get('cut')}",
    ]
    if best:
        lines.append(f"  best cut {best['score']:.3f} (Youden's J {best['youden_j']:.3f}, kappa {best['kappa']:.3f})")
    lines.append(
        f"  {cost.get('calls', 0)} judge calls, {cost.get('cache_hits', 0)} cache hits"
        + (f", ${usd:.4f}" if usd is not None else ", cost unknown (no price for this model)")
    )
    return lines
