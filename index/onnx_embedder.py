"""all-MiniLM-L6-v2 through ONNX Runtime: the same vectors as ``index.embedder``, without torch.

Owns the query-path inference over a model directory written by ``index.onnx_export``
(``model.onnx`` in fp32 or ``model-int8.onnx`` with dynamically quantized int8 weights, the
tokenizer, the sentence-transformers config). It reproduces what sentence-transformers does for
this model: WordPiece tokenization truncated to ``max_seq_length`` (256) tokens, the transformer,
mean pooling over the attention mask, L2 normalisation.

Invariants:

- This module never imports torch (nor transformers, nor sentence-transformers): a process that
  only answers queries does not pay for them. ``tokenizers`` and ``onnxruntime`` suffice.
- ``embed`` returns float32 ``(len(texts), dimension)`` unit vectors in the order of ``texts``
  (texts are sorted by token count inside a call to cut padding, and put back).
- Calls are serialized by a lock, like the torch embedder's; one ONNX Runtime session per
  instance, ``threads`` intra-op threads, one inter-op thread, sequential execution, and no
  spinning thread pool (the query path shares its cores with ingest).
- Missing exported files raise ``StorageError`` that says to run ``python -m index.onnx_export``.

fp32 gives vectors equal to the torch embedder's to float rounding (cosine >= 0.9999). int8
ones stay at cosine >= 0.99 for text with words in it (0.993-0.998 typically), but texts with no
word ("", "?", "...", "xxxx...") drop to 0.975-0.985; and since int8 activations are quantized
with one scale per batch tensor, a text's int8 vector moves slightly (cosine >= 0.97, usually
>= 0.99) with its batch partners. Checked at export time and by
tests/unit/test_onnx_embedder.py.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort  # type: ignore[import-untyped]
from tokenizers import Encoding, Tokenizer

from index.embedder import MODEL_NAME
from index.model_files import read_hidden_size, read_max_seq_length
from node.errors import StorageError
from node.ports import Vectors

log = logging.getLogger(__name__)

FP32_FILE = "model.onnx"
INT8_FILE = "model-int8.onnx"
TOKENIZER_FILE = "tokenizer.json"
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")

Int64s = npt.NDArray[np.int64]


def load_tokenizer(model_dir: Path, max_seq_length: int) -> Tokenizer:
    """The fast tokenizer from ``tokenizer.json``, truncating to ``max_seq_length`` tokens
    (special tokens included, as sentence-transformers does) and not padding (``pad_batch``
    pads). The file's own settings (truncation and fixed padding at 128) are replaced."""
    tokenizer = Tokenizer.from_file(str(model_dir / TOKENIZER_FILE))
    tokenizer.enable_truncation(max_length=max_seq_length)
    tokenizer.no_padding()
    return tokenizer


def pad_batch(encodings: Sequence[Encoding], pad_id: int) -> dict[str, Int64s]:
    """Model inputs for ``encodings``, padded on the right to the longest of them."""
    width = max(len(e.ids) for e in encodings)
    ids = np.full((len(encodings), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(encodings), width), dtype=np.int64)
    types = np.zeros((len(encodings), width), dtype=np.int64)
    for row, enc in enumerate(encodings):
        n = len(enc.ids)
        ids[row, :n] = enc.ids
        mask[row, :n] = enc.attention_mask
        types[row, :n] = enc.type_ids
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


def mean_pool_normalize(hidden: npt.NDArray[np.float32], mask: Int64s) -> Vectors:
    """sentence-transformers' mean pooling (sum over unmasked tokens / max(count, 1e-9)) then
    its L2 normalisation (``x / max(||x||, 1e-12)``), as float32."""
    weights = mask[..., None].astype(np.float32)
    summed = (hidden.astype(np.float32) * weights).sum(axis=1)
    counts = np.maximum(weights.sum(axis=1), np.float32(1e-9))
    pooled = summed / counts
    norms = np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), np.float32(1e-12))
    return np.ascontiguousarray(pooled / norms, dtype=np.float32)


def session_options(threads: int) -> Any:
    """``threads`` intra-op threads (0: ONNX Runtime's default), one inter-op thread,
    sequential execution, all graph optimizations, no spinning between calls."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return options


class OnnxEmbedder:
    """Batched, normalized embeddings from an exported model directory. ``embed`` is blocking
    and serialized by a lock."""

    def __init__(
        self,
        model_dir: Path,
        *,
        quantized: bool = False,
        threads: int = 0,
        batch_size: int = 64,
        max_seq_length: int | None = None,
        model_name: str = MODEL_NAME,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        model_file = model_dir / (INT8_FILE if quantized else FP32_FILE)
        missing = [p.name for p in (model_file, model_dir / TOKENIZER_FILE) if not p.is_file()]
        if missing:
            raise StorageError(
                f"ONNX embedding model incomplete in {model_dir} (missing {', '.join(missing)}): "
                f"run python -m index.onnx_export {model_dir}"
            )
        self._max_seq_length = max_seq_length or read_max_seq_length(model_dir)
        try:
            self._tokenizer = load_tokenizer(model_dir, self._max_seq_length)
            self._session = ort.InferenceSession(
                str(model_file), session_options(threads), providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # tokenizers and onnxruntime raise their own types
            raise StorageError(
                f"cannot load the ONNX embedding model {model_file}: {exc}; "
                f"run python -m index.onnx_export {model_dir}"
            ) from exc
        inputs = {i.name for i in self._session.get_inputs()}
        if not inputs <= set(INPUT_NAMES):
            raise StorageError(f"{model_file} has unexpected inputs {sorted(inputs)}")
        self._inputs = inputs
        pad_id = self._tokenizer.token_to_id("[PAD]")
        self._pad_id = 0 if pad_id is None else int(pad_id)
        self._dimension = self._read_dimension(model_dir)
        self._model_name = model_name
        # int8 quantizes activations with one scale per tensor per pass, so a text batched
        # with others would come out a little different (cosine ~0.994) from the same text
        # alone; one text per pass makes its vector a function of the text only (the same on
        # every node), and costs nothing on abstracts (measured: 48 vs 42 per s) and 0.8x on
        # short sentences (232 vs 292 per s), where padding no longer costs either.
        self._batch_size = 1 if quantized else batch_size
        self._quantized = quantized
        self._lock = threading.Lock()
        log.info(
            "ONNX embedding model %s loaded from %s (%d dims, %s, %d threads)",
            model_name,
            model_file,
            self._dimension,
            "int8" if quantized else "fp32",
            threads,
        )

    def _read_dimension(self, model_dir: Path) -> int:
        shape = self._session.get_outputs()[0].shape
        if shape and isinstance(shape[-1], int):
            return int(shape[-1])
        return read_hidden_size(model_dir)

    @property
    def model_name(self) -> str:
        return self._model_name

    @property
    def dimension(self) -> int:
        return self._dimension

    @property
    def quantized(self) -> bool:
        return self._quantized

    @property
    def max_seq_length(self) -> int:
        return self._max_seq_length

    def embed(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self._dimension), dtype=np.float32)
        with self._lock:
            encodings = self._tokenizer.encode_batch(list(texts))
            order = sorted(range(len(encodings)), key=lambda i: len(encodings[i].ids))
            out = np.empty((len(encodings), self._dimension), dtype=np.float32)
            for start in range(0, len(order), self._batch_size):
                rows = order[start : start + self._batch_size]
                feed = pad_batch([encodings[i] for i in rows], self._pad_id)
                hidden = self._session.run(
                    None, {k: v for k, v in feed.items() if k in self._inputs}
                )[0]
                out[rows] = mean_pool_normalize(hidden, feed["attention_mask"])
        return out
