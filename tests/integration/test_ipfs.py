"""Facts as IPFS objects on a real node: trustless gateway, snapshots between two nodes (with
every contributor signature kept, and CARs that cannot forge provenance), and a node
publishing to a real IPFS RPC daemon that goes down and comes back."""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dag_cbor
import httpx
import pytest
from multiformats import CID

from node.car import write_car
from node.cid import cid_for
from node.facts import Fact, make_fact
from node.signing import SigningKey
from tests.helpers import JsIpfsDaemon, NodeProcess, free_port, knowhub
from tests.verifying_client import cid_of, decode_cid, fetch_block, parse_car

DAG_CBOR = 0x71
RAW = 0x55


def test_verifying_client_agrees_with_real_ipfs_cids(ipfs_vectors: dict[str, Any]) -> None:
    for case in ipfs_vectors["raw"]:
        assert cid_of(RAW, case["utf8"].encode()) == case["cid"]
    for case in ipfs_vectors["dag_cbor"]:
        assert cid_of(DAG_CBOR, bytes.fromhex(case["dag_cbor_hex"])) == case["cid"]


def test_gateway_serves_verifiable_blocks_and_cars(
    node: NodeProcess, ipfs_vectors: dict[str, Any]
) -> None:
    texts = [case["utf8"] for case in ipfs_vectors["raw"] if case["utf8"].strip()]
    body = {"facts": [{"text": t, "metadata": {"set": "vectors"}} for t in texts]}
    results = httpx.post(f"{node.url}/v1/facts/batch", json=body, timeout=60).json()["results"]
    cids = [r["cid"] for r in results]
    for cid, text in zip(cids, texts, strict=True):
        block = fetch_block(node.url, cid)
        assert decode_cid(cid)[0] == DAG_CBOR
        assert cid_of(DAG_CBOR, block) == cid
        assert text.encode() in block
        car = httpx.get(f"{node.url}/ipfs/{cid}?format=car").content
        _, blocks = parse_car(car)
        assert blocks == [(cid, block)]

    raw = httpx.get(f"{node.url}/ipfs/{cids[0]}?format=raw")
    assert raw.headers["content-type"] == "application/vnd.ipld.raw"
    assert raw.headers["cache-control"] == "public, max-age=29030400, immutable"
    assert raw.headers["etag"] == f'"{cids[0]}.raw"'
    assert raw.headers["content-disposition"].startswith("attachment")
    assert raw.headers["x-content-type-options"] == "nosniff"
    assert (
        httpx.get(
            f"{node.url}/ipfs/{cids[0]}?format=raw", headers={"If-None-Match": raw.headers["etag"]}
        ).status_code
        == 304
    )
    head = httpx.head(f"{node.url}/ipfs/{cids[0]}", headers={"Accept": "application/vnd.ipld.car"})
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"].startswith("application/vnd.ipld.car; version=1")
    assert httpx.head(f"{node.url}/ipfs/{cids[0]}?format=raw").headers["content-length"] == str(
        len(raw.content)
    )

    # a snapshot manifest: the CAR carries the manifest and every fact it links, each verified
    snap = httpx.post(f"{node.url}/v1/snapshots").json()
    car = httpx.get(f"{node.url}{snap['car_url']}").content
    _, blocks = parse_car(car)
    assert blocks[0][0] == snap["root"]
    assert set(cids) <= {c for c, _ in blocks}
    assert len(blocks) == snap["facts"] + 1
    only_root = parse_car(httpx.get(f"{node.url}{snap['car_url']}&dag-scope=block").content)[1]
    assert [c for c, _ in only_root] == [snap["root"]]


@pytest.mark.parametrize(
    ("path", "headers", "status", "code"),
    [
        ("/ipfs/{cid}", {}, 400, "invalid_input"),  # strict trustless: no format asked for
        ("/ipfs/{cid}?format=html", {}, 400, "invalid_input"),
        ("/ipfs/{cid}", {"Accept": "text/html"}, 400, "invalid_input"),
        ("/ipfs/{cid}?format=car&dag-scope=everything", {}, 400, "invalid_request"),
        ("/ipfs/not-a-cid?format=raw", {}, 400, "invalid_cid"),
        (
            "/ipfs/bafyreidbp4w4f3gt66earpbqagk2hadh4476uqatydbavat6lbshyaaaaa?format=raw",
            {},
            404,
            "not_found",
        ),
        (
            "/ipfs/bafyreidbp4w4f3gt66earpbqagk2hadh4476uqatydbavat6lbshyaaaaa?format=car",
            {},
            404,
            "not_found",
        ),
        ("/ipfs/{cid}", {"Accept": "application/vnd.ipld.car; version=2"}, 400, "invalid_input"),
    ],
)
def test_gateway_bad_requests(
    node: NodeProcess, path: str, headers: dict[str, str], status: int, code: str
) -> None:
    cid = httpx.post(f"{node.url}/v1/facts", json={"text": "gateway error cases"}).json()["cid"]
    response = httpx.get(node.url + path.format(cid=cid), headers=headers)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


@pytest.fixture(scope="module")
def two_nodes(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[NodeProcess, NodeProcess]]:
    """A accepts unsigned submissions (its operator signs them); B requires signatures."""
    base = tmp_path_factory.mktemp("two")
    a = NodeProcess(base / "a").start()
    b = NodeProcess(base / "b", env={"KNOWHUB_REQUIRE_SIGNATURES": "true"}).start()
    yield a, b
    a.stop()
    b.stop()


ALICE = SigningKey(bytes.fromhex("a1" * 32))
MALLORY = SigningKey(bytes.fromhex("b2" * 32))


QUERIES = ["Which animals live in the Arctic?", "volcano eruption", "ocean tides and the moon"]


def answers(url: str) -> list[Any]:
    out = []
    for q in QUERIES:
        for mode in ("dense", "keyword", "hybrid"):
            # rank by relevance: reputation is personal (each node trusts its own operator key),
            # so the two nodes weigh the same facts differently by design
            body = {"query": q, "mode": mode, "k": 5, "rank": "relevance"}
            r = httpx.post(f"{url}/v1/query", json=body).json()
            out.append([(h["cid"], round(h["score"], 5)) for h in r["results"]])
    return out


def test_snapshot_round_trip_and_corrupt_car(
    two_nodes: tuple[NodeProcess, NodeProcess], tmp_path: Path
) -> None:
    a, b = two_nodes
    facts = [
        {"text": "Polar bears live in the Arctic.", "metadata": {"topic": "animals"}},
        {"text": "Penguins live in Antarctica.", "metadata": {"topic": "animals"}},
        {"text": "Mount Etna is an active volcano.", "metadata": {"topic": "geology"}},
        {"text": "Tides are caused by the gravity of the moon.", "metadata": {"topic": "ocean"}},
        {
            "text": "Magma that reaches the surface is called lava.",
            "metadata": {"topic": "geology"},
        },
    ]
    httpx.post(f"{a.url}/v1/facts/batch", json={"facts": facts}, timeout=60).raise_for_status()
    alice = make_fact("Alice measured the tides at Brest.", {"topic": "ocean"}, ALICE.address)
    signed = {**alice.record(), "signature": ALICE.sign_cid(alice.cid)}
    del signed["v"]
    assert httpx.post(f"{a.url}/v1/facts", json=signed).status_code == 201
    car = tmp_path / "kb.car"
    exported = knowhub("export", str(car), "--url", a.url)
    assert exported.returncode == 0, exported.stderr
    assert "6 facts" in exported.stdout

    # corrupt one byte inside the last block: B must reject the file and store nothing
    bad = tmp_path / "bad.car"
    data = bytearray(car.read_bytes())
    data[-10] ^= 0xFF
    bad.write_bytes(bytes(data))
    rejected = knowhub("import-car", str(bad), "--url", b.url)
    assert rejected.returncode == 1
    assert "invalid_car" in rejected.stderr and "does not match its CID" in rejected.stderr
    assert httpx.get(f"{b.url}/v1/status").json()["facts"] == 0
    # a truncated file too
    truncated = tmp_path / "truncated.car"
    truncated.write_bytes(car.read_bytes()[:-7])
    assert knowhub("import-car", str(truncated), "--url", b.url).returncode == 1
    assert httpx.get(f"{b.url}/v1/status").json()["facts"] == 0

    imported = knowhub("import-car", str(car), "--url", b.url)
    assert imported.returncode == 0, imported.stderr
    assert "imported 6 records (created 6" in imported.stdout
    assert answers(a.url) == answers(b.url)
    snap_a = httpx.post(f"{a.url}/v1/snapshots").json()
    snap_b = httpx.post(f"{b.url}/v1/snapshots").json()
    assert snap_a["root"] == snap_b["root"]  # same set of signed facts, same manifest CID

    # every signature travelled: B (which requires signatures) serves A's, and verify checks it
    cids = [c for c, _ in parse_car(car.read_bytes())[1][1:]]
    assert alice.cid in cids and len(cids) == 6
    for cid in cids:
        on_a = httpx.get(f"{a.url}/v1/facts/{cid}").json()
        on_b = httpx.get(f"{b.url}/v1/facts/{cid}").json()
        assert on_b["signature"] == on_a["signature"] is not None
        assert on_b["record"] == on_a["record"]
        assert httpx.get(f"{b.url}/v1/facts/{cid}/provenance").json()["signature_valid"]
    assert httpx.get(f"{b.url}/v1/facts/{alice.cid}").json()["record"]["contributor"] == (
        ALICE.address
    )
    verified = knowhub("verify", alice.cid, "--node", b.url, "--json")
    checks = {c["name"]: c["ok"] for c in json.loads(verified.stdout)["checks"]}
    assert checks["signature"] and checks["cid"], verified.stdout  # anchored: B's chain's affair
    # B did not take A's facts for its own: none is queued, batched or anchored by B
    chain = httpx.get(f"{b.url}/v1/status").json()["chain"]
    if chain is not None:
        assert (chain["anchor_queue"], chain["open_batches"]) == (0, 0), chain
        assert chain["last_anchored_block"] is None, chain


def crafted_car(fact: Fact, signature: bytes | None, **extra: Any) -> bytes:
    """A one-fact snapshot CAR; ``signature=None`` gives the old, unsigned manifest format."""
    leaf: dict[str, Any] = {
        "v": 1,
        "type": "knowhub/manifest",
        "count": 1,
        "facts": [CID.decode(fact.cid)],
        **extra,
    }
    if signature is not None:
        leaf["signatures"] = [signature]
    data = dag_cbor.encode(leaf)
    root = cid_for(data, "dag-cbor")
    return b"".join(write_car([root], [(root, data), (CID.decode(fact.cid), fact.block)]))


def test_a_car_cannot_forge_provenance(two_nodes: tuple[NodeProcess, NodeProcess]) -> None:
    """A CAR naming a contributor without a valid signature by that contributor stores nothing
    attributed to that contributor, with (B) and without (A) KNOWHUB_REQUIRE_SIGNATURES."""
    fact = make_fact("Alice endorses this forged claim.", {"topic": "forgery"}, ALICE.address)
    by_mallory = bytes.fromhex(MALLORY.sign_cid(fact.cid)[2:])
    by_alice = bytes.fromhex(ALICE.sign_cid(fact.cid)[2:])
    blake3 = CID("base32", 1, "dag-cbor", ("blake3", bytes(32)))
    cases = [
        (crafted_car(fact, None), "without their signatures"),
        (crafted_car(fact, by_mallory), f"fact {fact.cid} .*not by the record's contributor"),
        (crafted_car(fact, b"\x01" * 32 + b"\x02" * 32 + b"\x1b"), "has no valid signature"),
        (crafted_car(fact, by_alice, blob=b"\x00" * (1 << 20)), "not a knowhub manifest"),
        (b"".join(write_car([blake3], [(blake3, fact.block)])), "only sha2-256"),
    ]
    for node in two_nodes:
        before = httpx.get(f"{node.url}/v1/status").json()["facts"]
        for body, message in cases:
            r = httpx.post(
                f"{node.url}/v1/snapshots/import",
                content=body,
                headers={"content-type": "application/vnd.ipld.car"},
            )
            assert r.status_code == 400, r.text
            assert r.json()["error"]["code"] == "invalid_car"
            assert re.search(message, r.json()["error"]["message"]), r.text
        assert httpx.get(f"{node.url}/v1/facts/{fact.cid}").status_code == 404
        assert httpx.get(f"{node.url}/v1/status").json()["facts"] == before
        hits = httpx.post(
            f"{node.url}/v1/query", json={"query": "Alice endorses forged claim", "k": 10}
        ).json()["results"]
        assert all(h["cid"] != fact.cid for h in hits)
        gateway = httpx.get(f"{node.url}/ipfs/{blake3}?format=raw")
        assert gateway.status_code == 400 and gateway.json()["error"]["code"] == "invalid_cid"
        # uploads are spooled only to unnamed files under DATA_DIR/tmp: nothing is left behind
        assert not list(node.data_dir.glob("import-*.car"))
        assert not list((node.data_dir / "tmp").iterdir())


def test_car_upload_has_one_deadline(node: NodeProcess) -> None:
    """A client trickling a CAR (a byte a second) is cut off after KNOWHUB_BODY_TIMEOUT (2 s
    here) for the whole upload, not reset by every chunk."""
    header = b"".join(write_car([CID.decode(make_fact("x").cid)], []))
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", node.port), timeout=15) as sock:
        sock.sendall(
            b"POST /v1/snapshots/import HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/vnd.ipld.car\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"%x\r\n%s\r\n"
            % (len(header), header)
        )
        answer = b""
        for _ in range(12):  # a byte a second: each chunk well inside any per-chunk timeout
            time.sleep(1)
            try:
                sock.sendall(b"1\r\n\x01\r\n")
            except OSError:
                break
            sock.setblocking(False)
            try:
                answer = sock.recv(4096)
            except BlockingIOError:
                pass
            finally:
                sock.setblocking(True)
            if answer:
                break
        if not answer:
            answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert b"body_timeout" in answer
    assert time.monotonic() - started < 6


def test_import_endpoint_rejects_bad_uploads(node: NodeProcess) -> None:
    url = f"{node.url}/v1/snapshots/import"
    assert (
        httpx.post(url, content=b"junk", headers={"content-type": "application/json"}).status_code
        == 415
    )
    r = httpx.post(url, content=b"\x00junk", headers={"content-type": "application/vnd.ipld.car"})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "invalid_car"


def test_node_publishes_to_an_ipfs_daemon_that_was_down(tmp_path: Path) -> None:
    api_port = free_port()
    daemon = JsIpfsDaemon(tmp_path / "ipfs", api_port=api_port)
    node = NodeProcess(
        tmp_path / "node", env={"KNOWHUB_IPFS_API": f"/ip4/127.0.0.1/tcp/{api_port}"}
    ).start()
    try:
        # daemon down: contributions are acknowledged and queued for publication
        body = {"facts": [{"text": f"Queued while IPFS was down, number {i}."} for i in range(5)]}
        cids = [
            r["cid"]
            for r in httpx.post(f"{node.url}/v1/facts/batch", json=body, timeout=60).json()[
                "results"
            ]
        ]
        status = httpx.get(f"{node.url}/v1/status").json()
        assert status["ipfs"]["store"] == "kubo"
        assert status["ipfs"]["publication_backlog"] == 5
        # the gateway still serves the facts, from the catalog, verified
        assert cid_of(DAG_CBOR, fetch_block(node.url, cids[0])) == cids[0]
        deadline = time.monotonic() + 10
        while httpx.get(f"{node.url}/v1/status").json()["ipfs"]["error"] is None:
            assert time.monotonic() < deadline, "the publisher should report the dead daemon"
            time.sleep(0.2)

        daemon.start()
        deadline = time.monotonic() + 60
        while httpx.get(f"{node.url}/v1/status").json()["ipfs"]["publication_backlog"]:
            assert time.monotonic() < deadline, node.log()
            time.sleep(0.5)
        for cid in cids:
            block = daemon.rpc("block/get", arg=cid).content
            assert cid_of(DAG_CBOR, block) == cid
        pins = daemon.rpc("pin/ls").json()["Keys"]
        from multiformats import CID

        pinned = {CID.decode(k) for k in pins}
        assert {CID.decode(c) for c in cids} <= pinned
        # new facts go straight through, and snapshots land in the daemon too
        new = httpx.post(f"{node.url}/v1/facts", json={"text": "Published at once."}).json()
        snap = httpx.post(f"{node.url}/v1/snapshots").json()
        exported = daemon.rpc("dag/export", arg=snap["root"]).content
        assert {c for c, _ in parse_car(exported)[1]} >= {*cids, new["cid"], snap["root"]}
        assert json.dumps(snap)
    finally:
        node.stop()
        daemon.stop()
