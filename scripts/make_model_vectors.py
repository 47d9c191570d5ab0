"""Write docs/vectors/model.json: test vectors for model identity (node/model_identity.py).

    .venv/bin/python scripts/make_model_vectors.py [--check]

Three model descriptions, their canonical DAG-CBOR blocks and model CIDs: the in-package hash
fake (no weights), and an all-MiniLM-L6-v2-like model in fp32 and in int8 whose "files" are a
few short texts given in the vector (so their raw CIDs can be checked too; the real bundled
files' CIDs depend on the installed package, and ``/v1/status`` reports them). ``--check``
fails when the committed file differs from what the code produces now (a unit test runs it),
so the document and the implementation cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _vectors import write_or_check  # noqa: E402

from node.cid import raw_cid  # noqa: E402
from node.model_identity import (  # noqa: E402
    FP32,
    INT8,
    ModelDescription,
    bare_description,
    model_cid,
)

OUT = ROOT / "docs" / "vectors" / "model.json"

#: Stand-ins for a sentence-transformers directory's files (not the real ones).
FILES = {
    "1_Pooling/config.json": '{"pooling_mode_mean_tokens": true}',
    "config.json": '{"hidden_size": 384}',
    "model.safetensors": "example weights",
    "sentence_bert_config.json": '{"max_seq_length": 256}',
    "tokenizer.json": '{"model": {"type": "WordPiece"}}',
}


def _case(name: str, about: str, description: ModelDescription) -> dict[str, Any]:
    return {
        "name": name,
        "about": about,
        "description": description.record(),
        "block": description.block().hex(),
        "cid": model_cid(description),
    }


def vectors() -> dict[str, Any]:
    fp32 = ModelDescription(
        name="sentence-transformers/all-MiniLM-L6-v2",
        dimension=384,
        max_seq_length=256,
        pooling="mean",
        normalize=True,
        precision=FP32,
        weights=tuple(sorted((path, raw_cid(text.encode())) for path, text in FILES.items())),
    )
    return {
        "about": "Model identity (docs/protocol.md, 'Model identity'): each description's "
        "canonical DAG-CBOR block (hex) and its CIDv1 dag-cbor sha2-256, the model CID; "
        "`files` are the UTF-8 contents whose raw CIDs (CIDv1 raw sha2-256) the weights name.",
        "files": FILES,
        "cases": [
            _case(
                "hash_fake",
                "the in-package hash embedder: name and dimension alone, no weights",
                bare_description("hash-bow", 384),
            ),
            _case("fp32", "torch and ONNX fp32 (one CID for both)", fp32),
            _case(
                "int8",
                "ONNX int8: the same files, another precision, another CID",
                dataclasses.replace(fp32, precision=INT8),
            ),
        ],
    }


def main() -> int:
    return write_or_check(OUT, vectors, "make_model_vectors.py")


if __name__ == "__main__":
    raise SystemExit(main())
