"""Request and response schemas: the wire format, kept apart from the domain objects. The query
schemas live in ``api.query_schemas``, the peers' in ``api.peer_schemas``, re-exported here."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from api._schema_parts import absent, metadata_schema, visible_text
from api.peer_schemas import CollectionAdvertOut as CollectionAdvertOut
from api.peer_schemas import DirectoryEntryOut as DirectoryEntryOut
from api.peer_schemas import PeerConnected as PeerConnected
from api.peer_schemas import PeerConnectIn as PeerConnectIn
from api.peer_schemas import PeerOut as PeerOut
from api.peer_schemas import PeersOut as PeersOut
from api.query_schemas import CompletenessOut as CompletenessOut
from api.query_schemas import HitAnchorOut as HitAnchorOut
from api.query_schemas import HitProofOut as HitProofOut
from api.query_schemas import HitProvenance as HitProvenance
from api.query_schemas import LeanQueryOut as LeanQueryOut
from api.query_schemas import QueryField as QueryField
from api.query_schemas import QueryHit as QueryHit
from api.query_schemas import QueryIn as QueryIn
from api.query_schemas import QueryOptions as QueryOptions
from api.query_schemas import QueryOut as QueryOut
from node.facts import COLLECTION_PATTERN, DEFAULT_COLLECTION
from node.limits import (
    MAX_BATCH,
    MAX_COLLECTION_CHARS,
    MAX_METADATA_BYTES,
    MAX_METADATA_KEY_CHARS,
    MAX_REASON_BYTES,
    MAX_TEXT_BYTES,
)
from node.signing import ADDRESS_PATTERN

MetadataIn = dict[str, Any]


class ErrorDetail(BaseModel):
    code: str = Field(description="Machine-readable error code, e.g. invalid_fact.")
    message: str = Field(description="What is wrong, for people.")
    field: str | None = Field(None, description="The offending field, when there is one.")
    tombstone: str | None = Field(
        None, description="410 revoked: the CID of the contributor's signed tombstone."
    )
    holders: list[str] | None = Field(
        None,
        description="409 collection_not_held: peers that advertise the collection (the peer "
        "directory, connected first); write there instead.",
    )


class ErrorBody(BaseModel):
    error: ErrorDetail


class FactIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(
        description=f"The fact, 1 to {MAX_TEXT_BYTES} bytes of UTF-8, with at least one visible "
        "character (not only whitespace, control or zero-width characters).",
        examples=["The Eiffel Tower is in Paris."],
        json_schema_extra=visible_text,
    )
    metadata: MetadataIn | None = Field(
        None,
        description=f"Up to {MAX_METADATA_BYTES} bytes encoded: keys (1-{MAX_METADATA_KEY_CHARS} "
        "characters, not starting with '$') map "
        "to a string, 64-bit integer, boolean or list of strings.",
        examples=[{"source": "https://en.wikipedia.org/wiki/Eiffel_Tower", "lang": "en"}],
        json_schema_extra=metadata_schema,
    )
    contributor: str | None = Field(
        None,
        # documented, checked by the domain (whose errors name the rule: invalid_fact)
        json_schema_extra={"pattern": ADDRESS_PATTERN},
        description="EIP-55 address of the signer; the record names it. Omit both contributor "
        "and signature to have the node's operator key sign (unless signatures are required).",
        examples=["0x70997970C51812dc3A010C7d01b50e0d17dc79C8"],
    )
    signature: str | None = Field(
        None,
        json_schema_extra={"pattern": "^0x[0-9a-fA-F]{130}$"},  # checked: invalid_signature
        description="0x hex, 65 bytes: EIP-191 personal_sign by contributor of the fact's CID "
        "string (compute the CID from text, metadata and contributor; see the README).",
    )
    supersedes: str | None = Field(
        None,
        description="CID of an earlier fact of the same contributor that this one corrects: "
        "the record becomes version 2, and search then returns only the newer fact.",
    )
    collection: str | None = Field(
        None,
        # documented, checked by the domain (invalid_fact)
        json_schema_extra={"pattern": COLLECTION_PATTERN, "maxLength": MAX_COLLECTION_CHARS},
        description=f"The collection the fact belongs to (default {DEFAULT_COLLECTION!r}; "
        f"1-{MAX_COLLECTION_CHARS} characters of a-z, 0-9, '.', '_', '-'). Another than the "
        "default makes the record version 2; the CID (and so a signature) covers it. A node "
        "that does not hold the collection refuses the fact: 409 collection_not_held.",
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
    v: int = Field(
        description="1, or 2 for a record that supersedes another or names a collection."
    )
    text: str
    metadata: dict[str, Any]
    contributor: str | None
    # left out when absent, never null: the JSON is the record, and whoever hashes it
    # (knowhub verify, a browser) must get its CID back
    supersedes: str | None = Field(
        None,
        exclude_if=absent,
        description="Version 2: the earlier fact of the same contributor it corrects.",
    )
    collection: str | None = Field(
        None,
        exclude_if=absent,
        description="Version 2: the fact's collection; left out for the default one.",
    )


class TombstoneRecord(BaseModel):
    v: int
    kind: Literal["tombstone"]
    revokes: str = Field(description="CID of the revoked fact.")
    contributor: str
    reason: str | None = Field(None, exclude_if=absent, description="Left out when absent.")


class RevokeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    contributor: str | None = Field(
        None,
        json_schema_extra={"pattern": ADDRESS_PATTERN},
        description="EIP-55 address of the fact's contributor (who signs the tombstone). Omit "
        "with signature to revoke, with an API key, a fact the node's operator key signed.",
    )
    signature: str | None = Field(
        None,
        json_schema_extra={"pattern": "^0x[0-9a-fA-F]{130}$"},
        description="0x hex, 65 bytes: EIP-191 personal_sign by contributor of the tombstone's "
        "CID (GET /v1/facts/{cid}/tombstone gives the record and CID to sign).",
    )
    reason: str | None = Field(
        None,
        max_length=MAX_REASON_BYTES,
        description=f"Why, in at most {MAX_REASON_BYTES} bytes of UTF-8; part of the signed "
        "record (sign the tombstone made with the same reason).",
    )


class RevokeOut(BaseModel):
    tombstone: str = Field(description="CID of the signed tombstone (gossiped and anchored).")
    revokes: str = Field(description="CID of the revoked fact.")
    status: Literal["created", "exists"]


class TombstoneOut(BaseModel):
    cid: str = Field(description="The tombstone's CID: what the contributor signs (EIP-191).")
    record: TombstoneRecord
    block: str = Field(description="The record's DAG-CBOR bytes, base64 (hash them: the CID).")


class FactOut(BaseModel):
    cid: str
    record: FactRecord
    signature: str | None = Field(description="The contributor's EIP-191 signature of the CID.")
    status: Literal["stored"] = Field(description="Storage state of the fact on this node.")
    stored_at: float = Field(description="Unix time this node first stored the fact.")
    superseded_by: str | None = Field(
        None,
        description="The newer version by the same contributor that replaces this fact here "
        "(search leaves this fact out unless include_superseded).",
    )
    duplicate_of: str | None = Field(
        None,
        exclude_if=absent,
        description="The stored fact this one repeats (same words, or nearly the same "
        "embedding by the same contributor): kept and anchored, left out of search.",
    )


class IndexStatus(BaseModel):
    kind: str
    size: int
    duplicates: int = Field(
        0,
        description="Facts stored but left out of search as near-duplicates of a stored fact: "
        "size = facts - duplicates - hidden.",
    )


class ModelStatus(BaseModel):
    name: str
    dimension: int
    cid: str = Field(
        description="The model CID: CIDv1 dag-cbor of the model's description (source weights, "
        "tokenizer, configs, precision; docs/protocol.md, 'Model identity'). Vectors compare "
        "only within one; a query's `model_cid` must be this one."
    )
    precision: Literal["fp32", "int8"] = Field(
        description="fp32 (torch and ONNX fp32 share a CID) or int8 (ONNX int8, another CID)."
    )


class IpfsStatus(BaseModel):
    store: str = Field(description="embedded (blockstore in the data dir) or kubo")
    publication_backlog: int = Field(description="Fact blocks not yet in the content store.")
    error: str | None = Field(None, description="Last content store error, while it lasts.")


class ChainStatusOut(BaseModel):
    rpc_url: str = Field(description="The chain's JSON-RPC endpoint.")
    chain_id: int | None = Field(description="None while the chain cannot be reached.")
    registry: str = Field(description="KnowledgeRegistry address.")
    account: str = Field(description="The operator account sending anchoring transactions.")
    anchor_queue: int = Field(description="Facts waiting to be put in a batch.")
    open_batches: int = Field(description="Batches sealed or sent but not anchored yet.")
    last_anchored_block: int | None
    error: str | None = Field(None, description="Last chain error, while anchoring retries.")
    follow_block: int | None = Field(
        description="Chain followed up to this block: every batch anchored until then is "
        "complete on this node, checked against its anchored root."
    )
    verified_batches: int = Field(description="Anchored batches checked complete since start.")
    facts_from_chain: int = Field(description="Facts fetched because an anchor listed them.")
    follow_error: str | None = None


class NetworkStatusOut(BaseModel):
    peer_id: str = Field(description="libp2p peer id (Ed25519, stable across restarts).")
    listen_addresses: list[str] = Field(description="Multiaddrs to bootstrap from (with /p2p/).")
    connected_peers: int
    facts_published: int = Field(description="Facts this node announced by gossip.")
    facts_received: int = Field(description="Verified facts received by gossip and sync.")
    messages_rejected: int = Field(description="Gossip messages that failed validation.")
    messages_accepted: int = Field(description="Gossip messages that passed validation.")
    syncs: int = Field(description="Completed catch-up syncs.")
    last_sync_error: str | None
    fact_set_digest: str = Field(
        description="Fingerprint of the set of signed fact CIDs: nodes holding the same facts "
        "show the same digest (docs/protocol.md)."
    )
    signed_facts: int = Field(description="Signed facts, the ones that travel between peers.")
    anchor_notices: int = Field(description="Anchor notices received from peers (hints).")
    running: bool = Field(description="The libp2p host is up and accepting connections.")
    error: str | None = Field(description="Why it is down, while it is (it restarts).")
    bootstrap_peers: int = Field(description="Bootstrap peers configured.")
    messages_refused: int = Field(
        description="Gossip messages and sync requests refused unread: from a banned peer, or "
        "from an untrusted peer on a penalised address (docs/protocol.md, limits)."
    )
    connections_refused: int = Field(
        description="Inbound connections refused by the per-address or total cap."
    )
    inbox_dropped: int = Field(
        description="Facts from gossip dropped because the inbox was full (sync fetches them)."
    )
    banned_peers: int = Field(description="Peers banned now (offences, or by the operator).")
    score_bands: dict[str, int] = Field(
        description="Connected peers by gossipsub score band: trusted, positive, negative, "
        "graylisted (docs/protocol.md)."
    )
    queries_answered: int = Field(0, description="Peers' federated queries answered.")
    queries_busy: int = Field(
        0, description="Peers' federated queries refused as over a bound (busy)."
    )
    query_bytes: int = Field(
        0,
        description="Bytes of federated queries on the wire, asking and answering (framed "
        "requests and answers).",
    )


class IngestStatusOut(BaseModel):
    pending: int = Field(description="Texts admitted and waiting to be embedded.")
    bound: int = Field(
        description="Beyond this many waiting texts, writes get 503 with Retry-After and "
        "peers' facts are left to catch-up sync."
    )
    queries_waiting: int = Field(description="Queries waiting for the model (they go first).")
    deferred_to_sync: int = Field(
        description="Peers' records left to sync: the queue was full, or (counted also in "
        "over_quota) their contributor was over its gossip quota."
    )
    over_quota: int = Field(
        0, description="Gossiped records left to sync because their contributor was over quota."
    )
    other_collections: int = Field(
        0,
        description="Facts from peers or CAR imports dropped before embedding: their "
        "collection is not held here (KNOWHUB_COLLECTIONS).",
    )
    texts_per_second: float = Field(description="Measured ingest embedding rate (EWMA).")
    full: bool = Field(description="The next write would get 503 (see /readyz).")
    write_error: str | None = Field(
        description="The last storage error of a write, until a write succeeds again."
    )


class IntegrityOut(BaseModel):
    scanned: bool = Field(
        description="The blockstore was cross-checked at start (unclean stop or detected loss)."
    )
    lost_from_catalog: int = Field(
        description="Acknowledged facts the catalog had lost at start (the index still had them)."
    )
    recovered: int = Field(description="Lost facts re-ingested from their blocks at start.")
    unrecoverable: list[str] = Field(
        description="CIDs of lost facts signed by others whose signature is gone (first 100)."
    )
    unrecoverable_count: int


class RevocationsOut(BaseModel):
    tombstones: int = Field(description="Tombstones stored (kept forever, gossiped, anchored).")
    erased: int = Field(description="Facts erased here by a tombstone since the node started.")
    purge_pending: int = Field(
        description="Erased facts' blocks still waiting to leave the content store."
    )
    purge_failed: int = Field(
        description="Erased facts' blocks the content store would not delete (see the log)."
    )


class ModerationOut(BaseModel):
    hidden: int = Field(
        description="Facts this node's operator hides: not served, searched or forwarded here."
    )


class HideIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cid: str = Field(description="CID of a fact this node stores.")
    reason: str | None = Field(
        None, max_length=MAX_REASON_BYTES, description="Why (kept on this node only)."
    )


class HiddenOut(BaseModel):
    cid: str
    reason: str | None
    hidden_at: float = Field(description="Unix time it was hidden.")


class HiddenList(BaseModel):
    hidden: list[HiddenOut]
    count: int = Field(description="How many facts are hidden in all.")


class HideOut(BaseModel):
    cid: str
    status: Literal["hidden", "already_hidden", "unhidden", "not_hidden"]


class CollectionsOut(BaseModel):
    held: str | list[str] = Field(description='"*" (all) or the collections this node holds.')
    facts: dict[str, int] = Field(description="Stored facts per collection.")


class StatusOut(BaseModel):
    version: str
    facts: int
    index: IndexStatus
    model: ModelStatus
    ipfs: IpfsStatus
    operator: str = Field(description="Address of the operator key (signs unsigned facts).")
    require_signatures: bool
    chain: ChainStatusOut | None = Field(description="None when anchoring is off.")
    p2p: NetworkStatusOut | None = Field(description="None when networking is off.")
    ingest: IngestStatusOut
    integrity: IntegrityOut = Field(description="What the start-up cross-check found.")
    revocations: RevocationsOut
    moderation: ModerationOut
    collections: CollectionsOut | None = None


class ProvenanceOut(BaseModel):
    cid: str
    record: FactRecord | TombstoneRecord = Field(
        description="The record (a fact, or a tombstone): hash it to check the CID."
    )
    contributor: str | None
    signature: str | None
    signature_valid: bool = Field(
        description="The signature recovers to contributor (re-checked on every read)."
    )
    status: Literal["pending", "anchored"]
    root: str | None = Field(description="Merkle root (0x hex) of the fact's batch.")
    proof: list[str] = Field(description="Sibling hashes (0x hex), leaf to root.")
    manifest_cid: str | None = Field(description="Manifest listing the batch's facts.")
    chain_id: int | None
    registry: str | None
    tx_hash: str | None
    block_number: int | None
    anchored_at: int | None = Field(description="Unix time of the anchoring block.")


class Health(BaseModel):
    status: Literal["ok"]


class Ready(BaseModel):
    status: Literal["ready", "not_ready"]
    reasons: list[str] = Field(description="Why the node cannot take writes now.")


class SnapshotOut(BaseModel):
    root: str = Field(description="CID of the manifest listing every fact.")
    facts: int
    car_url: str = Field(description="Gateway path of the snapshot as a CARv1.")


class ImportOut(BaseModel):
    roots: list[str]
    facts: int = Field(description="Signed records in the CAR (facts and tombstones).")
    created: int
    existing: int
    refused: int = Field(
        0, description="Records this node's rules refused, e.g. facts their contributor revoked."
    )


class CheckOut(BaseModel):
    name: str = Field(description="cid, contributor, signature, proof, anchor, registry ...")
    ok: bool
    detail: str


class VerificationOut(BaseModel):
    cid: str | None
    verified: bool = Field(description="Every check passed: the fact is proven on chain.")
    status: str | None = Field(description="pending or anchored, as the bundle says.")
    checks: list[CheckOut]
    chain_rpc: str | None = Field(description="The chain the anchor was checked against.")
    registry: str | None
    chain_from_node: bool = Field(
        description="True when the RPC / registry were taken from the node that served the "
        "bundle rather than given by the verifier (then the chain check trusts that node's "
        "choice of chain)."
    )
