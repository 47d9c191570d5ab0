"""The CLI's curation commands: ``knowhub attest`` and ``knowhub contributor``
(``node.curation``); the query's ``--rank`` and ``--min-reputation`` live with ``query``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from api import cli_provenance
from api.client import NodeClient

WithUrl = Callable[[argparse.ArgumentParser], argparse.ArgumentParser]


def add_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], with_url: WithUrl
) -> None:
    attest = with_url(
        sub.add_parser(
            "attest",
            help="endorse or dispute a fact: a signed attestation every node weighs by your "
            "reputation",
            description="Signs the attestation with --key and sends it; without --key the "
            "node's operator key attests, which needs the API key ($KNOWHUB_API_KEY). Your "
            "latest attestation on a fact (by --at) is the one that counts.",
        )
    )
    attest.add_argument("cid")
    attest.add_argument("verdict", choices=["endorse", "dispute"])
    attest.add_argument("--key", type=Path, help="the attester's key file")
    attest.add_argument("--at", type=int, help="Unix seconds (default: now)")
    contributor = with_url(
        sub.add_parser("contributor", help="a contributor's reputation as this node sees it")
    )
    contributor.add_argument("address")
    contributor.add_argument("--json", action="store_true", help="print the raw JSON answer")


def attest(client: NodeClient, args: argparse.Namespace) -> int:
    key = None if args.key is None else cli_provenance.load_key(args.key)
    result = client.attest(args.cid, args.verdict, key=key, at=args.at)
    _out(
        f"{result.about} {result.verdict}d by {result.contributor} at {result.at}: "
        f"attestation {result.attestation} ({result.status})"
    )
    return 0


def contributor(client: NodeClient, args: argparse.Namespace) -> int:
    view = client.contributor(args.address)
    if args.json:
        _out(json.dumps(view.model_dump(mode="json"), indent=2))
        return 0
    root = " (a trust root of this node)" if view.trust_root else ""
    _out(
        f"{view.address}{root}\n"
        f"  reputation {view.reputation:.3f} (trust {view.trust:.6f})\n"
        f"  facts here {view.facts}; received {view.endorsements} endorsements, "
        f"{view.disputes} disputes; gave {view.endorsements_given} endorsements, "
        f"{view.disputes_given} disputes"
    )
    return 0


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")
