"""The ``knowhub`` command line.

``knowhub node`` runs a node; the other commands talk to a running node over HTTP (``--url``,
default ``$KNOWHUB_URL`` or http://127.0.0.1:8700). Heavy imports (torch, FAISS) happen
only in ``node``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from api import cli_curation, cli_import, cli_provenance
from api.client import (
    DEFAULT_URL,
    NodeClient,
    NodeError,
    Unreachable,
)
from node.limits import DEFAULT_K, MAX_K
from node.search import is_relevant

log = logging.getLogger("knowhub")


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="knowhub", description="knowhub: a peer node of a decentralized vector knowledge hub"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def with_url(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument(
            "--url",
            default=os.environ.get("KNOWHUB_URL", DEFAULT_URL),
            help="node URL (default: $KNOWHUB_URL or %(default)s)",
        )
        return p

    node = sub.add_parser("node", help="run a node (REST API on --host/--port)")
    node.add_argument("--data-dir", type=Path, help="data directory (KNOWHUB_DATA_DIR)")
    node.add_argument("--host", help="listen address (KNOWHUB_HOST, default 127.0.0.1)")
    node.add_argument("--port", type=int, help="listen port (KNOWHUB_PORT, default 8700)")
    node.add_argument("--log-level", help="debug, info, warning (KNOWHUB_LOG_LEVEL)")

    add = with_url(sub.add_parser("add", help="contribute one fact"))
    add.add_argument("text")
    add.add_argument(
        "--meta",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="string metadata; repeat for more keys",
    )
    add.add_argument(
        "--meta-json",
        action="append",
        default=[],
        metavar="KEY=JSON",
        help='typed metadata, e.g. year=2020, tags=["a","b"], open=true',
    )
    add.add_argument("--key", type=Path, help="sign as this key's address (knowhub keys new)")
    add.add_argument(
        "--supersedes",
        metavar="CID",
        help="an earlier fact of yours that this one corrects (search then returns this one)",
    )
    add.add_argument(
        "--collection", metavar="NAME", help="the fact's collection (default: default)"
    )

    imp = with_url(sub.add_parser("import", help="contribute facts from a JSON Lines file"))
    imp.add_argument("file", type=Path)
    imp.add_argument("--batch-size", type=int, default=256)
    imp.add_argument(
        "--beir",
        action="store_true",
        help='lines are BEIR docs {"_id","title","text"}: text = title + " " + '
        "text, metadata.doc_id = _id",
    )
    imp.add_argument("--key", type=Path, help="sign every fact with this key file")
    imp.add_argument("--restart", action="store_true", help="ignore the saved progress")
    imp.add_argument("--no-progress", action="store_true", help="no progress bar")

    query = with_url(sub.add_parser("query", help="retrieve ranked facts"))
    query.add_argument("text")
    query.add_argument(
        "-k", type=int, default=DEFAULT_K, help=f"1 to {MAX_K} (default %(default)s)"
    )
    query.add_argument("--mode", choices=["dense", "keyword", "hybrid"], default="hybrid")
    query.add_argument(
        "--filter",
        type=_filter_arg,
        action="append",
        default=[],
        metavar="KEY=VALUE|JSON",
        help="metadata filter: lang=en (repeat for more keys) or a JSON object, e.g. "
        '\'{"year": {"$gte": 2020}}\'',
    )
    query.add_argument(
        "--collection",
        action="append",
        metavar="NAME",
        help="search only this collection (repeat for more; default: all the node holds)",
    )
    query.add_argument(
        "--network",
        action="store_true",
        help="scope network: also ask peers for the collections this node does not hold",
    )
    query.add_argument("--json", action="store_true", help="print the raw JSON answer")
    query.add_argument(
        "--include-superseded", action="store_true", help="also facts a newer version replaces"
    )
    query.add_argument(
        "--rank",
        choices=["reputation", "relevance"],
        default="reputation",
        help="weigh hits by their contributors' reputation (default) or relevance alone",
    )
    query.add_argument(
        "--ef",
        type=int,
        metavar="N",
        help="search breadth of the vector index (HNSW efSearch): more recall, more time",
    )
    query.add_argument(
        "--min-reputation",
        type=float,
        metavar="SCORE",
        help="leave out facts of contributors below this reputation (0..1)",
    )
    query.add_argument(
        "--min-relevance",
        type=float,
        metavar="COSINE",
        help="mark hits below this relevance (-1..1) as not relevant; default: the node's",
    )
    cli_provenance.add_verify_options(query)

    with_url(sub.add_parser("status", help="show the node's status"))

    revoke = with_url(
        sub.add_parser(
            "revoke",
            help="revoke a fact: its contributor's signed tombstone erases it on every node",
            description="Signs the fact's tombstone with --key (the fact's contributor) and sends "
            "it; without --key the node's operator key revokes a fact the node signed, which "
            "needs the API key ($KNOWHUB_API_KEY).",
        )
    )
    revoke.add_argument("cid")
    moderate = with_url(
        sub.add_parser(
            "moderate",
            help="operator: hide facts on this node (needs $KNOWHUB_API_KEY)",
            description="Hidden facts are not served (451), searched or forwarded by this node; "
            "nothing is signed or sent to peers. Undo with unhide.",
        )
    )
    moderate.add_argument("action", choices=["hide", "unhide", "list"])
    moderate.add_argument("cid", nargs="?")
    moderate.add_argument("--reason", help="why (kept on this node)")
    revoke.add_argument("--key", type=Path, help="the contributor's key file")
    revoke.add_argument("--reason", help="why (part of the signed tombstone)")

    cli_curation.add_parsers(sub, with_url)

    exp = with_url(
        sub.add_parser(
            "export", help="write every signed fact, with its signature, as one CARv1 snapshot"
        )
    )
    exp.add_argument("file", type=Path)
    exp.add_argument("--no-progress", action="store_true", help="no progress bar")

    imp_car = with_url(
        sub.add_parser(
            "import-car",
            help="import a CAR snapshot (every block and every contributor signature verified)",
        )
    )
    imp_car.add_argument("file", type=Path)
    imp_car.add_argument("--no-progress", action="store_true", help="no progress bar")
    cli_provenance.add_commands(sub, with_url)

    mcp = with_url(
        sub.add_parser(
            "mcp",
            help="serve the node's MCP tools over stdio (for agent hosts that launch servers)",
            description="An MCP server on stdin/stdout whose tools (search_knowledge, get_fact, "
            "verify_provenance, contribute_fact) call the node at --url. Sends $KNOWHUB_API_KEY.",
        )
    )
    mcp.add_argument(
        "--allow-contribute", action="store_true", help="let the agent call contribute_fact"
    )
    mcp.add_argument("--rpc", help="chain RPC you trust for verify_provenance")
    mcp.add_argument("--registry", help="registry address you trust (with --rpc)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "node":
        return _run_node(args)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    local = {
        "keys": cli_provenance.keys,
        "chain": cli_provenance.chain,
        "cluster": cli_provenance.cluster,
    }
    try:
        if args.command in local:
            return local[args.command](args)
        if args.command == "verify":
            return cli_provenance.verify(args)
        if args.command == "mcp":
            return _mcp(args)
        with NodeClient(args.url) as client:
            handler = {
                "add": _add,
                "import": cli_import.run,
                "query": _query,
                "status": _status,
                "revoke": _revoke,
                "attest": cli_curation.attest,
                "contributor": cli_curation.contributor,
                "moderate": _moderate,
                "export": _export,
                "import-car": _import_car,
            }
            return handler[args.command](client, args)
    except Unreachable as exc:
        sys.stderr.write(
            f"knowhub: {exc}\n"
            "knowhub: is a node running there? Start one with `knowhub node` (or "
            "scripts/node.sh), or point --url / KNOWHUB_URL at a running node.\n"
        )
        return 1
    except NodeError as exc:
        sys.stderr.write(f"knowhub: {exc}\n")
        return 2 if exc.code == "usage" else 1


def _run_node(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from api.server import api_options, serve
    from node.bootstrap import preflight
    from node.settings import Settings

    overrides: dict[str, Any] = {
        key: value
        for key, value in {
            "data_dir": args.data_dir,
            "host": args.host,
            "port": args.port,
            "log_level": args.log_level,
        }.items()
        if value is not None
    }
    try:
        settings = Settings(**overrides)
        options = api_options(settings)
    except ValidationError as exc:
        for err in exc.errors():
            name = "KNOWHUB_" + "_".join(str(p) for p in err["loc"]).upper()
            sys.stderr.write(f"knowhub: invalid setting {name} ({err['msg']})\n")
        return 2
    except ValueError as exc:
        sys.stderr.write(f"knowhub: invalid setting {exc}\n")
        return 2
    problem = preflight(settings)
    if problem is not None:
        sys.stderr.write(f"knowhub: cannot start: {problem}\n")
        return 1
    return serve(settings, options)


def _mcp(args: argparse.Namespace) -> int:
    from api.client import AsyncNodeClient
    from api.mcp_server import McpOptions, build_mcp_server

    if bool(args.rpc) != bool(args.registry):
        raise NodeError(0, "usage", "--rpc and --registry go together")
    server = build_mcp_server(
        AsyncNodeClient(args.url),
        McpOptions(
            allow_contribute=args.allow_contribute,
            trusted_chain=(args.rpc, args.registry) if args.rpc else None,
        ),
    )
    server.run(transport="stdio")
    return 0


def _filter_arg(value: str) -> dict[str, Any]:
    """``--filter``: a JSON object, or KEY=VALUE (a string value)."""
    if value.lstrip().startswith("{"):
        try:
            parsed = json.loads(value)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"not a JSON object: {value!r} ({exc})") from exc
        if not isinstance(parsed, dict):
            raise argparse.ArgumentTypeError(f"not a JSON object: {value!r}")
        return parsed
    key, sep, text = value.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(
            f'want KEY=VALUE (e.g. lang=en) or a JSON object (e.g. \'{{"lang": "en"}}\'), '
            f"got {value!r}"
        )
    return {key.strip(): text}


def _parse_meta(pairs: list[str], typed: list[str]) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise NodeError(0, "usage", f"--meta wants KEY=VALUE, got {pair!r}")
        meta[key] = value
    for pair in typed:
        key, sep, value = pair.partition("=")
        if not sep:
            raise NodeError(0, "usage", f"--meta-json wants KEY=JSON, got {pair!r}")
        try:
            meta[key] = json.loads(value)
        except ValueError as exc:
            raise NodeError(0, "usage", f"--meta-json {key}: not JSON: {value!r}") from exc
    return meta


def _add(client: NodeClient, args: argparse.Namespace) -> int:
    item: dict[str, Any] = {"text": args.text, "metadata": _parse_meta(args.meta, args.meta_json)}
    if args.supersedes is not None:
        item["supersedes"] = args.supersedes
    if args.collection is not None:
        item["collection"] = args.collection
    if args.key is not None:
        item = cli_provenance.signed_submission(cli_provenance.load_key(args.key), item)
    result = client.add(
        item["text"],
        item["metadata"],
        contributor=item.get("contributor"),
        signature=item.get("signature"),
        supersedes=item.get("supersedes"),
        collection=item.get("collection"),
    )
    _out(f"{result.cid} {result.status}")
    return 0


def _revoke(client: NodeClient, args: argparse.Namespace) -> int:
    key = None if args.key is None else cli_provenance.load_key(args.key)
    result = client.revoke(args.cid, key=key, reason=args.reason)
    _out(f"{result.revokes} revoked by tombstone {result.tombstone} ({result.status})")
    return 0


def _moderate(client: NodeClient, args: argparse.Namespace) -> int:
    if args.action == "list":
        listing = client.hidden()
        for item in listing.hidden:
            _out(f"{item.cid} {item.reason or ''}".rstrip())
        _out(f"{listing.count} hidden")
        return 0
    if args.cid is None:
        raise NodeError(0, "usage", f"knowhub moderate {args.action} needs a CID")
    done = client.hide(args.cid, args.reason) if args.action == "hide" else client.unhide(args.cid)
    _out(f"{done.cid} {done.status}")
    return 0


def _query(client: NodeClient, args: argparse.Namespace) -> int:
    where: dict[str, Any] = {}
    for part in args.filter:
        where.update(part)
    result = client.query(
        args.text,
        k=args.k,
        mode=args.mode,
        filter=where or None,
        include_superseded=args.include_superseded,
        min_relevance=args.min_relevance,
        proofs=args.verify,
        rank=args.rank,
        min_reputation=args.min_reputation,
        ef=args.ef,
        collections=args.collection,
        scope="network" if args.network else "local",
    )
    checks = cli_provenance.verified_answer(client, args, result) if args.verify else []
    verdicts = {c.cid: cli_provenance.describe(c) for c in checks}
    failed = any(c.verdict == "failed" for c in checks)
    if args.json:
        answer = result.model_dump(mode="json")
        if args.verify:
            answer["verification"] = verdicts
        _out(json.dumps(answer, indent=2, ensure_ascii=False))
        return 1 if failed else 0
    threshold = result.min_relevance
    for n, hit in enumerate(result.results, start=1):
        rel = hit.relevance
        shown = "relevance ?" if rel is None else f"relevance {rel:.2f}"
        below = threshold is not None and not is_relevant(rel, threshold)
        mark = " (not relevant)" if below else ""
        _out(f"[{n}] {hit.score:.4f} {shown}{mark} {hit.cid}\n    {hit.text[:300]}")
        if hit.curation is not None:
            c = hit.curation
            disputed = " DISPUTED" if c.trusted_disputes else ""
            _out(
                f"    contributor reputation {c.reputation:.2f}, {c.endorsements} endorsements, "
                f"{c.disputes} disputes{disputed}"
            )
        if hit.source is not None:
            _out(f"    from peer {hit.source} ({hit.verdict})")
        if hit.cid in verdicts:
            _out(f"    {verdicts[hit.cid]}")
    covered = result.completeness
    if covered is not None and not covered.complete:
        for name in covered.missing:
            why = covered.reasons.get(name, "?")
            _out(f"incomplete: collection {name} not searched ({why})")
    if not result.results:
        _out("no results")
    elif threshold is not None and not any(
        is_relevant(h.relevance, threshold) for h in result.results
    ):
        _out(f"nothing relevant (every hit's relevance is below {threshold:.2f})")
    return 1 if failed else 0


def _status(client: NodeClient, args: argparse.Namespace) -> int:
    _out(json.dumps(client.status().model_dump(mode="json"), indent=2))
    return 0


def _export(client: NodeClient, args: argparse.Namespace) -> int:
    from tqdm import tqdm

    snap = client.snapshot()
    with tqdm(
        unit="B",
        unit_scale=True,
        disable=args.no_progress,
        file=sys.stderr,
        desc=f"{snap.facts} facts",
    ) as bar:
        size = client.download(snap.car_url, args.file, bar.update)
    _out(f"{args.file}: {snap.facts} facts, {size} bytes, root {snap.root}")
    return 0


def _import_car(client: NodeClient, args: argparse.Namespace) -> int:
    from tqdm import tqdm

    if not args.file.is_file():
        raise NodeError(0, "usage", f"no such file: {args.file}")
    with tqdm(
        total=args.file.stat().st_size,
        unit="B",
        unit_scale=True,
        disable=args.no_progress,
        file=sys.stderr,
        desc="upload + verify",
    ) as bar:
        result = client.import_car(args.file, bar.update)
    _out(
        f"imported {result.facts} records (created {result.created}, already stored "
        f"{result.existing}, refused {result.refused}), roots {' '.join(result.roots)}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
