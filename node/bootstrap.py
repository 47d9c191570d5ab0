"""The composition root: the only place that turns settings into real adapters."""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from node.anchoring import AnchorOptions
from node.assembly import assemble
from node.collections import Collections
from node.content import clear_spool_dir
from node.datadir import DataDirLock
from node.embedding import SchedulerOptions
from node.errors import ChainError, ConfigError
from node.federator import FederationOptions
from node.model_identity import FP32, INT8, ModelDescription, model_cid
from node.ports import ContentStore, Embedder, Ledger, Network
from node.retrieval import RetrievalOptions
from node.roots import ChainReader
from node.service import KnowledgeNode, NodeOptions
from node.settings import Settings, trust_root_list
from node.signing import SigningKey, load_or_create_key, read_key_file

log = logging.getLogger(__name__)

CATALOG_FILE = "catalog.sqlite3"
INDEX_FILE = "vectors.faiss"
#: The float vectors a compressed vector index re-ranks with (index.vector_file): a cache of
#: the catalog's vectors, one fixed-width record per row id.
FLOAT_VECTORS_FILE = "vectors.f32"
#: The embedded blockstore (index.sqlite_blockstore); ``blocks/`` was the one-file-per-block
#: layout before it, moved into the file at the first start.
BLOCKSTORE_FILE = "blocks.sqlite"
#: The keyword index (index.bm25_index): a cache of the catalog's texts, rebuilt when unusable.
KEYWORD_INDEX_FILE = "keywords.bm25"
OLD_BLOCKS_DIR = "blocks"
CHAIN_DIR = "chain"
KEY_FILE = "operator.key"
P2P_KEY_FILE = "p2p.key"
BOOTSTRAP_FILE = "bootstrap"


def build_node(settings: Settings, *, embedder: Embedder | None = None) -> KnowledgeNode:
    """Build a node with the real adapters; call ``await node.start()`` before use.

    ``embedder`` replaces the model for ingest and queries alike (benchmarks that feed known
    vectors; the data directory must stay with the same model name and dimension). The model
    CID is the configured backend's (``describe_model``) either way."""
    # FAISS's bundled OpenBLAS misdetects some CPUs; this is measured ~2x faster for flat search.
    os.environ.setdefault("OPENBLAS_CORETYPE", "SkylakeX")
    data_dir = settings.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    lock = DataDirLock(data_dir).acquire()  # before anything in the directory is opened
    clear_spool_dir(data_dir)  # what an upload left when the node died; nobody else uses it
    try:
        return _build_node(settings, data_dir, lock, embedder)
    except BaseException:
        lock.release()
        raise


def _build_node(
    settings: Settings, data_dir: Path, lock: DataDirLock, given: Embedder | None
) -> KnowledgeNode:
    from index.blockstore import SqliteBlockstore, migrate_filesystem_blocks
    from index.bm25_index import Bm25Index
    from index.faiss_index import FaissIndex
    from index.kubo import KuboContentStore
    from index.sqlite_catalog import SqliteCatalog

    model = describe_model(settings)  # first of all: hashes the files, starts nothing
    log.info("embedding model CID %s (%s, %s)", model_cid(model), model.name, model.precision)
    operator = load_or_create_key(settings.key_file or data_dir / KEY_FILE)
    ledger = build_ledger(settings, operator, data_dir)  # early: fails fast on a bad chain config
    query_embedder: Embedder | None = None
    if given is not None:
        embedder = given
    else:
        model_dir = onnx_model_dir(settings)  # exported (or checked) once for both copies
        embedder = build_embedder(settings, settings.embed_threads, model_dir)
        # a second copy for queries: they never wait for an ingest pass (node.embedding)
        if settings.query_model_copy:
            query_embedder = build_embedder(settings, settings.query_threads, model_dir)
    catalog = SqliteCatalog(data_dir / CATALOG_FILE)
    index = FaissIndex(
        embedder.dimension,
        data_dir / INDEX_FILE,
        hnsw_threshold=settings.hnsw_threshold,
        hnsw_m=settings.hnsw_m,
        ef_construction=settings.hnsw_ef_construction,
        ef_search=settings.hnsw_ef_search,
        exact_filter_limit=settings.exact_filter_limit,
        compression=settings.vector_compression,
        exact_vectors=catalog.vectors,
        float_file=data_dir / FLOAT_VECTORS_FILE,
    )
    store: ContentStore
    if settings.ipfs_api:
        store = KuboContentStore(settings.ipfs_api, timeout=settings.ipfs_timeout)
        log.info("content store: Kubo RPC at %s", settings.ipfs_api)
    else:
        blockstore, old_tree = data_dir / BLOCKSTORE_FILE, data_dir / OLD_BLOCKS_DIR
        if old_tree.is_dir():
            if blockstore.exists():  # moved, but the node died before removing the tree
                shutil.rmtree(old_tree)
            else:
                migrate_filesystem_blocks(old_tree, blockstore)
        store = SqliteBlockstore(blockstore)
        log.info("content store: embedded blockstore %s", blockstore)
    options = NodeOptions(
        data_dir=data_dir,
        retrieval=RetrievalOptions(
            candidate_pool=settings.candidate_pool, min_relevance=settings.min_relevance
        ),
        index_flush_interval=settings.index_flush_interval,
        search_threads=settings.search_threads,
        require_signatures=settings.require_signatures,
        trust_roots=frozenset(trust_root_list(settings.trust_roots)),
        reputation_interval=settings.reputation_interval,
        near_duplicate_cosine=settings.near_duplicate_cosine,
        collections=Collections.parse(settings.collections),
        federation=FederationOptions(
            budget=settings.federation_budget,
            max_peers=settings.federation_max_peers,
            penalty_seconds=settings.federation_penalty_seconds,
        ),
        gossip_quota_rate=settings.gossip_quota_rate,
        gossip_quota_burst=settings.gossip_quota_burst,
        anchor_peer_facts=settings.anchor_peer_facts,
        embedding=SchedulerOptions(
            max_pending=settings.ingest_queue,
            max_wait=settings.ingest_max_wait,
            max_queries=settings.query_queue,
            slice_seconds=settings.ingest_slice_ms / 1000,
            max_slice=settings.embed_batch_size,
        ),
        anchor=AnchorOptions(
            batch_size=settings.anchor_batch_size,
            batch_age=settings.anchor_batch_age,
            confirmations=settings.anchor_confirmations,
            resend_after=settings.anchor_resend_after,
        ),
        model=model,
    )
    # a missing, torn or outdated keyword index loads empty; the start-up reconcile refills it
    keywords, _loaded = Bm25Index.open(data_dir / KEYWORD_INDEX_FILE)
    log.info("node data dir %s, operator %s", data_dir, operator.address)
    return assemble(
        catalog,
        index,
        embedder,
        store,
        options,
        keywords=keywords,
        operator=operator,
        ledger=ledger,
        network=build_network(settings, data_dir),
        on_closed=[index.close, lock.release],
        query_embedder=query_embedder,
    )


def onnx_model_dir(settings: Settings) -> Path | None:
    """Where the ONNX backends load from (None for torch). Models missing from ``onnx_dir`` or
    older than the bundled weights (setup exports them) are exported here, from the bundled
    weights, never downloaded."""
    if settings.embedder == "torch":
        return None
    from index.onnx_export import default_onnx_dir, export_model

    model_dir = settings.onnx_dir or default_onnx_dir()
    export_model(model_dir)  # checks the stamp against the bundled weights; exports if stale
    return model_dir


def describe_model(settings: Settings) -> ModelDescription:
    """What the configured backend's vectors are (``node.model_identity``): the bundled
    model's source files at the backend's precision, int8 for ``onnx-int8``, else fp32 (torch
    and ONNX fp32 give the same vectors, so they share a model CID)."""
    from index.embedder import bundled_model_path
    from index.model_files import describe_bundled_model

    precision = INT8 if settings.embedder == "onnx-int8" else FP32
    return describe_bundled_model(bundled_model_path(), precision)


def build_embedder(settings: Settings, threads: int, model_dir: Path | None) -> Embedder:
    """The configured backend of the bundled model (``KNOWHUB_EMBEDDER``); ``model_dir`` from
    ``onnx_model_dir``."""
    if model_dir is None:
        from index.embedder import SentenceTransformerEmbedder

        return SentenceTransformerEmbedder(
            batch_size=settings.embed_batch_size, torch_threads=settings.embed_threads
        )
    from index.onnx_embedder import OnnxEmbedder

    return OnnxEmbedder(
        model_dir,
        quantized=settings.embedder == "onnx-int8",
        threads=threads,
        batch_size=settings.embed_batch_size,
    )


def build_network(settings: Settings, data_dir: Path) -> Network | None:
    if settings.p2p_listen.strip().lower() == "off":
        log.info("p2p networking off")
        return None
    from p2p.admission import ConnectionLimits
    from p2p.host import Libp2pNetwork, P2PConfig
    from p2p.query_protocol import QueryLimits

    bootstrap = [a.strip() for a in settings.bootstrap.split(",") if a.strip()]
    if settings.bootstrap_file is not None:
        bootstrap += read_bootstrap_file(settings.bootstrap_file)
    return Libp2pNetwork(
        P2PConfig(
            key_path=settings.p2p_key_file or data_dir / P2P_KEY_FILE,
            listen=[a.strip() for a in settings.p2p_listen.split(",") if a.strip()],
            bootstrap=list(dict.fromkeys(bootstrap)),
            sync_interval=settings.sync_interval,
            directory_interval=settings.p2p_directory_interval,
            limits=ConnectionLimits(
                low_watermark=min(settings.p2p_low_watermark, settings.p2p_high_watermark),
                high_watermark=settings.p2p_high_watermark,
                grace_seconds=settings.p2p_grace_seconds,
                max_connections=settings.p2p_max_connections,
                max_per_ip=settings.p2p_max_per_ip,
            ),
            query_limits=QueryLimits(
                concurrency=settings.p2p_query_concurrency,
                rate=settings.p2p_query_rate,
                burst=settings.p2p_query_burst,
            ),
        )
    )


def read_bootstrap_file(path: Path) -> list[str]:
    """Multiaddrs, one per line; blank lines and ``#`` comments skipped."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read KNOWHUB_BOOTSTRAP_FILE {path}: {exc}") from exc
    return [line.split("#", 1)[0].strip() for line in lines if line.split("#", 1)[0].strip()]


def preflight(settings: Settings) -> str | None:
    """What would stop a node with ``settings`` from starting, found before anything loads (one
    line saying what is missing and the ways out), or None."""
    held = DataDirLock(settings.data_dir).in_use()
    if held is not None:
        return held
    if settings.chain_rpc and not settings.registry_address:
        return (
            "KNOWHUB_CHAIN_RPC is set but KNOWHUB_REGISTRY_ADDRESS is not; deploy a registry with "
            "`knowhub chain deploy --rpc URL --key FILE`"
        )
    if not settings.chain_rpc and settings.local_chain:
        from contracts.anvil import ANVIL_BIN

        if not ANVIL_BIN.exists():
            return (
                f"the local chain needs anvil, which is not installed ({ANVIL_BIN} is missing): "
                "run `bash scripts/setup.sh` (it installs anvil with npm), or set "
                "KNOWHUB_CHAIN_RPC (with KNOWHUB_REGISTRY_ADDRESS) to anchor on another chain, "
                "or KNOWHUB_LOCAL_CHAIN=false to run without anchoring"
            )
    return None


def build_ledger(settings: Settings, operator: SigningKey, data_dir: Path) -> Ledger | None:
    """The chain the node anchors to: a configured RPC, a local anvil, or none."""
    from contracts.anvil import LocalChain, registry_file, remember_registry
    from contracts.registry import RegistryLedger, deploy_registry

    if settings.chain_rpc:
        if not settings.registry_address:
            raise ChainError(
                "KNOWHUB_CHAIN_RPC is set but KNOWHUB_REGISTRY_ADDRESS is not; deploy one with "
                "`knowhub chain deploy --rpc URL --key FILE`"
            )
        remote = RegistryLedger(
            settings.chain_rpc,
            settings.registry_address,
            operator,
            timeout=settings.chain_timeout,
        )
        try:
            if not remote.has_code():
                raise ChainError(
                    f"no contract at {settings.registry_address} on {settings.chain_rpc}"
                )
        except ChainError as exc:
            if "no contract" in exc.message:
                raise
            log.warning("chain not reachable at start (%s); anchoring will retry", exc.message)
        log.info("anchoring to registry %s via %s", settings.registry_address, settings.chain_rpc)
        return remote
    if not settings.local_chain:
        log.info("no chain configured: facts are signed but not anchored")
        return None
    chain_dir = data_dir / CHAIN_DIR
    chain = LocalChain(chain_dir)
    rpc_url = chain.start()
    try:
        chain.fund(operator.address)
        known = registry_file(chain_dir)
        address = known.read_text().strip() if known.exists() else None
        ledger: RegistryLedger | None = None
        if address:
            ledger = RegistryLedger(rpc_url, address, operator, on_close=chain.stop)
            if not ledger.has_code():
                log.warning("local chain lost registry %s; deploying again", address)
                ledger = None
        if ledger is None:
            address = deploy_registry(rpc_url, operator)
            remember_registry(chain_dir, address)
            ledger = RegistryLedger(rpc_url, address, operator, on_close=chain.stop)
    except BaseException:
        chain.stop()
        raise
    return ledger


def build_registry_reader(rpc_url: str, registry: str, timeout: float = 10.0) -> ChainReader:
    """Read-only registry access: verifying provenance (``knowhub verify``) and following its
    ``Anchored`` events (the client's root cache, ``node.roots``)."""
    from contracts.registry import RegistryClient

    return RegistryClient(rpc_url, registry, timeout=timeout)


def deploy(rpc_url: str, key_file: Path) -> tuple[str, str]:
    """Deploy a registry from the key in ``key_file``: (address, deployer)."""
    from contracts.registry import deploy_registry

    key = read_key_file(key_file)
    return deploy_registry(rpc_url, key), key.address


@dataclass(frozen=True, slots=True)
class ClusterMember:
    """One node of a cluster: where its keys go, and the multiaddr (no /p2p/) peers dial."""

    directory: Path
    advertise: str


def init_cluster(members: list[ClusterMember], rpc_url: str | None) -> dict[str, object]:
    """Prepare a cluster (idempotent): for each member an operator key, a libp2p identity and a
    bootstrap file naming every member; with a dev chain (anvil) at ``rpc_url`` also fund the
    operators and deploy the registry at the dev deployer's fixed address."""
    from contracts.anvil import ensure_dev_registry, fund_dev_account
    from p2p.identity import peer_id_of

    prepared: list[dict[str, str]] = []
    for member in members:
        member.directory.mkdir(parents=True, exist_ok=True)
        operator = load_or_create_key(member.directory / KEY_FILE)
        peer_id = peer_id_of(member.directory / P2P_KEY_FILE)
        prepared.append(
            {
                "directory": str(member.directory),
                "peer_id": peer_id,
                "operator": operator.address,
                "bootstrap_file": str(member.directory / BOOTSTRAP_FILE),
                "address": f"{member.advertise.rstrip('/')}/p2p/{peer_id}",
            }
        )
    listing = "# every member of the cluster; a node skips its own entry\n"
    listing += "".join(f"{keys['address']}\n" for keys in prepared)
    for member in members:
        path = member.directory / BOOTSTRAP_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(listing, encoding="utf-8")
        os.replace(tmp, path)
    registry = None
    if rpc_url:
        for keys in prepared:
            fund_dev_account(rpc_url, keys["operator"])
        registry = ensure_dev_registry(rpc_url)
    return {"registry": registry, "chain_rpc": rpc_url, "members": prepared}
