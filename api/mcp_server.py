"""MCP server (official ``mcp`` SDK): retrieval, facts and provenance as tools for LLM agents.

Two ways to serve the same tools:

* mounted on the node at ``/mcp`` (Streamable HTTP, stateless, JSON responses), calling the
  node's service in-process (``LocalBackend``);
* ``knowhub mcp --url NODE`` over stdio, calling a node's REST API with ``AsyncNodeClient``.

Tools: ``search_knowledge``, ``get_fact``, ``verify_provenance``, ``revoke_fact`` (with the
contributor's signature of the tombstone: the signature is the authority), ``attest_fact``
(likewise, the attester's signature) and
``contribute_fact``; the last answers with a tool error unless the operator allowed contributions
(``KNOWHUB_MCP_CONTRIBUTE=true`` on the node, ``--allow-contribute`` for stdio). Inputs are
validated against the JSON Schemas the SDK derives from the signatures below; a node error
becomes a tool error whose text starts with the node's error code (``not_found: ...``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Protocol, Unpack

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

from api.client import NodeError
from api.curation_schemas import AttestOut
from api.schemas import (
    FactCreated,
    FactOut,
    ProvenanceOut,
    QueryIn,
    QueryOptions,
    QueryOut,
    RevokeOut,
    StatusOut,
    VerificationOut,
)
from api.security import has_api_key
from api.verification import chain_named_by_node, verify_bundle
from api.views import (
    attest_out,
    fact_out,
    provenance_out,
    query_from,
    query_out,
    revoke_out,
    status_out,
)
from node import __version__
from node.attestation import MAX_AT
from node.cid import canonical_cid_string
from node.errors import KnowhubError
from node.limits import (
    DEFAULT_K,
    MAX_K,
    MAX_QUERY_BUDGET_SECONDS,
    MAX_QUERY_BYTES,
    MAX_QUERY_COLLECTIONS,
    MAX_REASON_BYTES,
    MAX_TEXT_BYTES,
)
from node.service import KnowledgeNode

log = logging.getLogger(__name__)

INSTRUCTIONS = (
    "knowhub is a decentralized knowledge hub of short facts. Call search_knowledge to "
    "retrieve ranked facts for a question and cite each fact you use by its CID. A fact's "
    "provenance (who contributed it, and the block that anchors it on chain) can be checked "
    "independently with verify_provenance."
)


class Backend(Protocol):
    """What the tools need from a node (``AsyncNodeClient`` satisfies it)."""

    async def query(self, query: str, **options: Unpack[QueryOptions]) -> QueryOut: ...

    async def get(self, cid: str) -> FactOut: ...

    async def provenance(self, cid: str) -> ProvenanceOut: ...

    async def status(self) -> StatusOut: ...

    async def add(
        self,
        text: str,
        metadata: Mapping[str, Any] | None = None,
        *,
        contributor: str | None = None,
        signature: str | None = None,
    ) -> FactCreated: ...

    async def revoke(
        self,
        cid: str,
        *,
        contributor: str | None = None,
        signature: str | None = None,
        reason: str | None = None,
    ) -> RevokeOut: ...

    async def attest(
        self,
        cid: str,
        verdict: str,
        *,
        at: int | None = None,
        contributor: str | None = None,
        signature: str | None = None,
    ) -> AttestOut: ...


class LocalBackend:
    """The tools on the node's own service, through the same schema mapping as REST."""

    def __init__(self, node: Callable[[], KnowledgeNode]) -> None:
        self._node = node

    async def query(self, query: str, **options: Unpack[QueryOptions]) -> QueryOut:
        body = QueryIn.model_validate({"query": query, **options})
        return query_out(await self._node().query(query_from(body)))

    async def get(self, cid: str) -> FactOut:
        return fact_out(await self._node().get_fact(cid))

    async def provenance(self, cid: str) -> ProvenanceOut:
        return provenance_out(await self._node().provenance(cid))

    async def status(self) -> StatusOut:
        return status_out(await self._node().status())

    async def revoke(
        self,
        cid: str,
        *,
        contributor: str | None = None,
        signature: str | None = None,
        reason: str | None = None,
    ) -> RevokeOut:
        node = self._node()
        result = await node.revoke(cid, contributor=contributor, signature=signature, reason=reason)
        return revoke_out(cid, result)

    async def attest(
        self,
        cid: str,
        verdict: str,
        *,
        at: int | None = None,
        contributor: str | None = None,
        signature: str | None = None,
    ) -> AttestOut:
        made, result = await self._node().attester.attest(
            canonical_cid_string(cid),
            verdict,
            contributor=contributor,
            signature=signature,
            at=at,
            as_operator=False,
        )
        return attest_out(made, result)

    async def add(
        self,
        text: str,
        metadata: Mapping[str, Any] | None = None,
        *,
        contributor: str | None = None,
        signature: str | None = None,
    ) -> FactCreated:
        node = self._node()
        body: dict[str, Any] = {"text": text, "metadata": dict(metadata or {})}
        if contributor is not None:
            body["contributor"] = contributor
        if signature is not None:
            body["signature"] = signature
        result = await node.contribute(node.accept(body))
        return FactCreated(cid=result.cid, status="created" if result.created else "exists")


@dataclass(frozen=True, slots=True)
class McpOptions:
    allow_contribute: bool = False
    #: A chain the verifier trusts (RPC URL, registry); None: the one the node reports.
    trusted_chain: tuple[str, str] | None = None
    #: Called with the tool context before contributing; returns an error text to refuse.
    authorize_contribution: Callable[[Context[Any, Any]], str | None] | None = None


def _tool_error(exc: Exception) -> ToolError:
    if isinstance(exc, NodeError):
        return ToolError(f"{exc.code}: {exc.message}")
    if isinstance(exc, KnowhubError):
        where = f" (field {exc.field})" if exc.field else ""
        return ToolError(f"{exc.code}: {exc.message}{where}")
    return ToolError(f"error: {exc}")


def build_mcp_server(backend: Backend, options: McpOptions | None = None) -> MCPServer:
    opts = options or McpOptions()
    server = MCPServer(
        name="knowhub",
        title="knowhub knowledge hub",
        instructions=INSTRUCTIONS,
        version=__version__,
        log_level="WARNING",
    )

    @server.tool(
        title="Search knowledge",
        description="Retrieve the facts most relevant to a query, ranked, each with its CID "
        "(cite it), score, relevance (cosine with the query), metadata, contributor and "
        "provenance status (anchored on chain or pending), plus a ready-made context block "
        "with numbered citations of the relevant facts only (it says so when none is).",
    )
    async def search_knowledge(
        query: Annotated[
            str, Field(min_length=1, max_length=MAX_QUERY_BYTES, description="The question.")
        ],
        k: Annotated[int, Field(ge=1, le=MAX_K, description="How many facts.")] = DEFAULT_K,
        mode: Annotated[
            Literal["hybrid", "dense", "keyword"],
            Field(description="dense: meaning; keyword: BM25 words; hybrid: both (default)."),
        ] = "hybrid",
        filter: Annotated[
            dict[str, Any] | None,
            Field(
                description='Exact metadata filter, e.g. {"lang": "en"} or '
                '{"year": {"$gte": 2020}}; operators $eq $ne $in $nin $gt $gte $lt $lte '
                "$and $or."
            ),
        ] = None,
        include_superseded: Annotated[
            bool, Field(description="Also facts that a newer version by their author replaces.")
        ] = False,
        min_relevance: Annotated[
            float | None,
            Field(
                ge=-1.0,
                le=1.0,
                description="The context cites only facts whose relevance (cosine with the "
                "question, -1..1) reaches this; default: the node's threshold.",
            ),
        ] = None,
        proofs: Annotated[
            bool,
            Field(
                description="Attach to each hit its proof (record block, signature, Merkle "
                "proof, anchor) so it can be checked against the chain without this node."
            ),
        ] = False,
        rank: Annotated[
            Literal["reputation", "relevance"],
            Field(
                description="reputation (default): facts of contributors this node trusts "
                "first, disputed facts lower; relevance: the search order alone."
            ),
        ] = "reputation",
        min_reputation: Annotated[
            float | None,
            Field(ge=0.0, le=1.0, description="Leave out contributors below this (0..1)."),
        ] = None,
        collections: Annotated[
            list[str] | None,
            Field(
                max_length=MAX_QUERY_COLLECTIONS,
                description="Search only these collections (default: all this node holds, "
                "or with scope network all it knows of).",
            ),
        ] = None,
        scope: Annotated[
            Literal["local", "network"],
            Field(
                description="local (default): this node only; network: also ask peers for "
                "the collections this node does not hold (their hits are verified first; "
                "`completeness` says what was covered)."
            ),
        ] = "local",
        budget_ms: Annotated[
            int | None,
            Field(
                ge=10,
                le=MAX_QUERY_BUDGET_SECONDS * 1000,
                description="scope network: milliseconds to wait for peers (at most the "
                "node's own budget).",
            ),
        ] = None,
    ) -> QueryOut:
        try:
            return await backend.query(
                query,
                k=k,
                mode=mode,
                filter=filter,
                include_superseded=include_superseded,
                min_relevance=min_relevance,
                proofs=proofs,
                rank=rank,
                min_reputation=min_reputation,
                collections=collections,
                scope=scope,
                budget_ms=budget_ms,
            )
        except (NodeError, KnowhubError) as exc:
            raise _tool_error(exc) from exc

    @server.tool(
        title="Endorse or dispute a fact",
        description="Attest a fact: endorse or dispute it, signed by the attester. Every node "
        "weighs the attestation by the attester's reputation; the attester's latest (by `at`) "
        "on a fact is the one that counts. Needs the attester's EIP-191 signature of the "
        "attestation CID (GET /v1/facts/{cid}/attestation gives it, or use `knowhub attest "
        "CID endorse --key FILE`).",
    )
    async def attest_fact(
        cid: Annotated[str, Field(min_length=8, max_length=200, description="The fact's CID.")],
        verdict: Annotated[Literal["endorse", "dispute"], Field(description="The verdict.")],
        contributor: Annotated[str, Field(description="EIP-55 address of the attester.")],
        at: Annotated[int, Field(ge=0, le=MAX_AT, description="Unix seconds, as signed.")],
        signature: Annotated[
            str, Field(description="0x hex: the attester's EIP-191 signature of the CID.")
        ],
    ) -> AttestOut:
        try:
            return await backend.attest(
                cid, verdict, at=at, contributor=contributor, signature=signature
            )
        except (NodeError, KnowhubError) as exc:
            raise _tool_error(exc) from exc

    @server.tool(
        title="Get a fact",
        description="The fact stored under a CID: text, metadata, contributor and signature.",
    )
    async def get_fact(
        cid: Annotated[str, Field(min_length=8, max_length=200, description="The fact's CID.")],
    ) -> FactOut:
        try:
            return await backend.get(cid)
        except (NodeError, KnowhubError) as exc:
            raise _tool_error(exc) from exc

    @server.tool(
        title="Verify provenance",
        description="Check a fact's provenance without trusting the node: recompute the CID "
        "from the record, recover the contributor's signature, fold the Merkle proof to the "
        "anchored root and ask the registry contract on chain. 'verified' is true only when "
        "every check passes.",
    )
    async def verify_provenance(
        cid: Annotated[str, Field(min_length=8, max_length=200, description="The fact's CID.")],
    ) -> VerificationOut:
        try:
            bundle = (await backend.provenance(cid)).model_dump(mode="json")
            rpc: str | None
            registry: str | None
            if opts.trusted_chain is not None:
                rpc, registry = opts.trusted_chain
                from_node = False
            else:
                rpc, registry = chain_named_by_node((await backend.status()).chain, bundle)
                from_node = True
            return await anyio.to_thread.run_sync(
                lambda: verify_bundle(bundle, rpc, registry, chain_from_node=from_node)
            )
        except (NodeError, KnowhubError) as exc:
            raise _tool_error(exc) from exc

    @server.tool(
        title="Revoke a fact",
        description="Take back a fact: its contributor's signed tombstone erases it from this "
        "node and every peer, and is anchored on chain. Needs the contributor's EIP-191 "
        "signature of the tombstone CID (GET /v1/facts/{cid}/tombstone gives the CID to sign, "
        "or use `knowhub revoke CID --key FILE`).",
    )
    async def revoke_fact(
        cid: Annotated[str, Field(description="CID of the fact to revoke.")],
        contributor: Annotated[str, Field(description="EIP-55 address of the fact's contributor.")],
        signature: Annotated[
            str,
            Field(description="0x hex: the contributor's EIP-191 signature of the tombstone CID."),
        ],
        reason: Annotated[
            str | None,
            Field(max_length=MAX_REASON_BYTES, description="Why (part of the signed tombstone)."),
        ] = None,
    ) -> RevokeOut:
        try:
            return await backend.revoke(
                cid, contributor=contributor, signature=signature, reason=reason
            )
        except (NodeError, KnowhubError) as exc:
            raise _tool_error(exc) from exc

    state = "enabled" if opts.allow_contribute else "disabled by the operator"

    @server.tool(
        title="Contribute a fact",
        description=f"Store a new fact (a short, self-contained statement) with optional "
        f"metadata; returns its CID. The node signs it with its operator key. Currently {state}.",
    )
    async def contribute_fact(
        text: Annotated[
            str,
            Field(min_length=1, max_length=MAX_TEXT_BYTES, description="The fact, one statement."),
        ],
        ctx: Context[Any, Any],
        metadata: Annotated[
            dict[str, Any] | None,
            Field(description="String keys; values string, integer, boolean or list of strings."),
        ] = None,
    ) -> FactCreated:
        if not opts.allow_contribute:
            raise ToolError(
                "contribute_disabled: this node does not take contributions over MCP; its "
                "operator can allow them (KNOWHUB_MCP_CONTRIBUTE=true, or --allow-contribute "
                "for knowhub mcp)"
            )
        if opts.authorize_contribution is not None:
            refusal = opts.authorize_contribution(ctx)
            if refusal is not None:
                raise ToolError(refusal)
        try:
            return await backend.add(text, metadata)
        except (NodeError, KnowhubError) as exc:
            raise _tool_error(exc) from exc

    return server


def mount_mcp(
    app: Any,
    node: Callable[[], KnowledgeNode],
    *,
    allow_contribute: bool,
    require_key: bool,
    host: str,
) -> MCPServer:
    """Serve the tools at ``/mcp`` of ``app`` (Streamable HTTP); the caller runs
    ``server.session_manager.run()`` for the app's lifetime."""

    def authorize(ctx: Context[Any, Any]) -> str | None:
        request = getattr(ctx.request_context, "request", None)
        scope = getattr(request, "scope", None) or {}
        if has_api_key(scope):
            return None  # the access guard already checked it
        return (
            "api_key_required: contributing over MCP needs an API key on the MCP HTTP request "
            "(Authorization: Bearer KEY)"
        )

    server = build_mcp_server(
        LocalBackend(node),
        McpOptions(
            allow_contribute=allow_contribute,
            authorize_contribution=authorize if require_key else None,
        ),
    )
    # DNS-rebinding protection (Host / Origin checks) is the SDK's default on loopback; a node
    # listening on a public address is reached under names it cannot know in advance, and is
    # guarded by API keys, rate limits and CORS instead.
    mcp_app = server.streamable_http_app(
        streamable_http_path="/mcp", stateless_http=True, json_response=True, host=host
    )
    app.router.routes.extend(mcp_app.routes)
    return server
