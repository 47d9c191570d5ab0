"""The real embedders (torch, ONNX fp32, ONNX int8): congruence with the fake, semantics, and
HNSW recall on real vectors. (tests/unit/test_onnx_embedder.py holds the ONNX vectors to
torch's: cosine >= 0.99.)"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from index.embedder import MODEL_NAME, SentenceTransformerEmbedder
from index.faiss_index import FaissIndex
from index.onnx_embedder import OnnxEmbedder
from index.onnx_export import default_onnx_dir, export_model
from node.memory import HashEmbedder
from node.ports import Embedder
from tests.conftest import SHARED


@pytest.fixture(scope="module")
def real() -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder(batch_size=64)


@pytest.fixture(scope="module")
def onnx_dir() -> Path:
    """The models setup exported (scripts/setup.sh); exported here if missing."""
    out = default_onnx_dir()
    export_model(out)
    return out


@pytest.fixture(params=["hash", "sentence-transformers", "onnx", "onnx-int8"])
def embedder(
    request: pytest.FixtureRequest, real: SentenceTransformerEmbedder, onnx_dir: Path
) -> Embedder:
    if request.param == "hash":
        return HashEmbedder()
    if request.param == "sentence-transformers":
        return real
    return OnnxEmbedder(onnx_dir, quantized=request.param == "onnx-int8", threads=1)


def test_embedder_contract(embedder: Embedder) -> None:
    texts = ["Paris is the capital of France.", "Bonn was a capital.", "x"]
    vectors = embedder.embed(texts)
    assert vectors.shape == (3, embedder.dimension) == (3, 384)
    assert vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # batching-invariant (int8 embeds one text per pass for exactly this: index/onnx_embedder)
    assert np.allclose(embedder.embed(texts[1:2])[0], vectors[1], atol=1e-5)
    assert embedder.embed([]).shape == (0, 384)


@pytest.mark.parametrize("backend", ["sentence-transformers", "onnx", "onnx-int8"])
def test_real_model_identity_and_semantics(
    backend: str, real: SentenceTransformerEmbedder, onnx_dir: Path
) -> None:
    model: Embedder = (
        real
        if backend == "sentence-transformers"
        else OnnxEmbedder(onnx_dir, quantized=backend == "onnx-int8")
    )
    assert model.model_name == MODEL_NAME
    a, b, c = model.embed(
        [
            "A cat sits on the mat.",
            "A kitten is sitting on a rug.",
            "Quarterly revenue grew by eight percent.",
        ]
    )
    assert float(a @ b) > 0.5 > float(a @ c)


def test_hnsw_recall_on_real_scifact_embeddings(real: SentenceTransformerEmbedder) -> None:
    docs = [
        json.loads(line)
        for line in (SHARED / "datasets" / "scifact" / "corpus.jsonl").read_text().splitlines()
    ]
    queries = [
        json.loads(line)["text"]
        for line in (SHARED / "datasets" / "scifact" / "queries.jsonl")
        .read_text()
        .splitlines()[:300]
    ]
    data = real.embed([d["title"] for d in docs])
    qv = real.embed(queries)
    index = FaissIndex(384, None, hnsw_threshold=1_000)  # force HNSW with the node's defaults
    index.add(np.arange(len(data), dtype=np.int64), data)
    assert index.kind == "hnsw"
    exact = np.argsort(-(qv @ data.T), axis=1)[:, :10]
    recall = np.mean(
        [
            len({h.id for h in index.search(q, 10)} & set(e.tolist())) / 10
            for q, e in zip(qv, exact, strict=True)
        ]
    )
    assert recall >= 0.95, recall
