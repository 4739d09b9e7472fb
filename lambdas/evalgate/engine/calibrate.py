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

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evalgate.core.dataset import iter_jsonl
from evalgate.core.errors import InputError, Problem
from evalgate.core.inputs import output_file
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


def run_calibration(args: argparse.Namespace) -> int:
    root = args.benchmarks or default_benchmarks()
    if args.out:
        output_file(args.out, "--out")
    if args.metric == "similarity":
        from evalgate.engine.factories import make_embedder

        record = calibrate_similarity(make_embedder("local"), root, args.limit)
    elif args.metric == "grounding":
        record = calibrate_grounding(root, args.limit)
    else:
        return run_judge_calibration(args)
    text = json.dumps(record, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0


def run_judge_calibration(args: argparse.Namespace) -> int:
    """Measure the configured (or given) judge and write its record. Exit 0: the record meets the floors;
    1: it was written but falls short (figures printed); 4: no record (no credentials, cost cap, error)."""
    import boto3

    from evalgate.core.config import load_config
    from evalgate.core.dataset import load_knowledge
    from evalgate.engine.cache import Cache
    from evalgate.engine.cost import CostMeter
    from evalgate.engine.factories import make_judge
    from evalgate.engine.judge_calibration import (
        check_judge,
        endpoint_of,
        floor_problems,
        labelled_items,
        measure_judge,
        records_dir,
        summary_lines,
        write_record,
    )

    if args.max_cost is not None and args.max_cost <= 0:
        raise InputError.single("--max-cost", None, "must be a positive amount of USD")
    if args.concurrency < 1:
        raise InputError.single("--concurrency", None, "must be at least 1")
    config = load_config(args.config or args.golden / "gate.toml")
    folder = records_dir(config, args.records)
    model_id = args.judge_model or (config.models.heavy_judge if args.heavy else config.models.judge)
    if boto3.Session().get_credentials() is None:
        print("evalgate: ERROR: calibrating the judge needs Bedrock and no AWS credentials were found", file=sys.stderr)
        return 4
    cap = args.max_cost if args.max_cost is not None else config.judge_calibration.max_cost_usd
    meter = CostMeter(config, cap)
    cache = None if args.no_cache else Cache(args.cache)
    judge = make_judge(model_id, cache=cache, meter=meter)
    if args.if_needed:
        check = check_judge(judge.identity(), config, folder, endpoint_of(judge))
        if check.ok:
            print(f"calibration record for judge {model_id} is valid: {check.path} (nothing to measure)")
            return 0
        if check.below_floors:  # the same judge and rubric would measure the same: report, do not pay again
            print(f"evalgate: {check.problems[0]}", file=sys.stderr)
            return 1
        print("calibrating: " + "; ".join(check.problems), flush=True)
    knowledge, problems = load_knowledge(args.golden / "knowledge")
    if problems:
        raise InputError(problems)
    labels = args.labels or Path(config.judge_calibration.labels)
    data = labelled_items(args.benchmarks or default_benchmarks(), labels, knowledge, args.limit)
    try:
        record = measure_judge(judge, data, config, concurrency=args.concurrency, limit=args.limit)
    finally:
        if cache is not None:
            cache.close()
    if meter.stop_reason:
        print(f"evalgate: ERROR: calibration stopped, no record written: {meter.stop_reason}", file=sys.stderr)
        return 4
    path = write_record(folder, record)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    for line in summary_lines(record):
        print(line)
    print(f"record: {path}")
    short = floor_problems(record, config)
    if short:
        print(f"evalgate: judge {model_id} falls short of the floors: " + "; ".join(short), file=sys.stderr)
        return 1
    return 0
