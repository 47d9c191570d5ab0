"""LangChain retriever over a knowhub node (``pip install knowhub[langchain]``).

    from api.langchain_retriever import KnowhubRetriever

    retriever = KnowhubRetriever(url="http://127.0.0.1:8700", k=4, mode="hybrid")
    docs = retriever.invoke("What do octopuses have three of?")
    docs[0].id, docs[0].metadata["cid"], docs[0].metadata["provenance"]["status"]

Only relevant facts become documents: a hit whose ``relevance`` (the dense cosine with the
query) is below the threshold the node's context used (``min_relevance``, default the node's)
is left out, so a question the hub knows nothing about gets no documents rather than padding;
``relevant_only=False`` keeps every hit.

Each ``Document`` carries the fact's text as ``page_content``, its CID as ``id``, and in
``metadata``: the fact's own metadata, then ``cid``, ``score``, ``relevance``, ``contributor``,
``provenance`` (``status`` pending / anchored and ``block_number``) and ``source`` (the node's
gateway URL of the fact's block). The knowhub keys win over fact metadata keys of the same name.

``verified_only=True`` asks for proof-carrying hits and keeps only those that verify against the
chain (``api.proof_check``: CID recomputed from the block, signature recovered, Merkle proof
folded, root found in a root cache read from the registry's events): pass ``chain_rpc`` and
``registry`` (the chain you trust; the cache file defaults to one per registry under
``~/.cache/knowhub``) or a ready ``verifier``. Pending (not yet anchored) and failed hits are
left out; kept documents get ``metadata["verified_block"]``, the block that anchors them.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Literal, Self

from langchain_core.callbacks import (
    AsyncCallbackManagerForRetrieverRun,
    CallbackManagerForRetrieverRun,
)
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import Field, model_validator

from api.client import DEFAULT_URL, AsyncNodeClient, NodeClient
from api.proof_check import ResultVerifier
from api.schemas import QueryHit, QueryOptions, QueryOut
from node.limits import DEFAULT_K, MAX_K
from node.proofs import HitCheck, Verdict
from node.search import is_relevant


class KnowhubRetriever(BaseRetriever):
    """Ranked facts from a knowhub node as LangChain documents."""

    url: str = DEFAULT_URL
    api_key: str | None = Field(default=None, description="Default: $KNOWHUB_API_KEY.")
    k: int = Field(default=DEFAULT_K, ge=1, le=MAX_K)
    mode: Literal["hybrid", "dense", "keyword"] = "hybrid"
    filter: dict[str, Any] | None = None
    min_score: float | None = None
    min_relevance: float | None = Field(default=None, ge=-1.0, le=1.0)
    relevant_only: bool = True
    timeout: float = 60.0
    verified_only: bool = False
    chain_rpc: str | None = Field(default=None, description="With verified_only: your RPC.")
    registry: str | None = Field(default=None, description="With verified_only: the registry.")
    roots_file: Path | None = None
    verifier: ResultVerifier | None = None

    @model_validator(mode="after")
    def _needs_a_chain(self) -> Self:
        if self.verified_only and self.verifier is None and not (self.chain_rpc and self.registry):
            raise ValueError("verified_only needs chain_rpc and registry (or a verifier)")
        return self

    def _verifier(self) -> ResultVerifier:
        if self.verifier is None:
            assert self.chain_rpc is not None and self.registry is not None
            self.verifier = ResultVerifier.from_chain(
                self.chain_rpc, self.registry, cache_file=self.roots_file, timeout=self.timeout
            )
        return self.verifier

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        with NodeClient(self.url, api_key=self.api_key, timeout=self.timeout) as client:
            out = client.query(query, **self._options())
        checks = self._verifier().verify(out) if self.verified_only else None
        return self._documents(out, checks)

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun
    ) -> list[Document]:
        async with AsyncNodeClient(self.url, api_key=self.api_key, timeout=self.timeout) as c:
            out = await c.query(query, **self._options())
        checks = None
        if self.verified_only:  # may read the chain (a root the cache lacks): off the loop
            checks = await asyncio.to_thread(lambda: self._verifier().verify(out))
        return self._documents(out, checks)

    def _options(self) -> QueryOptions:
        return QueryOptions(
            k=self.k,
            mode=self.mode,
            filter=self.filter,
            min_score=self.min_score,
            min_relevance=self.min_relevance,
            proofs=self.verified_only,
        )

    def _documents(self, out: QueryOut, checks: list[HitCheck] | None) -> list[Document]:
        threshold = out.min_relevance
        hits = out.results
        if self.relevant_only and threshold is not None:
            hits = [h for h in hits if is_relevant(h.relevance, threshold)]
        if checks is None:
            return [self._document(hit) for hit in hits]
        verified = {c.cid: c for c in checks if c.verdict is Verdict.VERIFIED}
        return [self._document(h, verified[h.cid]) for h in hits if h.cid in verified]

    def _document(self, hit: QueryHit, check: HitCheck | None = None) -> Document:
        metadata: dict[str, Any] = {
            **hit.metadata,
            "cid": hit.cid,
            "score": hit.score,
            "relevance": hit.relevance,
            "contributor": hit.contributor,
            "provenance": hit.provenance.model_dump(),
            "source": f"{self.url.rstrip('/')}/ipfs/{hit.cid}",
        }
        if check is not None:
            metadata["verified_block"] = check.block_number
        return Document(id=hit.cid, page_content=hit.text, metadata=metadata)
