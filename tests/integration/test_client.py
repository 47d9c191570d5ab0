"""The Python client (sync and async) and the LangChain retriever against a real node."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest
from langchain_core.documents import Document

from api.client import AsyncNodeClient, InvalidRequest, NodeClient, NotFound
from api.langchain_retriever import KnowhubRetriever
from node.cid import parse_cid
from tests.helpers import NodeProcess

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_sync_client_covers_the_api(node: NodeProcess, tmp_path: Path) -> None:
    with NodeClient(node.url) as client:
        assert client.health().status == "ok"
        created = client.add("Client test: lichens are fungi living with algae.", {"k": "v"})
        assert created.status in {"created", "exists"}
        again = client.add("Client test: lichens are fungi living with algae.", {"k": "v"})
        assert again.cid == created.cid and again.status == "exists"
        batch = client.add_batch([{"text": "Client batch fact one."}, {"text": ""}])
        assert (batch.created + batch.existing, batch.failed) == (1, 1)
        assert batch.results[1].error is not None and batch.results[1].error.field == "text"
        fact = client.get(created.cid)
        assert fact.record.text.startswith("Client test") and fact.record.metadata == {"k": "v"}
        bundle = client.provenance(created.cid)
        assert bundle.cid == created.cid and bundle.signature_valid
        hits = client.query("lichens fungi algae", k=1, mode="keyword").results
        assert hits[0].cid == created.cid and hits[0].provenance.status in {"pending", "anchored"}
        status = client.status()
        assert status.facts >= 2 and status.model.dimension == 384
        assert isinstance(client.peers().peers, list)
        with pytest.raises(InvalidRequest) as bad_peer:
            client.connect_peer("/ip4/127.0.0.1/tcp/1")  # no /p2p/ id
        assert bad_peer.value.field == "address"
        client.disconnect_peer("12D3KooWC6pyXUhYGHAVaGu3jS3hRFPRbXhnUrWh7fDGsanbdNJu", 1)
        assert "knowhub_facts_stored" in client.metrics()
        block = client.block(created.cid)
        assert parse_cid(created.cid).digest[-32:] == hashlib.sha256(block).digest()
        assert client.car(created.cid).startswith(b"\x3a\xa2")  # CARv1 header: map of 2
        snap = client.snapshot()
        size = client.download(snap.car_url, tmp_path / "all.car", lambda n: None)
        assert size > 0 and snap.facts == status.facts
        imported = client.import_car(tmp_path / "all.car", lambda n: None)
        assert imported.facts == snap.facts and imported.created == 0
        with pytest.raises(NotFound):
            client.get("bafyreigbtj4x7ip5legnfznufuopl4sg4knzc2cof6duas4b3q2fy6swua")
        with pytest.raises(InvalidRequest) as caught:
            client.query("x", k=1000)
        assert caught.value.code == "invalid_query" or caught.value.field == "k"


async def test_async_client(node: NodeProcess, tmp_path: Path) -> None:
    async with AsyncNodeClient(node.url) as client:
        created = await client.add(f"Async client fact written at {time.time()}.")
        assert (await client.get(created.cid)).cid == created.cid
        out = await client.query("Async client fact", k=3, mode="keyword")
        assert created.cid in [h.cid for h in out.results]
        assert (await client.status()).facts >= 1
        assert (await client.block(created.cid))[:1] == b"\xa4"  # DAG-CBOR map of 4
        snap = await client.snapshot()
        path = tmp_path / "snap.car"
        path.write_bytes(await client.car(snap.root))
        assert (await client.import_car(path)).created == 0
        with pytest.raises(NotFound):
            await client.provenance("bafyreigbtj4x7ip5legnfznufuopl4sg4knzc2cof6duas4b3q2fy6swua")


async def test_langchain_retriever(node: NodeProcess) -> None:
    with NodeClient(node.url) as client:
        cid = client.add(
            "LangChain test: the Atacama is the driest non-polar desert.", {"region": "chile"}
        ).cid
        client.add("LangChain test: Lake Baikal holds a fifth of surface fresh water.")
    retriever = KnowhubRetriever(url=node.url, k=2, mode="hybrid")
    docs = retriever.invoke("Which desert is the driest?")
    assert docs and isinstance(docs[0], Document)
    top = docs[0]
    assert top.id == cid and top.page_content.startswith("LangChain test: the Atacama")
    assert top.metadata["cid"] == cid and top.metadata["region"] == "chile"
    assert top.metadata["provenance"]["status"] in {"pending", "anchored"}
    assert top.metadata["contributor"].startswith("0x")
    assert top.metadata["source"] == f"{node.url}/ipfs/{cid}"
    assert isinstance(top.metadata["score"], float)
    assert top.metadata["relevance"] >= 0.35  # the node's default context threshold
    filtered = KnowhubRetriever(url=node.url, k=5, filter={"region": "chile"})
    assert [d.id for d in await filtered.ainvoke("driest desert")] == [cid]
    # the only fact the filter allows is about a desert: not relevant to a lake, left out...
    assert await filtered.ainvoke("fresh water lake") == []
    # ...unless every ranked hit is asked for
    everything = KnowhubRetriever(
        url=node.url, k=5, filter={"region": "chile"}, relevant_only=False
    )
    assert [d.id for d in await everything.ainvoke("fresh water lake")] == [cid]
    off_topic = KnowhubRetriever(url=node.url, k=2)
    assert off_topic.invoke("Who won the 2018 FIFA World Cup?") == []
