"""Model identity: what makes a node's vectors, named by a content hash (the "model CID").

Vectors compare only when one model made them. A node names its model by the CIDv1
(dag-cbor, sha2-256) of the canonical DAG-CBOR encoding of its description, the map::

    {"v": 1, "kind": "embedding-model", "name": <str>, "dimension": <int>,
     "max_seq_length": <int>, "pooling": <str>, "normalize": <bool>, "precision": <str>,
     "weights": {<relative path>: <raw CID string of the file's bytes>, ...}}

and records it in its data directory (``node.startup``: a directory built with another model
is refused, so vectors never mix in one index), reports it in ``/v1/status`` and refuses a
query vector that a client says another model made (``check_query_model``).

Rules:

- Only what changes the vectors is described: the source model's files (weights, tokenizer,
  configs), the sequence limit, pooling, normalisation and the numeric precision; the backend
  that runs it is not. torch and ONNX Runtime in fp32 give the same vectors to float rounding
  (cosine >= 0.9999, ``index.onnx_embedder``), so they share one CID (precision ``fp32``);
  ONNX int8 vectors differ (cosine ~0.99), so precision ``int8`` gives another CID.
- The weights hashed are the *source* model files (the bundled sentence-transformers
  directory), never a locally exported ONNX file: an export's bytes can differ between library
  versions while its vectors do not.
- ``weights`` values are CID *strings*, not IPLD links (as a tombstone's ``revokes``): the
  files are not published as blocks (a file over 256 KiB is not even one raw block in IPFS),
  and a DAG walk of a description must not go looking for them.
- Deterministic: the same description always gives the same bytes and CID (DAG-CBOR sorts map
  keys; ``weights`` is held sorted by path). Vectors: ``docs/vectors/model.json``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import dag_cbor

from node.cid import MAX_CID_STRING, canonical_cid_string, dag_cbor_cid
from node.errors import InvalidInput, InvalidQuery, ModelMismatch

MODEL_KIND_NAME: Final = "embedding-model"
MODEL_VERSION: Final = 1
FP32: Final = "fp32"
INT8: Final = "int8"
PRECISIONS: Final = (FP32, INT8)


@dataclass(frozen=True, slots=True)
class ModelDescription:
    """What determines an embedding model's vectors. ``ValueError`` on a malformed one (a
    programming error: descriptions are built by the node, never received)."""

    #: The model's usual name, e.g. ``sentence-transformers/all-MiniLM-L6-v2``.
    name: str
    dimension: int
    #: Tokens a text is truncated to; 0: no limit (the in-package hash fake).
    max_seq_length: int
    #: How token vectors become one: ``mean`` (over the attention mask), ...
    pooling: str
    #: Whether vectors are scaled to unit length.
    normalize: bool
    #: ``fp32`` or ``int8``: the arithmetic the vectors come out of.
    precision: str
    #: ``(relative path with "/", raw CID string of the file's bytes)``, sorted by path.
    weights: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError("a model description needs a name")
        if type(self.dimension) is not int or self.dimension < 1:
            raise ValueError(f"dimension must be a positive int, got {self.dimension!r}")
        if type(self.max_seq_length) is not int or self.max_seq_length < 0:
            raise ValueError(f"max_seq_length must be an int >= 0, got {self.max_seq_length!r}")
        if not self.pooling:
            raise ValueError("pooling must be named")
        if type(self.normalize) is not bool:
            raise ValueError("normalize must be a bool")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        paths = [path for path, _ in self.weights]
        if paths != sorted(set(paths)):
            raise ValueError("weights must be sorted by path, each path once")
        for path, cid in self.weights:
            if not path or path.startswith("/") or "\\" in path:
                raise ValueError(f"weight paths are relative, with '/': {path!r}")
            try:
                canonical = canonical_cid_string(cid)
            except InvalidInput as exc:
                raise ValueError(f"{path}: {cid!r} is not a CID") from exc
            if canonical != cid:
                raise ValueError(f"{path}: {cid!r} is not a canonical CID string")

    def record(self) -> dict[str, Any]:
        """The map whose DAG-CBOR encoding the model CID hashes."""
        return {
            "v": MODEL_VERSION,
            "kind": MODEL_KIND_NAME,
            "name": self.name,
            "dimension": self.dimension,
            "max_seq_length": self.max_seq_length,
            "pooling": self.pooling,
            "normalize": self.normalize,
            "precision": self.precision,
            "weights": dict(self.weights),
        }

    def block(self) -> bytes:
        """The canonical DAG-CBOR bytes of :meth:`record`."""
        block: bytes = dag_cbor.encode(self.record())
        return block


def model_difference(recorded: Mapping[str, Any], description: ModelDescription) -> str:
    """What differs between a recorded description (``ModelDescription.record`` as JSON
    gave it back) and ``description``, in words: the fields, then the weight files by path
    ("" when nothing differs, or the recorded one is no description)."""
    now = description.record()
    changes = [
        f"{key} {recorded.get(key)!r} -> {value!r}"
        for key, value in now.items()
        if key != "weights" and recorded.get(key) != value
    ]
    before = recorded.get("weights")
    if isinstance(before, Mapping):
        after: Mapping[str, Any] = now["weights"]
        paths = sorted(set(before) | set(after))
        changed = [path for path in paths if before.get(path) != after.get(path)]
        if changed:
            changes.append("weight files " + ", ".join(changed))
    return "; ".join(changes)


def model_cid(description: ModelDescription) -> str:
    """The model CID: CIDv1 dag-cbor sha2-256 of the description's canonical block."""
    return dag_cbor_cid(description.block())


def bare_description(name: str, dimension: int) -> ModelDescription:
    """A model known by name and dimension alone: no weights, no sequence limit, fp32. The
    in-package hash fake is described so, and so is a node whose options describe no model
    (tests that assemble one directly); ``node.bootstrap`` always describes the real one."""
    return ModelDescription(
        name=name,
        dimension=dimension,
        max_seq_length=0,
        pooling="none",
        normalize=True,
        precision=FP32,
    )


def check_query_model(given: object, description: ModelDescription, cid: str) -> None:
    """A query's ``model_cid`` (what the client says made its vector) against the node's
    model: ``InvalidQuery`` when it is no CID string, ``ModelMismatch`` when it names another
    model (any multibase of the node's CID is the node's)."""
    field = "model_cid"
    if not isinstance(given, str):
        raise InvalidQuery("model_cid must be a CID string", field=field)
    try:
        given.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidQuery("model_cid is not valid Unicode (lone surrogate)", field=field) from exc
    if len(given) > MAX_CID_STRING:
        raise InvalidQuery(
            f"model_cid is {len(given)} characters, a CID is at most {MAX_CID_STRING}",
            field=field,
        )
    try:
        canonical = canonical_cid_string(given)
    except InvalidInput as exc:
        raise InvalidQuery(f"model_cid is not a CID: {exc.message}", field=field) from exc
    if canonical != cid:
        raise ModelMismatch(
            f"model_cid {canonical} is not this node's model: it runs {description.name} "
            f"({description.precision}), model CID {cid} (GET /v1/status); embed the query "
            "with that model, or send the text without a vector",
            field=field,
        )
