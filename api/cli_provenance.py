"""``knowhub keys``, ``knowhub chain deploy``, ``knowhub verify`` and ``knowhub query --verify``:
the commands that sign, deploy and check provenance. ``verify`` trusts neither the node nor the
bundle: it recomputes the CID from the record, recovers the signature, folds the Merkle proof
and asks the chain. ``query --verify`` checks every hit of an answer the same way against a
root cache read from the chain (``api.proof_check``)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from api.client import NodeClient, NodeError
from node.errors import KnowhubError
from node.facts import DEFAULT_COLLECTION, make_fact
from node.proofs import HitCheck, Verdict
from node.signing import SigningKey, read_key_file, write_key_file


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


def add_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    with_url: Any,
) -> None:
    keys = sub.add_parser("keys", help="contributor keys (EIP-191 signing)")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    new = keys_sub.add_parser("new", help="create a key file (mode 0600) and print its address")
    new.add_argument("--out", type=Path, default=Path("knowhub.key"), help="default %(default)s")
    show = keys_sub.add_parser("show", help="print the address of a key file")
    show.add_argument("file", type=Path)

    chain = sub.add_parser("chain", help="the KnowledgeRegistry contract")
    chain_sub = chain.add_subparsers(dest="chain_command", required=True)
    deploy = chain_sub.add_parser("deploy", help="deploy a KnowledgeRegistry; prints its address")
    deploy.add_argument("--rpc", required=True, help="JSON-RPC URL of the chain")
    deploy.add_argument("--key", type=Path, required=True, help="key file of a funded account")

    verify = with_url(
        sub.add_parser(
            "verify",
            help="check a fact's provenance (signature, Merkle proof, on-chain anchor)",
            description="TARGET is a fact CID (the bundle is fetched from --url) or a bundle "
            "file saved from GET /v1/facts/{cid}/provenance. Exits 1 when any check fails.",
        )
    )
    verify.add_argument("target", help="fact CID or bundle JSON file")
    verify.add_argument("--node", dest="url", help="node URL (alias of --url)")
    verify.add_argument("--rpc", help="your chain RPC (default: the one the node reports)")
    verify.add_argument("--registry", help="registry address you trust (required for files)")
    verify.add_argument("--json", action="store_true", help="print the checks as JSON")

    cluster = sub.add_parser("cluster", help="prepare the keys of a multi-node deployment")
    cluster_sub = cluster.add_subparsers(dest="cluster_command", required=True)
    init = cluster_sub.add_parser(
        "init",
        help="create each member's operator key, libp2p identity and bootstrap file "
        "(idempotent); with --dev-chain also fund the operators and deploy the registry",
        description="Prints JSON: peer ids, operator addresses, registry. Each DIR gets "
        "operator.key, p2p.key and a bootstrap file listing every member's ADDR/p2p/ID; point "
        "KNOWHUB_KEY_FILE, KNOWHUB_P2P_KEY_FILE and KNOWHUB_BOOTSTRAP_FILE at them.",
    )
    init.add_argument(
        "--member",
        action="append",
        required=True,
        metavar="DIR=ADDR",
        help="key directory and the multiaddr peers dial, e.g. /cluster/node1=/dns4/node1/tcp/4001",
    )
    init.add_argument(
        "--dev-chain",
        metavar="RPC",
        help="an anvil RPC URL: fund every operator (anvil_setBalance) and deploy the registry "
        "from anvil's account 0 (its first deployment lands at a fixed address)",
    )


def load_key(path: Path) -> SigningKey:
    try:
        return read_key_file(path)
    except KnowhubError as exc:
        raise NodeError(0, "usage", exc.message) from exc


def signed_submission(key: SigningKey, item: dict[str, Any]) -> dict[str, Any]:
    """``item`` (text, metadata, supersedes, collection) with ``key`` as contributor and its
    signature of the CID."""
    try:
        fact = make_fact(
            item.get("text"),
            item.get("metadata"),
            key.address,
            item.get("supersedes"),
            item.get("collection", DEFAULT_COLLECTION),
        )
    except KnowhubError:
        return item  # the node reports the problem for this item
    return {**item, "contributor": key.address, "signature": key.sign_cid(fact.cid)}


def keys(args: argparse.Namespace) -> int:
    if args.keys_command == "show":
        _out(load_key(args.file).address)
        return 0
    if args.out.exists():
        raise NodeError(0, "exists", f"{args.out} exists; not overwriting a key")
    key = SigningKey.generate()
    write_key_file(args.out, key)
    _out(f"{key.address} {args.out}")
    return 0


def chain(args: argparse.Namespace) -> int:
    from node.bootstrap import deploy

    try:
        address, deployer = deploy(args.rpc, args.key)
    except KnowhubError as exc:
        raise NodeError(0, exc.code, exc.message) from exc
    _out(address)
    sys.stderr.write(f"deployed KnowledgeRegistry at {address} from {deployer}\n")
    return 0


def cluster(args: argparse.Namespace) -> int:
    from node.bootstrap import ClusterMember, init_cluster

    members = []
    for spec in args.member:
        directory, sep, address = spec.partition("=")
        if not sep or not directory or not address.startswith("/"):
            raise NodeError(0, "usage", f"--member wants DIR=MULTIADDR, got {spec!r}")
        if "/p2p/" in address:
            raise NodeError(0, "usage", f"{address}: give the address without /p2p/")
        members.append(ClusterMember(Path(directory), address))
    try:
        summary = init_cluster(members, args.dev_chain)
    except KnowhubError as exc:
        raise NodeError(0, exc.code, exc.message) from exc
    _out(json.dumps(summary, indent=2))
    return 0


def verify(args: argparse.Namespace) -> int:
    from api.verification import verify_bundle

    path = Path(args.target)
    rpc, registry = args.rpc, args.registry
    from_node = False
    if path.is_file():
        try:
            bundle = json.loads(path.read_text())
        except ValueError as exc:
            raise NodeError(0, "usage", f"{path} is not JSON: {exc}") from exc
        if not isinstance(bundle, dict):
            raise NodeError(0, "usage", f"{path} is not a provenance bundle (a JSON object)")
        if bundle.get("status") == "anchored" and not (rpc and registry):
            raise NodeError(0, "usage", "a bundle file needs --rpc and --registry you trust")
    else:
        with NodeClient(args.url) as client:
            bundle = client.provenance(args.target).model_dump(mode="json")
            rpc, registry, from_node = _chain_to_check(client, rpc, registry, bundle)
    try:
        result = verify_bundle(
            bundle, rpc, registry, chain_from_node=from_node, expected_registry=registry
        )
    except KnowhubError as exc:
        raise NodeError(0, exc.code, f"chain check failed: {exc.message}") from exc
    if args.json:
        checks = [c.model_dump() for c in result.checks]
        _out(json.dumps({"ok": result.verified, "checks": checks}, indent=2))
    else:
        for c in result.checks:
            _out(f"{'ok  ' if c.ok else 'FAIL'} {c.name}: {c.detail}")
        failed = [c.name for c in result.checks if not c.ok]
        _out(f"VERIFIED {result.cid}" if result.verified else f"NOT VERIFIED: {', '.join(failed)}")
    return 0 if result.verified else 1


def _chain_to_check(
    client: NodeClient, rpc: str | None, registry: str | None, bundle: Mapping[str, Any]
) -> tuple[str | None, str | None, bool]:
    """The chain RPC and registry to check against: the ones given, else those the node names
    (``chain_named_by_node``, said on stderr); and whether they came from the node."""
    if rpc and registry:
        return rpc, registry, False
    from api.verification import chain_named_by_node

    node_rpc, node_registry = chain_named_by_node(client.status().chain, bundle)
    sys.stderr.write(
        "note: chain RPC/registry taken from the node; pass --rpc and --registry to check "
        "against a chain you trust\n"
    )
    return rpc or node_rpc, registry or node_registry, True


def add_verify_options(query: argparse.ArgumentParser) -> None:
    """``knowhub query``'s options for checking the answer against the chain."""
    query.add_argument(
        "--verify",
        action="store_true",
        help="ask for proofs and check every hit against the chain (exit 1 if any fails)",
    )
    query.add_argument("--rpc", help="with --verify: your chain RPC (default: the node's)")
    query.add_argument("--registry", help="with --verify: the registry you trust")
    query.add_argument(
        "--roots-file",
        type=Path,
        help="with --verify: the root cache file (default: ~/.cache/knowhub/roots-CHAIN-REG.json)",
    )


def verified_answer(client: NodeClient, args: argparse.Namespace, answer: Any) -> list[HitCheck]:
    """Check every hit of ``answer`` (a ``QueryOut`` with proofs). Raises ``NodeError`` when
    no chain is known or the chain cannot be read."""
    from api.proof_check import ResultVerifier

    rpc, registry, _ = _chain_to_check(client, args.rpc, args.registry, {})
    if not (rpc and registry):
        raise NodeError(0, "usage", "--verify needs --rpc and --registry (the node names none)")
    try:
        return ResultVerifier.from_chain(rpc, registry, cache_file=args.roots_file).verify(answer)
    except KnowhubError as exc:
        raise NodeError(0, exc.code, f"chain check failed: {exc.message}") from exc


def describe(check: HitCheck) -> str:
    if check.verdict is Verdict.VERIFIED:
        return f"VERIFIED: anchored at block {check.block_number}, signed by {check.signer}"
    return f"{check.verdict.upper()}: {'; '.join(check.reasons)}"
