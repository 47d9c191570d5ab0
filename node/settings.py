"""Node settings, read once at the entry point from ``KNOWHUB_*`` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from eth_utils.address import is_checksum_address
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from node.collections import Collections
from node.errors import ConfigError
from node.federation import MAX_PEERS_PER_QUERY
from node.ingest import NEAR_DUPLICATE_COSINE
from node.limits import MAX_EF, MAX_QUERY_BUDGET_SECONDS
from node.quotas import GOSSIP_BURST, GOSSIP_RATE
from node.search import DEFAULT_MIN_RELEVANCE


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KNOWHUB_", extra="forbid")

    data_dir: Path = Field(Path(".knowhub"), description="Where catalog, index and keys live.")
    host: str = Field("127.0.0.1", description="REST listen address.")
    port: int = Field(8700, ge=0, le=65535, description="REST listen port (0: any free port).")
    log_level: str = Field("info", description="Python logging level name.")
    log_format: Literal["auto", "json", "text"] = Field(
        "auto",
        description="Log lines as JSON objects (with the request id) or text; auto: JSON unless "
        "stderr is a terminal.",
    )

    embed_batch_size: int = Field(64, ge=1, le=1024, description="Texts per model forward pass.")
    embedder: Literal["onnx-int8", "onnx", "torch"] = Field(
        "onnx-int8",
        description="Embedding backend for the bundled all-MiniLM-L6-v2: ONNX Runtime with int8 "
        "weights (default, fastest; SciFact quality in BENCHMARKS.md), ONNX fp32 (the torch "
        "vectors to float rounding), or torch through sentence-transformers. The ONNX models are "
        "exported from the bundled weights at setup (python -m index.onnx_export), never "
        "downloaded; a node exports them at its first start if they are missing. int8 and fp32 "
        "(onnx, torch) vectors are different models (model CIDs, node.model_identity): a data "
        "dir built with one is refused by the other.",
    )
    onnx_dir: Path | None = Field(
        None, description="Where the exported ONNX models are; default: inside the environment."
    )
    embed_threads: int = Field(
        0,
        ge=0,
        description="Threads of the ingest embedder (batch throughput); 0: the backend's "
        "default (all cores). torch's threads are process-wide: this sets them for both copies.",
    )
    query_threads: int = Field(
        1,
        ge=0,
        description="Threads of the ONNX query embedder (one short text: one thread is "
        "fastest on a loaded machine, BENCHMARKS.md); 0: the backend's default.",
    )
    ingest_queue: int = Field(
        1024,
        ge=1,
        description="Texts waiting to be embedded for ingest (REST, CAR, gossip) before writes "
        "get 503 with Retry-After and gossip is left to catch-up sync.",
    )
    ingest_max_wait: float = Field(
        10.0,
        gt=0,
        description="... or when the texts already waiting would take longer than this many "
        "seconds to embed at the measured rate (a write is refused, not left to time out).",
    )
    query_queue: int = Field(
        256, ge=1, description="Queries waiting for the model before queries get 503."
    )
    query_model_copy: bool = Field(
        True,
        description="Embed queries with a second copy of the model (about 90 MB more memory) "
        "on their own thread; ingest passes pause between layers for them. false: one copy, "
        "a query waits for the ingest slice in progress.",
    )
    ingest_slice_ms: float = Field(
        25.0,
        gt=0,
        le=10_000,
        description="Ingest is embedded in slices of about this many ms; a query waits at most "
        "one slice behind ingest (queries always go first).",
    )

    hnsw_threshold: int = Field(
        20_000, ge=1, description="Above this many vectors the flat index becomes HNSW."
    )
    hnsw_m: int = Field(32, ge=4, le=128, description="HNSW graph degree.")
    hnsw_ef_construction: int = Field(80, ge=8, description="HNSW build beam width.")
    hnsw_ef_search: int = Field(
        192, ge=8, le=MAX_EF, description="HNSW query beam width (recall knob; a query's `ef`)."
    )
    vector_compression: Literal["none", "sq8"] = Field(
        "sq8",
        description="How the HNSW graph holds vectors: 'sq8' keeps 8-bit codes in RAM (a "
        "quarter of the floats) and re-ranks the best candidates with the catalog's float "
        "vectors; 'none' keeps the floats in RAM. The flat index below hnsw_threshold is "
        "always float. Changing it rebuilds the index at the next start.",
    )
    exact_filter_limit: int = Field(
        20_000, ge=0, description="Filtered dense search is brute force up to this many matches."
    )
    candidate_pool: int = Field(100, ge=10, le=10_000, description="Candidates per ranker.")
    search_threads: int = Field(
        0,
        ge=0,
        le=256,
        description="Threads that rank queries (vector and keyword index, catalog reads), the "
        "last one to go idle first, so that queries one at a time keep one thread's caches "
        "warm; 0: one per core.",
    )
    min_relevance: float = Field(
        DEFAULT_MIN_RELEVANCE,
        ge=-1.0,
        le=1.0,
        description="Context threshold on a hit's relevance (dense cosine with the query): "
        "the LLM context cites only hits at or above it. Calibrated for all-MiniLM-L6-v2.",
    )
    index_flush_interval: float = Field(30.0, gt=0, description="Seconds between index saves.")

    ipfs_api: str | None = Field(
        None,
        description="Kubo RPC endpoint (multiaddr /ip4/127.0.0.1/tcp/5001 or URL); unset: the "
        "embedded blockstore in the data directory.",
    )
    ipfs_timeout: float = Field(30.0, gt=0, description="Seconds per Kubo RPC call.")
    max_car_bytes: int = Field(
        1024**3, ge=1024, description="Largest snapshot CAR accepted by POST /v1/snapshots/import."
    )

    key_file: Path | None = Field(
        None,
        description="Operator key (JSON with private_key, mode 0600): signs unsigned submissions "
        "and anchoring transactions. Unset: <data_dir>/operator.key, created on first start.",
    )
    require_signatures: bool = Field(
        False, description="Refuse (401) submissions that carry no contributor signature."
    )
    trust_roots: str = Field(
        "",
        description="Comma-separated EIP-55 addresses the node's contributor reputation starts "
        "from (node.reputation); empty: the operator key alone.",
    )
    reputation_interval: float = Field(
        0.5, gt=0, description="Seconds at least between two reputation recomputations."
    )
    gossip_quota_rate: float = Field(
        GOSSIP_RATE,
        gt=0,
        description="Records per second each contributor may have stored from gossip; beyond "
        "its quota (and burst) its records wait for catch-up sync.",
    )
    gossip_quota_burst: int = Field(
        GOSSIP_BURST, ge=1, description="Burst of the per-contributor gossip quota."
    )
    near_duplicate_cosine: float = Field(
        NEAR_DUPLICATE_COSINE,
        ge=0.0,
        le=1.0,
        description="A new fact whose embedding has at least this cosine with a stored fact of "
        "the same contributor is linked to it and left out of search; 0: off.",
    )

    collections: str = Field(
        "*",
        description="The collections this node holds: '*' (all, the default) or comma-separated "
        "names (1-64 characters of a-z, 0-9, '.', '_', '-'). Facts of other collections are "
        "refused on REST (409 collection_not_held) and dropped, before embedding, from gossip, "
        "sync and CAR imports.",
    )

    federation_budget: float = Field(
        2.0,
        gt=0.0,
        le=MAX_QUERY_BUDGET_SECONDS,
        description="Seconds a query with scope network waits for peers (a query may ask for "
        "less with budget_ms); peers that have not answered are reported as timed out.",
    )
    federation_max_peers: int = Field(
        MAX_PEERS_PER_QUERY, ge=1, le=64, description="Peers one network query asks at most."
    )
    federation_penalty_seconds: float = Field(
        600.0,
        ge=0.0,
        description="Seconds a peer whose answer failed verification is left out of network "
        "queries (it also counts as an offence toward a ban).",
    )
    p2p_query_rate: float = Field(
        10.0,
        gt=0.0,
        description="Peers' query-protocol requests answered per second per peer (token "
        "bucket; a keyword or hybrid network query is two: pools, then proofs); beyond it and "
        "the burst they get an immediate busy answer.",
    )
    p2p_query_burst: int = Field(20, ge=1, description="Burst above p2p_query_rate.")
    p2p_query_concurrency: int = Field(
        4, ge=1, le=64, description="Peers' network queries answered at once, all peers."
    )

    @field_validator("collections")
    @classmethod
    def _check_collections(cls, value: str) -> str:
        try:
            Collections.parse(value)
        except ConfigError as exc:
            raise ValueError(exc.message) from exc
        return value

    @field_validator("trust_roots")
    @classmethod
    def _check_trust_roots(cls, value: str) -> str:
        for address in trust_root_list(value):
            if not is_checksum_address(address):
                raise ValueError(f"trust root {address!r} is not an EIP-55 checksummed address")
        return value

    chain_rpc: str | None = Field(
        None,
        description="EVM JSON-RPC URL for anchoring; unset: a local anvil chain kept in the "
        "data directory (see local_chain).",
    )
    registry_address: str | None = Field(
        None, description="KnowledgeRegistry address on chain_rpc (knowhub chain deploy)."
    )
    local_chain: bool = Field(
        True, description="Without chain_rpc, run a local anvil chain; false: no anchoring."
    )
    chain_timeout: float = Field(10.0, gt=0, description="Seconds per chain RPC call.")
    anchor_batch_size: int = Field(
        256, ge=1, le=65_536, description="A batch closes when this many facts wait ..."
    )
    anchor_batch_age: float = Field(
        10.0, gt=0, description="... or when the oldest has waited this many seconds."
    )
    anchor_confirmations: int = Field(
        1, ge=1, le=1000, description="Blocks before a batch counts as anchored."
    )
    anchor_peer_facts: bool = Field(
        False,
        description="Also anchor facts received from peers (default: their origin anchors them "
        "and this node adopts that anchor from the chain).",
    )
    anchor_resend_after: float = Field(
        60.0, gt=0, description="Re-sign an unmined anchoring transaction with higher fees after."
    )

    p2p_listen: str = Field(
        "/ip4/127.0.0.1/tcp/0",
        description="libp2p listen multiaddrs, comma-separated (e.g. /ip4/0.0.0.0/tcp/4001); "
        "tcp/0 picks a free port; 'off' disables networking.",
    )
    bootstrap: str = Field(
        "", description="Peers to dial and keep dialing: comma-separated multiaddrs with /p2p/."
    )
    p2p_key_file: Path | None = Field(
        None, description="Ed25519 libp2p identity; unset: <data_dir>/p2p.key (created 0600)."
    )
    bootstrap_file: Path | None = Field(
        None,
        description="File of more bootstrap multiaddrs, one per line ('#' comments), read at "
        "start; the node skips its own address (one file can serve a whole cluster).",
    )
    sync_interval: float = Field(
        30.0, gt=0, description="Seconds between catch-up syncs with each connected peer."
    )
    p2p_low_watermark: int = Field(
        32, ge=0, description="Trimming stops at this many libp2p connections (docs/protocol.md)."
    )
    p2p_high_watermark: int = Field(
        64,
        ge=1,
        description="Above this many libp2p connections, idle and misbehaving peers' connections "
        "are closed down to the low watermark (trusted peers and young connections are kept).",
    )
    p2p_max_connections: int = Field(
        256, ge=1, description="Hard cap on libp2p connections, and on inbound ones at once."
    )
    p2p_max_per_ip: int = Field(
        64, ge=1, description="Inbound libp2p connections from one IP address at once."
    )
    p2p_grace_seconds: float = Field(
        30.0, ge=0, description="A libp2p connection younger than this is not trimmed."
    )
    p2p_directory_interval: float = Field(
        10.0,
        gt=0,
        description="Seconds between two peer-directory adverts of this node (also sent on "
        "change and on connect); a peer's entry expires after three intervals without one.",
    )

    max_body_bytes: int = Field(2 * 1024 * 1024, ge=1024, description="Largest request body.")
    body_timeout: float = Field(
        30.0, gt=0, description="Seconds a client may take to send a whole request body."
    )
    header_timeout: float = Field(
        10.0,
        gt=0,
        description="Seconds a client may take to send a request's line and headers (from "
        "connecting, or from the first byte of a further request); then the connection closes.",
    )
    max_connections: int = Field(
        512,
        ge=1,
        description="Open HTTP connections served at once; one more gets 503 with Retry-After.",
    )

    api_keys: str = Field(
        "",
        description="Comma-separated API keys; when set, write endpoints (POST/DELETE but query) "
        "need one as 'Authorization: Bearer KEY' or 'X-API-Key: KEY' (401 otherwise).",
    )
    public_reads: bool = Field(
        True, description="Read endpoints (GET, POST /v1/query, /metrics) need no key."
    )
    rate_limit_reads: str = Field(
        "off",
        description="Per-client limit on read requests, 'N/second|minute|hour' (bursts up to N); "
        "over it: 429 with Retry-After. A client is its API key, else its IP address.",
    )
    rate_limit_writes: str = Field("off", description="Same, for write requests.")
    cors_origins: str = Field(
        "", description="Comma-separated origins allowed by CORS ('*' for any); empty: no CORS."
    )
    forwarded_allow_ips: str = Field(
        "127.0.0.1",
        description="Proxies whose X-Forwarded-For / -Proto headers are trusted (comma-separated, "
        "'*' for any): the client address used for rate limits and logs.",
    )
    web: bool = Field(True, description="Serve the web page at / (search, contribute, status).")
    explorer_tx_url: str | None = Field(
        None,
        description="Block explorer URL for transaction links on the web page, with {tx}, "
        "e.g. https://sepolia.etherscan.io/tx/{tx}.",
    )
    mcp: bool = Field(True, description="Serve the MCP tools at /mcp (Streamable HTTP).")
    mcp_contribute: bool = Field(
        False,
        description="Let MCP clients call contribute_fact (with an API key when keys are set).",
    )
    shutdown_timeout: float = Field(
        10.0,
        gt=0,
        description="On SIGTERM: seconds for in-flight requests, then for sealing and sending "
        "the open anchor batch (the index is always saved).",
    )


def trust_root_list(value: str) -> list[str]:
    """The addresses of ``KNOWHUB_TRUST_ROOTS`` (comma-separated, blanks ignored)."""
    return [part.strip() for part in value.split(",") if part.strip()]
