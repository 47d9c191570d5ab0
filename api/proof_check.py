"""Check proof-carrying query answers on the client, trusting only the chain.

``ResultVerifier`` pairs a root cache (``node.roots.RootCache``: the registry's anchored roots,
read from ``Anchored`` events and kept in a file) with the chain RPC that fills it, and checks
every hit of an answer with ``node.proofs.check_result``. The chain is read only when the cache
lacks a root that an answer names (one incremental ``eth_getLogs`` from where it stopped), so a
warm cache verifies with no network at all. Used by ``knowhub query --verify``, the LangChain
retriever (``verified_only=True``) and scripts/bench_proofs.py.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from node.bootstrap import build_registry_reader
from node.proofs import HitCheck, Verdict, check_result, roots_named
from node.roots import AnchorLog, RootCache, default_cache_path


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/knowhub`` (``~/.cache/knowhub``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "knowhub"


class ResultVerifier:
    """Verify query answers against one registry; ``refresh`` follows the chain."""

    def __init__(self, cache: RootCache, source: AnchorLog) -> None:
        cache.check_source(source)
        self.cache = cache
        self._source = source

    @classmethod
    def from_chain(
        cls,
        rpc_url: str,
        registry: str,
        *,
        cache_file: Path | None = None,
        start_block: int = 0,
        confirmations: int = 0,
        timeout: float = 10.0,
    ) -> ResultVerifier:
        """A verifier whose cache lives in ``cache_file`` (default: one file per chain and
        registry under ``default_cache_dir()``); the chain id is read from the RPC."""
        source = build_registry_reader(rpc_url, registry, timeout=timeout)
        path = cache_file or default_cache_path(
            default_cache_dir(), source.chain_id, source.registry
        )
        cache = RootCache(
            source.chain_id,
            source.registry,
            path,
            start_block=start_block,
            confirmations=confirmations,
        )
        return cls(cache, source)

    def refresh(self) -> int:
        """Read the chain's new ``Anchored`` events into the cache; how many roots were new."""
        return self.cache.refresh(self._source)

    def verify(self, result: Mapping[str, Any] | BaseModel) -> list[HitCheck]:
        """Every hit of ``result`` (a ``QueryOut`` or its JSON) checked; reads the chain only
        when the answer names a root the cache does not hold yet."""
        data = result.model_dump(mode="json") if isinstance(result, BaseModel) else result
        if any(self.cache.get(root) is None for root in roots_named(data)):
            self.refresh()
        return check_result(data, self.cache)


def all_verified(checks: list[HitCheck]) -> bool:
    return bool(checks) and all(c.verdict is Verdict.VERIFIED for c in checks)
