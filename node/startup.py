"""What a node checks and repairs before it serves: the model its data dir was built with, and
the vector index against the catalog.

The catalog is the source of truth; the vector index is a cache of its searchable facts
(stored, not hidden, not erased), reconciled on every start.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

import numpy as np

from node.errors import IncompatibleDataDir
from node.ports import CatalogSettings, Embedder, FactRecords, VectorIndex

log = logging.getLogger(__name__)


class StartupCatalog(FactRecords, CatalogSettings, Protocol):
    """The catalog roles the start-up checks use."""


def check_model(catalog: CatalogSettings, embedder: Embedder, data_dir: Path) -> None:
    """Record the embedding model on first start; ``IncompatibleDataDir`` when the data dir
    was built with another model or dimension (its vectors would not compare)."""
    want = {
        "embedding_model": embedder.model_name,
        "embedding_dimension": str(embedder.dimension),
    }
    for key, value in want.items():
        have = catalog.get_setting(key)
        if have is None:
            catalog.set_setting(key, value)
        elif have != value:
            raise IncompatibleDataDir(
                f"data dir {data_dir} was built with {key}={have!r}, "
                f"this node runs {value!r}; use another data dir or re-import the facts"
            )


def reconcile(catalog: FactRecords, index: VectorIndex) -> tuple[int, int]:
    """Make the index hold exactly the catalog's searchable ids; return (added, removed)."""
    catalog_ids = catalog.ids()
    index_ids = index.ids()
    extra = np.setdiff1d(index_ids, catalog_ids, assume_unique=True)
    missing = np.setdiff1d(catalog_ids, index_ids, assume_unique=True)
    if len(extra):
        index.remove(extra)
    for start in range(0, len(missing), 4096):
        chunk = missing[start : start + 4096]
        index.add(chunk, catalog.vectors(chunk))
    if len(extra) or len(missing):
        log.info("index reconciled with catalog: added %d, removed %d", len(missing), len(extra))
        index.save()
    return len(missing), len(extra)
