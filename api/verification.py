"""Check a provenance bundle against a chain: shared by ``knowhub verify`` and the MCP tool.

The bundle is re-derived, not trusted: the CID is recomputed from the record, the signer is
recovered from the signature, the Merkle proof is folded to the root, and the registry on the
chain is asked whether that root is anchored (``node.provenance.check_bundle``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from api.schemas import ChainStatusOut, CheckOut, VerificationOut
from node.bootstrap import build_registry_reader
from node.provenance import Check, check_bundle


def chain_named_by_node(
    chain: ChainStatusOut | None, bundle: Mapping[str, Any]
) -> tuple[str | None, str | None]:
    """The chain RPC and registry to check against when the verifier names none: the node's RPC,
    and the registry the bundle names, else the node's. Trusting the node for them is reported
    with ``chain_from_node=True``."""
    rpc = chain.rpc_url if chain else None
    registry = bundle.get("registry") or (chain.registry if chain else None)
    return rpc, registry if isinstance(registry, str) else None


def verify_bundle(
    bundle: Mapping[str, Any],
    rpc: str | None,
    registry: str | None,
    *,
    chain_from_node: bool = False,
    expected_registry: str | None = None,
) -> VerificationOut:
    """Run every check. Chain errors raise ``KnowhubError``; failed checks do not.

    ``expected_registry``: the registry the verifier trusts; the bundle must name it."""
    reader = None
    anchored = bundle.get("status") == "anchored"
    if anchored and rpc and registry:
        reader = build_registry_reader(rpc, registry)
    checks = check_bundle(bundle, reader)
    if anchored and reader is None:
        checks.append(Check("chain", False, "no chain RPC and registry to check the anchor"))
    if anchored and expected_registry:
        same = str(bundle.get("registry", "")).lower() == expected_registry.lower()
        checks.append(Check("registry", same, f"bundle names {bundle.get('registry')}"))
    cid = bundle.get("cid")
    status = bundle.get("status")
    return VerificationOut(
        cid=cid if isinstance(cid, str) else None,
        verified=all(c.ok for c in checks),
        status=status if isinstance(status, str) else None,
        checks=[CheckOut(name=c.name, ok=c.ok, detail=c.detail) for c in checks],
        chain_rpc=rpc,
        registry=registry,
        chain_from_node=chain_from_node,
    )
