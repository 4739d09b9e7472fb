"""``evalgate calibrate``: measure metrics against human labels from public benchmarks.

- similarity: Spearman's rho between embedding cosine and STS-B human similarity (0-5); the cosine that best
  separates "mostly equivalent" pairs (human score >= 4) from the rest (Youden's J), with its AUROC. This is
  the evidence behind the similarity threshold of each embedder in gate.toml.
- grounding: the offline numeric-grounding hallucination check on HaluEval QA (right vs hallucinated answers
  for the same knowledge): precision, recall, Cohen's kappa, and how often it applies at all.
- judge: the Bedrock judge's faithfulness on HaluEval QA, on TruthfulQA answers with human truth labels (correct
  answers as the knowledge) and on the demo domain's labelled answers; writes the judge's calibration record
  (``evalgate.engine.judge_calibration``), the evidence a judged tier needs before it lets that judge gate. Needs AWS.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evalgate.core.dataset import iter_jsonl
from evalgate.core.errors import InputError, Problem
from evalgate.core.metrics import ungrounded_numbers
from evalgate.core.stats import cohen_kappa


def auroc(scores: Sequence[float], labels: Sequence[int]) -> float | None:
    """Area under the ROC curve (probability a positive outranks a negative; ties count half)."""
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    if not pos or not neg:
        return None
    from scipy import stats as sps  # only where a statistic needs it: the run path stays free of scipy

    u = sps.mannwhitneyu(pos, neg, alternative="two-sided").statistic
    return float(u) / (len(pos) * len(neg))


def best_threshold(scores: Sequence[float], labels: Sequence[int]) -> tuple[float, float]:
    """The cut that maximises Youden's J = TPR - FPR; returns (threshold, J)."""
    import numpy as np

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


def read_rows(path: Path, limit: int | None) -> list[dict[str, Any]]:
    """The first ``limit`` JSON lines of a benchmark file (all when None); a bad line is ``file:line``."""
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
    import numpy as np

    rows = read_rows(root / "stsb_test" / "stsb_test_sample.jsonl", limit)
    a = embedder.embed([r["sentence1"] for r in rows])
    b = embedder.embed([r["sentence2"] for r in rows])
    cos = [float(np.dot(x, y)) for x, y in zip(a, b, strict=True)]
    human = [float(r["score"]) for r in rows]
    from scipy import stats as sps

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
    rows = read_rows(root / "halueval_qa" / "halueval_qa_oneturn.jsonl", limit)
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
