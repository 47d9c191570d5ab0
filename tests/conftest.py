from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"


@pytest.fixture(scope="session")
def ipfs_vectors() -> dict[str, Any]:
    path = SHARED / "vectors" / "ipfs_cids.json"
    if not path.exists():
        pytest.fail(f"reference vectors missing: {path} (../shared must sit beside the repo)")
    data: dict[str, Any] = json.loads(path.read_text())
    return data
