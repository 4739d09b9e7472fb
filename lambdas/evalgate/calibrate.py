"""``evalgate calibrate``: measure metrics against human labels from public benchmarks.

- similarity: Spearman's rho between embedding cosine and STS-B human similarity (0-5); the cosine that best
  separates "mostly equivalent" pairs (human score >= 4) from the rest (Youden's J), with its AUROC. This is
  the evidence behind the similarity threshold of each embedder in gate.toml.
- grounding: the offline numeric-grounding hallucination check on HaluEval QA (right vs hallucinated answers
  for the same knowledge): precision, recall, Cohen's kappa, and how often it applies at all.
- judge: the Bedrock judge's faithfulness on HaluEval QA and on TruthfulQA answers with human truth labels
  (correct answers as the knowledge): AUROC and Cohen's kappa. Needs AWS.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats as sps

from .dataset import iter_jsonl
from .errors import InputError, Problem
from .inputs import output_file
from .metrics import ungrounded_numbers
from .models import KnowledgeEntry


def auroc(scores: Sequence[float], labels: Sequence[int]) -> float | None:
    """Area under the ROC curve (probability a positive outranks a negative; ties count half)."""
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    if not pos or not neg:
        return None
    u = sps.mannwhitneyu(pos, neg, alternative="two-sided").statistic
    return float(u) / (len(pos) * len(neg))


def cohen_kappa(pred: Sequence[int], truth: Sequence[int]) -> float | None:
    n = len(pred)
    if n == 0:
        return None
    po = sum(1 for p, t in zip(pred, truth, strict=True) if p == t) / n
    p1, t1 = sum(pred) / n, sum(truth) / n
    pe = p1 * t1 + (1 - p1) * (1 - t1)
    return None if pe == 1 else (po - pe) / (1 - pe)


def best_threshold(scores: Sequence[float], labels: Sequence[int]) -> tuple[float, float]:
    """The cut that maximises Youden's J = TPR - FPR; returns (threshold, J)."""
    s = np.asarray(scores, dtype=float)
    y = np.asarray(labels, dtype=int)
    best = (float(s.min()), -1.0)
    for t in np.unique(s):
        pred = s >= t
        tpr = (pred & (y == 1)).sum() / max(1, (y == 1).sum())
        fpr = (pred & (y == 0)).sum() / max(1, (y == 0).sum())
        if tpr - fpr > best[1]:
            best = (float(t), float(tpr - fpr))
    return best


def _rows(path: Path, limit: int | None) -> list[dict[str, Any]]:
    if not path.exists():
        raise InputError.single(str(path), None, "benchmark file not found (see bench/data/README.md)")
    rows: list[dict[str, Any]] = []
    for _n, rec, problem in iter_jsonl(path, str(path)):
        if problem is not None or rec is None:
            raise InputError([problem or Problem(str(path), _n, "unreadable record")])
        rows.append(rec)
        if limit and len(rows) >= limit:
            break
    return rows


def default_benchmarks() -> Path:
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "bench" / "data" / "stsb_test").is_dir():
            return parent / "bench" / "data"
    return Path("../shared/benchmarks")


def calibrate_similarity(embedder: Any, root: Path, limit: int | None = None) -> dict[str, Any]:
    rows = _rows(root / "stsb_test" / "stsb_test_sample.jsonl", limit)
    a = embedder.embed([r["sentence1"] for r in rows])
    b = embedder.embed([r["sentence2"] for r in rows])
    cos = [float(np.dot(x, y)) for x, y in zip(a, b, strict=True)]
    human = [float(r["score"]) for r in rows]
    rho = sps.spearmanr(cos, human)
    labels = [1 if h >= 4.0 else 0 for h in human]
    thr, j = best_threshold(cos, labels)
    return {
        "metric": "similarity",
        "dataset": "STS-B test sample",
        "embedder": embedder.model_id,
        "n": len(rows),
        "spearman": float(rho.statistic),
        "spearman_p": float(rho.pvalue),
        "equivalent_if_human_score_at_least": 4.0,
        "auroc_equivalent": auroc(cos, labels),
        "best_threshold": thr,
        "youden_j": j,
        "mean_cosine_by_human_band": {
            band: float(np.mean([c for c, h in zip(cos, human, strict=True) if lo <= h < hi]))
            for band, (lo, hi) in {"0-2": (0, 2), "2-3": (2, 3), "3-4": (3, 4), "4-5": (4, 5.01)}.items()
            if any(lo <= h < hi for h in human)
        },
    }


def calibrate_grounding(root: Path, limit: int | None = None) -> dict[str, Any]:
    rows = _rows(root / "halueval_qa" / "halueval_qa_oneturn.jsonl", limit)
    pred: list[int] = []
    truth: list[int] = []
    applies = 0
    for r in rows:
        for answer, label in ((r["right_answer"], 0), (r["hallucinated_answer"], 1)):
            flagged = bool(ungrounded_numbers(answer, [r["knowledge"], r["question"]]))
            has_number = any(ch.isdigit() for ch in answer)
            applies += has_number
            pred.append(int(flagged))
            truth.append(label)
    tp = sum(1 for p, t in zip(pred, truth, strict=True) if p and t)
    fp = sum(1 for p, t in zip(pred, truth, strict=True) if p and not t)
    fn = sum(1 for p, t in zip(pred, truth, strict=True) if not p and t)
    return {
        "metric": "grounding (numeric, offline)",
        "dataset": "HaluEval QA",
        "n": len(pred),
        "applies_share": applies / len(pred) if pred else None,
        "precision": tp / (tp + fp) if tp + fp else None,
        "recall": tp / (tp + fn) if tp + fn else None,
        "kappa": cohen_kappa(pred, truth),
    }


def calibrate_judge(judge: Any, root: Path, limit: int | None = None, concurrency: int = 8) -> dict[str, Any]:
    items: list[tuple[str, str, list[KnowledgeEntry], int]] = []
    for i, r in enumerate(_rows(root / "halueval_qa" / "halueval_qa_oneturn.jsonl", limit)):
        kb = [KnowledgeEntry(id=f"halueval-{i}", title="Knowledge", text=r["knowledge"], file="halueval", line=i + 1)]
        items.append((r["question"], r["right_answer"], kb, 0))
        items.append((r["question"], r["hallucinated_answer"], kb, 1))
    tqa = {r["Question"]: r for r in _rows(root / "truthfulqa" / "truthfulqa_sample.jsonl", None)}
    joined = 0
    for i, r in enumerate(_rows(root / "truthfulqa_judge_truth" / "truthfulqa_judge_truth_sample.jsonl", limit)):
        ref = tqa.get(r["question"])
        if ref is None:
            continue
        joined += 1
        text = "Correct answers: " + ref["Correct Answers"]
        kb = [KnowledgeEntry(id=f"truthfulqa-{i}", title="Reference answers", text=text, file="truthfulqa", line=i + 1)]
        items.append((r["question"], r["answer"], kb, 0 if r["completion"].strip() == "yes" else 1))

    def grade(item: tuple[str, str, list[KnowledgeEntry], int]) -> tuple[float | None, int]:
        q, a, kb, label = item
        mv = judge.faithfulness(q, a, kb)
        return mv.value, label

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        graded = list(pool.map(grade, items))
    scored = [(s, y) for s, y in graded if s is not None]
    halluc_score = [1 - s for s, _ in scored]
    labels = [y for _, y in scored]
    pred = [int(s < 0.85) for s, _ in scored]
    return {
        "metric": "judge faithfulness",
        "judge": judge.identity(),
        "datasets": ["HaluEval QA", f"TruthfulQA judge labels joined with references ({joined} rows)"],
        "n": len(items),
        "unscored": len(items) - len(scored),
        "auroc": auroc(halluc_score, labels),
        "kappa_at_0.85": cohen_kappa(pred, labels),
    }


def run_calibration(args: argparse.Namespace) -> int:
    root = args.benchmarks or default_benchmarks()
    if args.out:
        output_file(args.out, "--out")
    if args.metric == "similarity":
        from .providers.local import LocalEmbedder

        record = calibrate_similarity(LocalEmbedder(), root, args.limit)
    elif args.metric == "grounding":
        record = calibrate_grounding(root, args.limit)
    else:
        import boto3

        if boto3.Session().get_credentials() is None:
            print(
                "evalgate: ERROR: calibrating the judge needs Bedrock and no AWS credentials were found",
                file=sys.stderr,
            )
            return 4
        from .config import Models
        from .judge import Judge
        from .providers.bedrock import BedrockJudgeModel

        judge = Judge(BedrockJudgeModel(model_id=args.judge_model or Models().judge))
        record = calibrate_judge(judge, root, args.limit)
    text = json.dumps(record, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0
