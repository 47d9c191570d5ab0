"""Model identity (node/model_identity.py, index/model_files.py): the model CID, its vectors in
docs/vectors/model.json, the bundled model's description, the data dir's record of it
(node/startup.py) and the query's ``model_cid`` over REST (in-process)."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dag_cbor
import pytest
from fastapi.testclient import TestClient
from multiformats import CID

from api.app import create_app
from index.embedder import MODEL_NAME, bundled_model_path
from index.model_files import VECTOR_FILES, describe_bundled_model, file_cid
from index.sqlite_catalog import SqliteCatalog
from node.bootstrap import describe_model
from node.cid import raw_cid
from node.errors import IncompatibleDataDir, InvalidQuery, ModelMismatch, StorageError
from node.memory import HashEmbedder, MemoryVectorIndex
from node.model_identity import (
    FP32,
    INT8,
    ModelDescription,
    bare_description,
    check_query_model,
    model_cid,
    model_difference,
)
from node.search import Hit
from node.service import NodeOptions
from node.settings import Settings
from node.signing import SigningKey
from node.startup import MODEL_CID_SETTING
from tests.memory_nodes import memory_node

ROOT = Path(__file__).resolve().parents[2]
VECTORS: dict[str, Any] = json.loads((ROOT / "docs" / "vectors" / "model.json").read_text())
OPERATOR = SigningKey.generate()
WEIGHTS = (("config.json", raw_cid(b"{}")), ("model.safetensors", raw_cid(b"w")))
MODEL = ModelDescription(MODEL_NAME, 384, 256, "mean", True, FP32, WEIGHTS)

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# -- the CID ------------------------------------------------------------------------------


def test_the_model_cid_is_deterministic() -> None:
    again = ModelDescription(MODEL_NAME, 384, 256, "mean", True, FP32, tuple(WEIGHTS))
    assert again.block() == MODEL.block() and model_cid(again) == model_cid(MODEL)
    parsed = CID.decode(model_cid(MODEL))
    assert (parsed.version, parsed.codec.name, parsed.hashfun.name) == (1, "dag-cbor", "sha2-256")
    assert dag_cbor.decode(MODEL.block()) == MODEL.record()


@pytest.mark.parametrize(
    "change",
    [
        {"name": "sentence-transformers/all-mpnet-base-v2"},
        {"dimension": 768},
        {"max_seq_length": 128},
        {"pooling": "cls"},
        {"normalize": False},
        {"precision": INT8},
        {"weights": WEIGHTS[:1]},
        {"weights": (WEIGHTS[0], ("model.safetensors", raw_cid(b"w2")))},
        {"weights": (*WEIGHTS, ("vocab.txt", raw_cid(b"v")))},
    ],
)
def test_every_field_changes_the_cid(change: dict[str, Any]) -> None:
    assert model_cid(dataclasses.replace(MODEL, **change)) != model_cid(MODEL)


def test_torch_and_onnx_fp32_share_a_cid_and_int8_has_its_own(tmp_path: Path) -> None:
    def cid_of(backend: str) -> str:
        return model_cid(describe_model(Settings(data_dir=tmp_path, embedder=backend)))

    torch, fp32, int8 = cid_of("torch"), cid_of("onnx"), cid_of("onnx-int8")
    assert torch == fp32 != int8


@pytest.mark.parametrize(
    "bad",
    [
        {"precision": "fp16"},
        {"dimension": 0},
        {"max_seq_length": -1},
        {"normalize": 1},
        {"name": ""},
        {"weights": tuple(reversed(WEIGHTS))},
        {"weights": (WEIGHTS[0], WEIGHTS[0])},
        {"weights": (("/abs/model.bin", raw_cid(b"w")),)},
        {"weights": (("model.bin", "not-a-cid"),)},
    ],
)
def test_a_malformed_description_is_a_programming_error(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        dataclasses.replace(MODEL, **bad)


# -- the vectors ----------------------------------------------------------------------------


def test_committed_vectors_are_current() -> None:
    result = subprocess.run(
        [sys.executable, "scripts/make_model_vectors.py", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("case", VECTORS["cases"], ids=[c["name"] for c in VECTORS["cases"]])
def test_vectors_match_the_code(case: dict[str, Any]) -> None:
    record = case["description"]
    description = ModelDescription(
        name=record["name"],
        dimension=record["dimension"],
        max_seq_length=record["max_seq_length"],
        pooling=record["pooling"],
        normalize=record["normalize"],
        precision=record["precision"],
        weights=tuple(sorted(record["weights"].items())),
    )
    assert description.block().hex() == case["block"]
    assert model_cid(description) == case["cid"]
    for path, cid in record["weights"].items():
        assert raw_cid(VECTORS["files"][path].encode()) == cid


def test_vectors_cover_fp32_and_int8_of_one_model() -> None:
    by_name = {c["name"]: c for c in VECTORS["cases"]}
    assert {"hash_fake", "fp32", "int8"} <= set(by_name)
    assert by_name["fp32"]["cid"] != by_name["int8"]["cid"]
    assert by_name["hash_fake"]["cid"] == model_cid(HashEmbedder().description)


# -- the bundled model ---------------------------------------------------------------------


def test_the_bundled_model_has_a_stable_cid_per_precision() -> None:
    fp32 = describe_bundled_model(bundled_model_path(), FP32)
    assert describe_bundled_model(bundled_model_path(), FP32) == fp32
    int8 = describe_bundled_model(bundled_model_path(), INT8)
    assert model_cid(fp32) != model_cid(int8)
    assert dataclasses.replace(fp32, precision=INT8) == int8
    assert (fp32.name, fp32.dimension, fp32.max_seq_length) == (MODEL_NAME, 384, 256)
    paths = [path for path, _ in fp32.weights]
    assert "model.safetensors" in paths and "tokenizer.json" in paths
    assert "1_Pooling/config.json" in paths and "README.md" not in paths
    assert set(paths) <= set(VECTOR_FILES)


def _model_copy(tmp_path: Path) -> Path:
    """The bundled model's small files, with a stand-in for the weights."""
    source, copy = bundled_model_path(), tmp_path / "model"
    for rel in VECTOR_FILES:
        if (source / rel).is_file() and not rel.endswith((".safetensors", ".bin")):
            (copy / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source / rel, copy / rel)
    (copy / "model.safetensors").write_bytes(bytes(range(256)) * 5000)  # > one read chunk
    return copy


def test_a_changed_file_changes_the_cid_and_a_document_does_not(tmp_path: Path) -> None:
    copy = _model_copy(tmp_path)
    weights = copy / "model.safetensors"
    assert file_cid(weights) == raw_cid(weights.read_bytes())
    before = model_cid(describe_bundled_model(copy, FP32))
    (copy / "README.md").write_text("notes")
    assert model_cid(describe_bundled_model(copy, FP32)) == before
    (copy / "vocab.txt").write_text((copy / "vocab.txt").read_text() + "newword\n")
    assert model_cid(describe_bundled_model(copy, FP32)) != before


def test_a_model_without_weights_or_dimension_cannot_be_described(tmp_path: Path) -> None:
    copy = _model_copy(tmp_path)
    (copy / "model.safetensors").unlink()
    with pytest.raises(StorageError, match="no model weights"):
        describe_bundled_model(copy, FP32)
    (copy / "model.safetensors").write_bytes(b"w")
    (copy / "config.json").write_text("{}")
    with pytest.raises(StorageError, match="dimension"):
        describe_bundled_model(copy, FP32)


# -- the data directory ---------------------------------------------------------------------


async def test_a_data_dir_without_a_model_cid_gets_it_recorded(tmp_path: Path) -> None:
    catalog = SqliteCatalog(tmp_path / "catalog.sqlite3")
    # a directory from before model CIDs: name and dimension only
    catalog.set_setting("embedding_model", "hash-bow")
    catalog.set_setting("embedding_dimension", "384")
    node = memory_node(tmp_path, OPERATOR, catalog=catalog)
    await node.start()
    assert catalog.get_setting(MODEL_CID_SETTING) == model_cid(HashEmbedder().description)
    assert (await node.status()).model_cid == node.model_cid
    await node.close()
    again = memory_node(tmp_path, OPERATOR)
    await again.start()  # the same model: accepted
    await again.close()


async def test_a_data_dir_built_with_another_model_cid_is_refused(tmp_path: Path) -> None:
    first = memory_node(tmp_path, OPERATOR)
    await first.start()
    await first.close()
    # the same name and dimension at another precision (onnx-int8 after onnx, say)
    int8 = dataclasses.replace(HashEmbedder().description, precision=INT8)
    other = memory_node(tmp_path, OPERATOR, options=NodeOptions(data_dir=tmp_path, model=int8))
    with pytest.raises(IncompatibleDataDir) as refused:
        await other.start()
    message = refused.value.message
    assert model_cid(HashEmbedder().description) in message and model_cid(int8) in message
    assert "int8" in message and "fp32" in message and "another data dir" in message
    assert "what changed: precision 'fp32' -> 'int8'" in message


def test_a_refusal_names_the_weight_files_that_changed() -> None:
    base = ModelDescription(
        name="m",
        dimension=4,
        max_seq_length=8,
        pooling="mean",
        normalize=True,
        precision="fp32",
        weights=(("config.json", raw_cid(b"a")), ("tokenizer.json", raw_cid(b"b"))),
    )
    newer = dataclasses.replace(
        base, weights=(("config.json", raw_cid(b"a")), ("tokenizer.json", raw_cid(b"c")))
    )
    recorded = json.loads(json.dumps(base.record()))
    assert model_difference(recorded, newer) == "weight files tokenizer.json"
    assert model_difference(recorded, base) == ""
    longer = dataclasses.replace(newer, max_seq_length=16)
    assert model_difference(recorded, longer) == (
        "max_seq_length 8 -> 16; weight files tokenizer.json"
    )


def test_a_node_without_a_description_is_named_by_its_embedder(tmp_path: Path) -> None:
    node = memory_node(tmp_path, OPERATOR, options=NodeOptions(data_dir=tmp_path))
    assert node.model_cid == model_cid(bare_description("hash-bow", 384))


# -- a query's model_cid --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "error"),
    [
        (12, InvalidQuery),
        (["bafy"], InvalidQuery),
        ("\ud800", InvalidQuery),
        ("b" * 10_000, InvalidQuery),
        ("not-a-cid", InvalidQuery),
        (raw_cid(b"another model"), ModelMismatch),
        (model_cid(dataclasses.replace(MODEL, precision=INT8)), ModelMismatch),
    ],
)
def test_a_query_model_cid_other_than_the_nodes_is_refused(
    given: object, error: type[InvalidQuery]
) -> None:
    with pytest.raises(error) as refused:
        check_query_model(given, MODEL, model_cid(MODEL))
    assert type(refused.value) is error and refused.value.field == "model_cid"


def test_any_multibase_of_the_nodes_cid_is_the_nodes() -> None:
    cid = model_cid(MODEL)
    check_query_model(cid, MODEL, cid)
    check_query_model(str(CID.decode(cid).set(base="base58btc")), MODEL, cid)


class CountingIndex(MemoryVectorIndex):
    searches = 0

    def search(self, *args: Any, **kwargs: Any) -> list[Hit]:
        CountingIndex.searches += 1
        return super().search(*args, **kwargs)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    CountingIndex.searches = 0
    app = create_app(lambda: memory_node(tmp_path, OPERATOR, index=CountingIndex(384)))
    with TestClient(app) as test_client:
        yield test_client


def _vector(text: str) -> list[float]:
    return [float(x) for x in HashEmbedder().embed([text])[0]]


def test_status_names_the_model_by_its_cid(client: TestClient) -> None:
    model = client.get("/v1/status").json()["model"]
    fake = HashEmbedder().description
    assert model == {
        "name": "hash-bow",
        "dimension": 384,
        "cid": model_cid(fake),
        "precision": "fp32",
    }
    schema = client.get("/openapi.json").json()["components"]["schemas"]["QueryIn"]
    assert {"type": "string", "enum": [model["cid"]]} in [
        {k: v for k, v in option.items() if k in ("type", "enum")}
        for option in schema["properties"]["model_cid"]["anyOf"]
    ]
    assert schema["then"]["required"] == ["vector"]


def test_a_vector_with_the_nodes_model_cid_is_searched(client: TestClient) -> None:
    cid = client.post("/v1/facts", json={"text": "Octopuses have three hearts."}).json()["cid"]
    model = client.get("/v1/status").json()["model"]["cid"]
    body = {"query": "octopus", "vector": _vector("octopuses hearts"), "model_cid": model}
    reply = client.post("/v1/query", json={**body, "mode": "dense"})
    assert reply.status_code == 200, reply.text
    assert reply.json()["results"][0]["cid"] == cid
    assert CountingIndex.searches == 1


def test_a_vector_of_another_model_is_refused_unsearched(client: TestClient) -> None:
    client.post("/v1/facts", json={"text": "Octopuses have three hearts."})
    other = model_cid(dataclasses.replace(HashEmbedder().description, precision=INT8))
    reply = client.post(
        "/v1/query",
        json={"query": "octopus", "vector": _vector("octopus"), "model_cid": other},
    )
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["code"] == "model_mismatch" and error["field"] == "model_cid"
    assert client.get("/v1/status").json()["model"]["cid"] in error["message"]
    assert "hash-bow" in error["message"] and other in error["message"]
    assert set(reply.json()) == {"error"}
    assert CountingIndex.searches == 0


@pytest.mark.parametrize(
    "model_cid_value",
    [12, ["bafy"], {"cid": "x"}, True, "", "x" * 10_000, "not-a-cid", "zzzz"],
)
def test_hostile_model_cids_are_400(client: TestClient, model_cid_value: object) -> None:
    body = {"query": "octopus", "vector": _vector("octopus"), "model_cid": model_cid_value}
    reply = client.post("/v1/query", json=body)
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["code"]
    assert CountingIndex.searches == 0


def test_a_lone_surrogate_model_cid_is_400(client: TestClient) -> None:
    vector = json.dumps(_vector("octopus"))
    content = b'{"query": "octopus", "vector": ' + vector.encode() + b', "model_cid": "\\ud800"}'
    reply = client.post("/v1/query", content=content, headers={"content-type": "application/json"})
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["field"] == "model_cid"
    assert CountingIndex.searches == 0


def test_a_model_cid_without_a_vector_is_400(client: TestClient) -> None:
    model = client.get("/v1/status").json()["model"]["cid"]
    for body in (
        {"query": "octopus", "model_cid": model},
        {"query": "o", "model_cid": model, "vector": None},
    ):
        reply = client.post("/v1/query", json=body)
        assert reply.status_code == 400, reply.text
        assert "vector" in reply.json()["error"]["message"]
    assert CountingIndex.searches == 0
