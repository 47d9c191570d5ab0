"""Nodes for the fast tier: the real service on the in-package fakes (hash embedder, memory
index and content store) and a real SQLite catalog."""

from __future__ import annotations

from pathlib import Path

from index.sqlite_catalog import SqliteCatalog
from node.assembly import assemble
from node.memory import HashEmbedder, MemoryContentStore, MemoryKeywordIndex, MemoryVectorIndex
from node.ports import ContentStore, KeywordIndex, Network
from node.service import KnowledgeNode, NodeOptions
from node.signing import SigningKey


def memory_node(
    data_dir: Path,
    operator: SigningKey,
    *,
    catalog: SqliteCatalog | Path | None = None,
    store: ContentStore | None = None,
    index: MemoryVectorIndex | None = None,
    keywords: KeywordIndex | None = None,
    network: Network | None = None,
    options: NodeOptions | None = None,
    embedder: HashEmbedder | None = None,
) -> KnowledgeNode:
    embedder = embedder or HashEmbedder()
    return assemble(
        catalog
        if isinstance(catalog, SqliteCatalog)
        else SqliteCatalog(catalog or data_dir / "catalog.sqlite3"),
        MemoryVectorIndex(embedder.dimension) if index is None else index,
        embedder,
        store or MemoryContentStore(),
        options or NodeOptions(data_dir=data_dir, model=embedder.description),
        operator=operator,
        keywords=MemoryKeywordIndex() if keywords is None else keywords,
        network=network,
    )
