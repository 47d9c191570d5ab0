"""``/knowhub/query/1`` against a real node process, asked from another process (a bare
py-libp2p host with a fresh identity per run):

    python -m tests.integration.test_query_protocol SCENARIO ADDRESS MODEL_CID OUT.json

``honest``: one query for collection ``b`` with the node's model: hits with proofs, every one
of which passes the asking side's checks (``node.federation.check_remote_hit``); ``model``:
another model CID is refused (``model_mismatch``) and nothing is searched; ``not_held``:
a collection the node does not hold; ``flood``: 40 queries on one connection, as fast as
they go: beyond the per-peer bucket the node answers ``busy`` at once, beyond the open-stream
cap it resets the stream unread (never a hang);
``malformed``: a request that is not a query map, and one over the size limit: ``invalid``,
and offences of the peer.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import NodeProcess
from tests.p2p_nodes import address, p2p, start, wait_until

DIM = 384


@pytest.fixture(scope="module")
def holder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    node = start(tmp_path_factory.mktemp("query") / "b", extra={"KNOWHUB_COLLECTIONS": "b"})
    facts = [
        {"text": "Blood carries oxygen from the lungs.", "collection": "b"},
        {"text": "Volcanoes erupt molten rock.", "collection": "b"},
    ]
    done = httpx.post(f"{node.url}/v1/facts/batch", json={"facts": facts}, timeout=120)
    assert done.status_code == 200 and done.json()["created"] == 2, done.text
    yield node
    node.stop()


def model_cid(node: NodeProcess) -> str:
    return str(httpx.get(f"{node.url}/v1/status", timeout=30).json()["model"]["cid"])


def ask(scenario: str, node: NodeProcess, out: Path, model: str | None = None) -> dict[str, Any]:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.integration.test_query_protocol",
            scenario,
            address(node),
            model or model_cid(node),
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def test_an_honest_query_gets_hits_whose_proofs_pass(holder: NodeProcess, tmp_path: Path) -> None:
    report = ask("honest", holder, tmp_path / "honest.json")
    assert report["answers"][0]["kind"] == "hits", report
    hits = report["answers"][0]["hits"]
    assert {h["text"] for h in hits} == {
        "Blood carries oxygen from the lungs.",
        "Volcanoes erupt molten rock.",
    }
    assert all(h["check"] == "pending" for h in hits), hits
    assert hits[0]["text"] == "Blood carries oxygen from the lungs."  # first by keyword and fusion
    status = p2p(holder)
    assert status["queries_answered"] >= 1 and status["query_bytes"] > 0, status


def test_another_model_and_collections_not_held_are_refused(
    holder: NodeProcess, tmp_path: Path
) -> None:
    other = "bafyreicraqok3rrwuuij75jqd5d7vrj4iy4l2nhf22ip7txv3dbjohp35q"
    if other == model_cid(holder):  # the node runs fp32: the int8 CID is the other model
        other = "bafyreies5s4bfxkrrqba6j277kqcy6lto7oc6ng6jkep4qae5fl7nc237i"
    report = ask("honest", holder, tmp_path / "model.json", model=other)
    assert report["answers"][0] == {"kind": "error", "code": "model_mismatch"}, report
    report = ask("not_held", holder, tmp_path / "held.json")
    assert report["answers"][0] == {"kind": "error", "code": "not_held"}, report


def test_a_flood_of_queries_gets_busy_answers_not_a_hang(
    holder: NodeProcess, tmp_path: Path
) -> None:
    report = ask("flood", holder, tmp_path / "flood.json")
    kinds = [a.get("code", a["kind"]) for a in report["answers"]]
    assert len(kinds) == 40
    assert kinds.count("hits") >= 1 and kinds.count("busy") + kinds.count("reset") >= 1, kinds
    assert set(kinds) <= {"hits", "busy", "reset"}, kinds
    assert p2p(holder)["queries_busy"] >= kinds.count("busy")
    assert p2p(holder)["running"]


def test_malformed_requests_are_invalid_and_offences(holder: NodeProcess, tmp_path: Path) -> None:
    rejected = p2p(holder)["messages_rejected"]
    report = ask("malformed", holder, tmp_path / "bad.json")
    assert report["answers"][0] == {"kind": "error", "code": "invalid"}, report
    assert report["answers"][1]["kind"] in ("error", "closed"), report
    wait_until(lambda: p2p(holder)["messages_rejected"] >= rejected + 2, what="two offences")
    # the node still answers an honest peer
    assert ask("honest", holder, tmp_path / "after.json")["answers"][0]["kind"] == "hits"


# -- the asking process --------------------------------------------------------------------------


async def run(scenario: str, target: str, model: str) -> dict[str, Any]:
    import multiaddr
    import numpy as np
    import trio
    from libp2p.peer.peerinfo import info_from_p2p_addr

    from node.federation import check_remote_hit
    from node.ports import RemoteAnswer, RemoteQuery
    from node.search import SearchMode
    from p2p.query_protocol import QUERY_PROTOCOL, ask_peer
    from p2p.query_wire import RemoteError
    from p2p.sync import encode_message, read_message
    from p2p.wire import encode_varint
    from tests.p2p_attacks import bare_host

    info = info_from_p2p_addr(multiaddr.Multiaddr(target))
    vector = np.zeros(DIM)
    vector[0] = 1.0
    collections = ("c",) if scenario == "not_held" else ("b",)
    query = RemoteQuery(
        "blood oxygen lungs", tuple(vector), model, 5, SearchMode.HYBRID, collections
    )
    answers: list[dict[str, Any]] = []
    async with bare_host(listen=False) as host:
        with trio.fail_after(60):
            await host.connect(info)
        if scenario == "malformed":
            for data in (
                encode_message({"t": "query", "v": 7}),
                encode_varint(1 << 20) + b"\x00" * 64,
            ):
                stream = await host.new_stream(info.peer_id, [QUERY_PROTOCOL])
                await stream.write(data)
                try:
                    with trio.fail_after(30):
                        got = await read_message(stream)
                    answers.append(
                        {"kind": "closed"}
                        if got is None
                        else {"kind": "error", "code": got["code"]}
                    )
                except Exception as exc:  # the node may reset the stream: that is its right
                    answers.append({"kind": "closed", "why": repr(exc)})
            return {"answers": answers}
        rounds = 40 if scenario == "flood" else 1

        async def one() -> None:
            try:
                with trio.fail_after(60):
                    answer, _ = await ask_peer(host, info.peer_id, query)
            except RemoteError as exc:
                answers.append({"kind": "error", "code": exc.code})
                return
            except Exception as exc:  # over the open-stream cap: reset unread
                answers.append({"kind": "reset", "why": repr(exc)[:200]})
                return
            assert isinstance(answer, RemoteAnswer)
            hits = []
            for hit in answer.hits:
                got = check_remote_hit(hit, collections, None, None)
                assert got is not None  # the node states every hit's relevance
                text = None if isinstance(got, str) else got.fact.text
                verdict = got if isinstance(got, str) else got.check.verdict.value
                hits.append({"cid": hit.cid, "text": text, "check": verdict})
            answers.append({"kind": "hits", "hits": hits})

        async with trio.open_nursery() as nursery:
            for _ in range(rounds):
                nursery.start_soon(one)
    return {"answers": answers}


def code(message: dict[str, Any] | None) -> dict[str, Any]:
    return {"code": None if message is None else message.get("code")}


def main(argv: list[str]) -> None:
    import trio

    scenario, target, model, out = argv
    Path(out).write_text(json.dumps(trio.run(run, scenario, target, model)))


if __name__ == "__main__":
    main(sys.argv[1:])
