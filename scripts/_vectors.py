"""Write a generated, committed JSON file, or check that it is current (``--check``): the one
``main`` of the test-vector scripts (``make_protocol_vectors.py``, ``make_reputation_vectors.py``,
``make_model_vectors.py``) and of ``build_contracts.py`` (the contract artifact)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def write_or_check(out: Path, vectors: Callable[[], dict[str, Any]], script: str) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--check", action="store_true", help="exit 1 when the file is stale")
    args = parser.parse_args()
    text = json.dumps(vectors(), indent=2) + "\n"
    if args.check:
        if not out.exists() or out.read_text() != text:
            sys.stderr.write(f"{out} is stale: run scripts/{script}\n")
            return 1
        return 0
    out.write_text(text)
    return 0
