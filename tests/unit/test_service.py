"""KnowledgeNode on the fast fakes (hash embedder, in-memory index) and a real SQLite file."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from index.sqlite_catalog import SqliteCatalog
from node.assembly import assemble
from node.errors import IncompatibleDataDir, InvalidFact, InvalidQuery, NotFound
from node.facts import make_fact
from node.filters import parse_filter
from node.limits import MAX_EF
from node.memory import HashEmbedder, MemoryContentStore, MemoryKeywordIndex, MemoryVectorIndex
from node.results import Contribution
from node.retrieval import RetrievalOptions
from node.search import Query, SearchMode
from node.service import KnowledgeNode, NodeOptions
from node.signing import SigningKey
from node.submissions import parse_submission

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


OPERATOR = SigningKey.generate()


def build(tmp_path: Path, embedder: HashEmbedder | None = None) -> KnowledgeNode:
    emb = embedder or HashEmbedder()
    return assemble(
        SqliteCatalog(tmp_path / "catalog.sqlite3"),
        MemoryVectorIndex(emb.dimension),
        emb,
        MemoryContentStore(),
        NodeOptions(data_dir=tmp_path, retrieval=RetrievalOptions(candidate_pool=10)),
        operator=OPERATOR,
        keywords=MemoryKeywordIndex(),
    )


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[KnowledgeNode]:
    n = build(tmp_path)
    await n.start()
    yield n
    await n.close()


async def test_contribute_is_idempotent(node: KnowledgeNode) -> None:
    fact = make_fact("Water boils at 100 C at sea level.", {"lang": "en"})
    first = await node.contribute(fact)
    again = await node.contribute(make_fact("Water boils at 100 C at sea level.", {"lang": "en"}))
    assert first == Contribution(fact.cid, True)
    assert again == Contribution(fact.cid, False)
    assert (await node.status()).facts == 1
    assert (await node.status()).index_size == 1
    stored = await node.get_fact(fact.cid)
    assert stored.record() == fact.record()


async def test_batch_keeps_order_and_isolates_bad_items(node: KnowledgeNode) -> None:
    a, b = make_fact("alpha fact"), make_fact("beta fact")
    await node.contribute(a)
    bad = InvalidFact("text must not be empty", field="text")
    results = await node.contribute_many([a, bad, b, b])
    assert results[0] == Contribution(a.cid, False)
    assert results[1] is bad
    assert results[2] == Contribution(b.cid, True)
    assert results[3] == Contribution(b.cid, False)  # a repeat inside the batch
    assert (await node.status()).facts == 2


async def test_get_fact_errors(node: KnowledgeNode) -> None:
    with pytest.raises(NotFound):
        await node.get_fact(make_fact("never stored").cid)
    with pytest.raises(NotFound):  # a valid CID, but raw codec: cannot be a fact
        await node.get_fact("bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku")
    with pytest.raises(InvalidQuery):
        await node.query(Query("  "))
    with pytest.raises(InvalidQuery):
        await node.query(Query("x", k=101))
    for ef in (0, MAX_EF + 1, True, 2.0):  # the domain's own check, whatever the edge let by
        with pytest.raises(InvalidQuery, match="ef must be"):
            await node.query(Query("x", ef=ef))  # type: ignore[arg-type]
    assert (await node.query(Query("x", ef=MAX_EF))).results == []


async def test_modes_rank_the_obvious_match_first(node: KnowledgeNode) -> None:
    texts = [f"filler sentence number {i} about nothing much" for i in range(40)]
    texts.append("penguins live in antarctica and eat krill")
    await node.contribute_many([make_fact(t) for t in texts])
    for mode in SearchMode:
        result = await node.query(Query("penguins antarctica krill", k=3, mode=mode))
        assert result.results[0].fact.text == texts[-1], mode
        assert "(cid: " in result.context
        assert result.results[0].fact.cid in result.context


async def test_filters_are_exact_even_for_a_poorly_ranked_match(node: KnowledgeNode) -> None:
    # 60 facts match the query well; the only 'rare' one matches it badly. With a candidate
    # pool of 10, post-filtering the top candidates would find nothing.
    facts = [
        make_fact(f"penguins eat krill in antarctica, note {i}", {"kind": "common"})
        for i in range(60)
    ]
    rare = make_fact("an unrelated sentence about tax law", {"kind": "rare", "tags": ["x", "y"]})
    await node.contribute_many([*facts, rare])
    for mode in (SearchMode.DENSE, SearchMode.HYBRID):
        result = await node.query(
            Query("penguins krill", k=5, mode=mode, filter=parse_filter({"kind": "rare"}))
        )
        assert [r.fact.cid for r in result.results] == [rare.cid], mode
    by_list = await node.query(
        Query("tax", k=5, mode=SearchMode.KEYWORD, filter=parse_filter({"tags": {"$in": ["y"]}}))
    )
    assert [r.fact.cid for r in by_list.results] == [rare.cid]
    none = await node.query(Query("penguins", k=5, filter=parse_filter({"kind": "missing"})))
    assert none.results == []


async def test_results_are_deduplicated_by_text(node: KnowledgeNode) -> None:
    same = [make_fact("the moon orbits the earth", {"source": f"s{i}"}) for i in range(30)]
    other = make_fact("the earth orbits the sun")
    await node.contribute_many([*same, other])
    for mode in SearchMode:
        result = await node.query(Query("moon orbits earth", k=2, mode=mode))
        texts = [r.fact.text for r in result.results]
        assert texts == ["the moon orbits the earth", "the earth orbits the sun"], mode


async def test_min_score_drops_weak_results(node: KnowledgeNode) -> None:
    await node.contribute_many([make_fact("red apples"), make_fact("blue submarine engines")])
    result = await node.query(Query("red apples", k=5, mode=SearchMode.DENSE, min_score=0.9))
    assert [r.fact.text for r in result.results] == ["red apples"]


async def test_restart_reconciles_the_index_with_the_catalog(tmp_path: Path) -> None:
    node = build(tmp_path)
    await node.start()
    await node.contribute_many([make_fact(f"fact {i}") for i in range(5)])
    await node.close()
    # a fresh in-memory index is empty: start() must refill it from the catalog's vectors
    again = build(tmp_path)
    await again.start()
    assert (await again.status()).index_size == 5
    result = await again.query(Query("fact 3", k=1, mode=SearchMode.DENSE))
    assert result.results[0].fact.text == "fact 3"
    await again.close()


async def test_a_data_dir_built_with_another_model_is_refused(tmp_path: Path) -> None:
    node = build(tmp_path)
    await node.start()
    await node.close()
    other = build(tmp_path, HashEmbedder(model_name="another-model"))
    with pytest.raises(IncompatibleDataDir):
        await other.start()


def test_parse_submission_rejects_unknown_fields() -> None:
    with pytest.raises(InvalidFact, match="unknown field"):
        parse_submission({"text": "x", "source": "web"})
    with pytest.raises(InvalidFact, match="missing"):
        parse_submission({"metadata": {}})
    with pytest.raises(InvalidFact):
        parse_submission(["text"])


def test_hash_embedder_is_unit_length() -> None:
    vectors = HashEmbedder().embed(["a b c", "", "b c d"])
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0)


async def test_query_by_vector(node: KnowledgeNode) -> None:
    texts = ["glaciers retreat in warm summers", "volcanoes erupt lava", "bees pollinate flowers"]
    await node.contribute_many([make_fact(t) for t in texts])
    vector = tuple(float(x) for x in HashEmbedder().embed(["volcanoes erupt lava"])[0] * 3.0)
    result = await node.query(Query("anything", k=1, mode=SearchMode.DENSE, vector=vector))
    assert result.results[0].fact.text == "volcanoes erupt lava"
    assert result.results[0].score == pytest.approx(1.0, abs=1e-5)  # the node normalizes
    assert result.embed_ms == 0.0
    with pytest.raises(InvalidQuery, match="384 numbers"):
        await node.query(Query("x", mode=SearchMode.DENSE, vector=(1.0, 2.0)))
    with pytest.raises(InvalidQuery, match="finite"):
        await node.query(Query("x", mode=SearchMode.DENSE, vector=(float("nan"),) * 384))
    with pytest.raises(InvalidQuery, match="finite"):
        await node.query(Query("x", mode=SearchMode.DENSE, vector=(0.0,) * 384))
    # components near float32's largest once overflowed the norm to inf and scored all 0
    huge = tuple(x * 3e38 / max(abs(v) for v in vector) for x in vector)
    again = await node.query(Query("anything", k=1, mode=SearchMode.DENSE, vector=huge))
    assert again.results[0].fact.text == "volcanoes erupt lava"
    assert again.results[0].score == pytest.approx(1.0, abs=1e-5)


async def test_concurrent_contributions_of_the_same_facts_embed_once(tmp_path: Path) -> None:
    import asyncio

    class CountingEmbedder(HashEmbedder):
        def __init__(self) -> None:
            super().__init__()
            self.texts: list[str] = []

        def embed(self, texts: Sequence[str]) -> Any:
            self.texts.extend(texts)
            return super().embed(texts)

    embedder = CountingEmbedder()
    node = build(tmp_path, embedder)
    await node.start()
    try:
        facts = [make_fact(f"shared fact {i}") for i in range(20)]
        results = await asyncio.gather(*(node.contribute_many(facts) for _ in range(5)))
        assert sorted(embedder.texts) == sorted(f.text for f in facts)
        created = [
            r for batch in results for r in batch if isinstance(r, Contribution) and r.created
        ]
        assert len(created) == 20
        assert (await node.status()).facts == 20
    finally:
        await node.close()


async def test_the_keyword_index_is_a_cache_rebuilt_from_the_catalog(tmp_path: Path) -> None:
    """Saved at close; a missing or torn file is rebuilt at the next start; hidden facts leave
    it and come back with their text."""
    from index.bm25_index import Bm25Index

    path = tmp_path / "keywords.bm25"

    def build_with_file() -> KnowledgeNode:
        emb = HashEmbedder()
        keywords, _ = Bm25Index.open(path)
        return assemble(
            SqliteCatalog(tmp_path / "catalog.sqlite3"),
            MemoryVectorIndex(emb.dimension),
            emb,
            MemoryContentStore(),
            NodeOptions(data_dir=tmp_path),
            operator=OPERATOR,
            keywords=keywords,
        )

    async def keyword_cids(node: KnowledgeNode, text: str) -> list[str]:
        result = await node.query(Query(text, k=5, mode=SearchMode.KEYWORD))
        return [r.fact.cid for r in result.results]

    facts = [make_fact("Octopuses have three hearts."), make_fact("Lichens grow on rocks.")]
    node = build_with_file()
    await node.start()
    for fact in facts:
        await node.contribute(fact)
    assert await keyword_cids(node, "octopus hearts") == [facts[0].cid]  # porter stemming
    await node.close()
    assert path.exists()
    for damage in ("delete", "tear"):
        if damage == "delete":
            path.unlink()
        else:
            path.write_bytes(path.read_bytes()[:-7])
        node = build_with_file()
        await node.start()
        try:
            assert await keyword_cids(node, "lichen rocks") == [facts[1].cid], damage
            assert (await node.moderation.hide(facts[1].cid, None)) is True
            assert await keyword_cids(node, "lichen rocks") == []
            assert (await node.moderation.unhide(facts[1].cid)) is True
            assert await keyword_cids(node, "lichen rocks") == [facts[1].cid]
        finally:
            await node.close()
