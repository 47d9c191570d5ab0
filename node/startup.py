"""What a node checks before it serves: the model its data dir was built with.

The catalog is the source of truth; the search indexes are caches of its searchable facts
(stored, not hidden, not erased), reconciled on every start by ``node.indexes``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

from node.errors import IncompatibleDataDir
from node.ports import CatalogSettings, Embedder, FactRecords

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
