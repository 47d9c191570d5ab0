"""Request and response schemas: the wire format, kept apart from the domain objects."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from node.search import SearchMode
from node.service import MAX_BATCH, MAX_K

MetadataIn = dict[str, Any]


class ErrorDetail(BaseModel):
    code: str = Field(description="Machine-readable error code, e.g. invalid_fact.")
    message: str = Field(description="What is wrong, for people.")
    field: str | None = Field(None, description="The offending field, when there is one.")


class ErrorBody(BaseModel):
    error: ErrorDetail


class FactIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(
        description="The fact, 1 byte to 16 KiB of UTF-8, not only whitespace.",
        examples=["The Eiffel Tower is in Paris."],
    )
    metadata: MetadataIn | None = Field(
        None,
        description="Up to 4 KiB: keys map to a string, integer, boolean or list of strings.",
        examples=[{"source": "https://en.wikipedia.org/wiki/Eiffel_Tower", "lang": "en"}],
    )


class FactCreated(BaseModel):
    cid: str = Field(description="CIDv1 (dag-cbor, sha2-256, base32) of the fact record.")
    status: Literal["created", "exists"]


class BatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    facts: list[Any] = Field(
        max_length=MAX_BATCH, description=f"Up to {MAX_BATCH} objects shaped like FactIn."
    )


class BatchItem(BaseModel):
    index: int
    cid: str | None = None
    status: Literal["created", "exists", "error"]
    error: ErrorDetail | None = None


class BatchOut(BaseModel):
    results: list[BatchItem]
    created: int
    existing: int
    failed: int


class FactRecord(BaseModel):
    v: int
    text: str
    metadata: dict[str, Any]
    contributor: str | None


class FactOut(BaseModel):
    cid: str
    record: FactRecord
    status: Literal["stored"] = Field(description="Storage state of the fact on this node.")
    stored_at: float = Field(description="Unix time this node first stored the fact.")


class QueryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(description="What to look for.", examples=["Where is the Eiffel Tower?"])
    k: int = Field(5, ge=1, le=MAX_K, description="How many facts to return.")
    mode: SearchMode = Field(
        SearchMode.HYBRID, description="dense (embeddings), keyword (BM25) or hybrid (RRF)."
    )
    filter: dict[str, Any] | None = Field(
        None,
        description='Exact metadata filter: {"key": value} or {"key": {"$in": [v1, v2]}}.',
        examples=[{"lang": "en", "tags": {"$in": ["geography", "history"]}}],
    )
    min_score: float | None = Field(
        None, description="Drop results scoring below this (scale depends on the mode)."
    )
    vector: list[float] | None = Field(
        None,
        max_length=4096,
        description="Optional query embedding made with the node's model (see /v1/status); "
        "used instead of embedding `query` for the dense ranking.",
    )


class QueryHit(BaseModel):
    cid: str
    text: str
    score: float
    metadata: dict[str, Any]
    contributor: str | None


class QueryOut(BaseModel):
    results: list[QueryHit]
    context: str = Field(description="Numbered facts with CID citations, ready for a prompt.")


class IndexStatus(BaseModel):
    kind: str
    size: int


class ModelStatus(BaseModel):
    name: str
    dimension: int


class IpfsStatus(BaseModel):
    store: str = Field(description="embedded (blockstore in the data dir) or kubo")
    publication_backlog: int = Field(description="Fact blocks not yet in the content store.")
    error: str | None = Field(None, description="Last content store error, while it lasts.")


class StatusOut(BaseModel):
    version: str
    facts: int
    index: IndexStatus
    model: ModelStatus
    ipfs: IpfsStatus
    data_dir: str


class Health(BaseModel):
    status: Literal["ok"]
