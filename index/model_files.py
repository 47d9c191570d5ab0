"""The files of a sentence-transformers model directory, read for what they say about its vectors.

Owns the description of the bundled model (``describe_bundled_model``): the
``node.model_identity.ModelDescription`` whose CID names the node's model, from the *source*
files that determine the vectors (weights, tokenizer, configs), never from an ONNX export
(whose bytes vary with library versions while its vectors do not). Also the two config reads
the ONNX embedder shares: ``max_seq_length`` and ``hidden_size``.

Invariants:

- Files are hashed as they are read (``hashlib.file_digest``), never held whole in memory (the
  weights are ~90 MB); each is named by the raw CID of its bytes.
- Only the files in ``VECTOR_FILES`` that exist count, by relative path with ``/``; README,
  ``.gitattributes`` and the like change no vector and are left out.
- Unreadable files and configs raise ``StorageError`` (a model that cannot be described is not
  run: its vectors would be unnamed).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from index.embedder import MODEL_NAME
from node.cid import raw_cid_of_digest
from node.errors import StorageError
from node.model_identity import PRECISIONS, ModelDescription

#: sentence-transformers' config of the Transformer module: holds ``max_seq_length``.
ST_CONFIG_FILE = "sentence_bert_config.json"
#: the Hugging Face model config: holds ``hidden_size``.
MODEL_CONFIG_FILE = "config.json"
DEFAULT_MAX_SEQ_LENGTH = 256
#: The files of a sentence-transformers directory that determine its vectors (those present
#: are hashed): weights (one of the two formats), the model and tokenizer configs, the
#: vocabulary, the module list and the pooling config.
VECTOR_FILES = (
    "model.safetensors",
    "pytorch_model.bin",
    MODEL_CONFIG_FILE,
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "special_tokens_map.json",
    ST_CONFIG_FILE,
    "modules.json",
    "1_Pooling/config.json",
)
_WEIGHTS = ("model.safetensors", "pytorch_model.bin")


def read_max_seq_length(model_dir: Path) -> int:
    """``max_seq_length`` from the sentence-transformers config in ``model_dir``, else 256."""
    try:
        value = json.loads((model_dir / ST_CONFIG_FILE).read_text()).get("max_seq_length")
    except (OSError, ValueError):
        return DEFAULT_MAX_SEQ_LENGTH
    return int(value) if isinstance(value, int) and value > 0 else DEFAULT_MAX_SEQ_LENGTH


def read_hidden_size(model_dir: Path) -> int:
    """``hidden_size`` from the model config in ``model_dir``: the vectors' dimension."""
    try:
        value = json.loads((model_dir / MODEL_CONFIG_FILE).read_text())["hidden_size"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StorageError(f"cannot tell the embedding dimension of {model_dir}") from exc
    if type(value) is not int or value < 1:
        raise StorageError(f"{model_dir / MODEL_CONFIG_FILE}: hidden_size {value!r} is no size")
    return value


def file_cid(path: Path) -> str:
    """The raw CID of a file's bytes, hashed in chunks."""
    try:
        with path.open("rb") as f:
            digest = hashlib.file_digest(f, "sha256").digest()
    except OSError as exc:
        raise StorageError(f"cannot read model file {path}: {exc}") from exc
    return raw_cid_of_digest(digest)


def describe_bundled_model(
    model_dir: Path, precision: str, name: str = MODEL_NAME
) -> ModelDescription:
    """The description of the sentence-transformers model in ``model_dir`` run at
    ``precision`` (``fp32``: torch or ONNX fp32; ``int8``: ONNX int8), named ``name``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    try:
        present = [rel for rel in VECTOR_FILES if (model_dir / rel).is_file()]
    except OSError as exc:  # an unreadable directory (is_file raises on EACCES)
        raise StorageError(f"cannot list the model files in {model_dir}: {exc}") from exc
    if not any(rel in present for rel in _WEIGHTS):
        raise StorageError(f"no model weights ({' or '.join(_WEIGHTS)}) in {model_dir}")
    return ModelDescription(
        name=name,
        dimension=read_hidden_size(model_dir),
        max_seq_length=read_max_seq_length(model_dir),
        # what both embedders do (index.embedder through the pooling config, whose bytes are
        # hashed; index.onnx_embedder always): mean pooling, then L2 normalisation
        pooling="mean",
        normalize=True,
        precision=precision,
        weights=tuple(sorted((rel, file_cid(model_dir / rel)) for rel in present)),
    )
