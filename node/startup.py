"""What a node checks before it serves: the model its data dir was built with.

The data dir records the model's name, dimension and model CID (``node.model_identity``) at
the first start (a directory from before the CID was recorded gets it then) and refuses to
serve with another: vectors of two models must never mix in one index.

The catalog is the source of truth; the search indexes are caches of its searchable facts
(stored, not hidden, not erased), reconciled on every start by ``node.indexes``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Protocol

from node.errors import IncompatibleDataDir
from node.model_identity import ModelDescription, model_difference
from node.ports import CatalogSettings, Embedder, FactRecords

log = logging.getLogger(__name__)


class StartupCatalog(FactRecords, CatalogSettings, Protocol):
    """The catalog roles the start-up checks use."""


MODEL_CID_SETTING = "embedding_model_cid"
#: The description the recorded CID names (JSON), so that a refusal can say what changed.
MODEL_DESCRIPTION_SETTING = "embedding_model_description"


def check_model(
    catalog: CatalogSettings,
    embedder: Embedder,
    data_dir: Path,
    model: ModelDescription,
    cid: str,
) -> None:
    """Record the embedding model (name, dimension, model CID ``cid`` of ``model``) on first
    start; ``IncompatibleDataDir`` when the data dir was built with another model, dimension
    or model CID (its vectors would not compare)."""
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
    have = catalog.get_setting(MODEL_CID_SETTING)
    if have is None:
        catalog.set_setting(MODEL_CID_SETTING, cid)
        log.info("data dir %s: recorded model CID %s (%s)", data_dir, cid, model.precision)
    elif have != cid:
        changed = _recorded_difference(catalog, model)
        raise IncompatibleDataDir(
            f"data dir {data_dir} was built with model CID {have}, this node runs {cid} "
            f"({model.name}, {model.precision}){f' (what changed: {changed})' if changed else ''}"
            ": its vectors would mix with the others in one index. Switching between the int8 "
            "backend (KNOWHUB_EMBEDDER=onnx-int8) and an fp32 one (onnx, torch) changes the "
            "model, and so does a new version of the model's files; use another data dir or "
            "re-import the facts"
        )
    if catalog.get_setting(MODEL_DESCRIPTION_SETTING) is None:  # also for older data dirs
        catalog.set_setting(MODEL_DESCRIPTION_SETTING, json.dumps(model.record(), sort_keys=True))


def _recorded_difference(catalog: CatalogSettings, model: ModelDescription) -> str:
    """What differs from the description the data dir recorded ("" without a usable one)."""
    try:
        recorded = json.loads(catalog.get_setting(MODEL_DESCRIPTION_SETTING) or "null")
    except ValueError:
        return ""
    return model_difference(recorded, model) if isinstance(recorded, dict) else ""
