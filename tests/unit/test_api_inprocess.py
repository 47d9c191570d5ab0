"""The REST API in-process (the fast tier): the real app and routers, FastAPI's TestClient, the
node's service on in-memory fakes (hash embedder, memory index and blocks, SQLite catalog in a
temporary directory). The same requests against a real uvicorn process and the real model are
in tests/integration/test_api.py; these answer in milliseconds."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from api.app import ROUTERS, create_app
from node import limits
from node.signing import SigningKey
from tests.memory_nodes import memory_node

OPERATOR = SigningKey.generate()


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(lambda: memory_node(tmp_path, OPERATOR))) as test_client:
        yield test_client


def test_contribute_get_query_and_status(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    body = {"text": "Octopuses have three hearts.", "metadata": {"topic": "biology"}}
    first = client.post("/v1/facts", json=body)
    assert first.status_code == 201, first.text
    cid = first.json()["cid"]
    again = client.post("/v1/facts", json=body)
    assert again.status_code == 200 and again.json() == {"cid": cid, "status": "exists"}
    got = client.get(f"/v1/facts/{cid}").json()
    assert (
        got["record"]["text"] == body["text"] and got["record"]["contributor"] == OPERATOR.address
    )
    hits = client.post("/v1/query", json={"query": "octopuses hearts", "k": 3, "mode": "keyword"})
    assert hits.status_code == 200 and hits.json()["results"][0]["cid"] == cid
    assert client.get("/v1/status").json()["facts"] == 1
    assert client.get("/metrics").status_code == 200


@pytest.mark.parametrize(
    ("content", "code"),
    [
        (b'{"text": "' + b"\\ud800" + b'"}', 400),  # a lone surrogate
        (b"[" * 5000 + b"]" * 5000, 400),  # nested JSON
        (b'{"text": ""}', 400),
        (b"not json", 400),
    ],
)
def test_hostile_bodies_get_a_clear_4xx_and_change_nothing(
    client: TestClient, content: bytes, code: int
) -> None:
    reply = client.post("/v1/facts", content=content, headers={"content-type": "application/json"})
    assert reply.status_code == code, reply.text
    assert reply.json()["error"]["code"]
    assert client.get("/v1/status").json()["facts"] == 0


@pytest.mark.parametrize("ef", [0, -1, limits.MAX_EF + 1, 10**30, "100", True, 1.5, None])
def test_a_query_ef_outside_its_bounds_gets_400(client: TestClient, ef: Any) -> None:
    body = {"query": "octopuses", "mode": "dense", "ef": ef}
    reply = client.post("/v1/query", json=body)
    if ef is None:  # explicit null: the node's own setting
        assert reply.status_code == 200, reply.text
        return
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["message"].startswith("ef: ")
    widest = client.post("/v1/query", json={**body, "ef": limits.MAX_EF})
    assert widest.status_code == 200, widest.text


def test_odd_cids_are_refused_and_unknown_ones_are_404(client: TestClient) -> None:
    assert client.get("/v1/facts/not-a-cid").status_code == 400
    assert client.get("/v1/facts/zzzzz").status_code == 400
    unknown = "bafyreigbtj4x7ip5legnfznufuopl4sg4knzc2cof6duas4b3q2fy6swua"
    assert client.get(f"/v1/facts/{unknown}").status_code == 404


def test_every_validation_problem_is_named(client: TestClient) -> None:
    reply = client.post("/v1/query", json={"query": "x", "k": 0, "mode": "fuzzy"})
    assert reply.status_code == 400
    message = reply.json()["error"]["message"]
    assert message.startswith("k: ") and "; also mode: " in message, message
    assert "more problem" not in message


def test_api_docs_are_served_without_the_internet(client: TestClient) -> None:
    html = client.get("/docs")
    assert html.status_code == 200 and "/docs/assets/swagger-ui-bundle.js" in html.text
    assert "cdn." not in html.text
    script = client.get("/docs/assets/swagger-ui-bundle.js")
    assert script.status_code == 200 and len(script.content) > 100_000
    assert client.get("/redoc").status_code == 404  # ReDoc would fetch from its CDN
    assert client.get("/docs/assets/swagger-ui.css").status_code == 200
    assert client.get("/docs/oauth2-redirect").status_code == 200


def test_published_limits_are_the_ones_the_node_enforces(client: TestClient) -> None:
    # one home (node.limits): the OpenAPI document, the web page and the LangChain retriever
    # declare the numbers the domain checks
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    query, fact = schemas["QueryIn"]["properties"], schemas["FactIn"]["properties"]
    assert query["k"]["maximum"] == limits.MAX_K and query["k"]["default"] == limits.DEFAULT_K
    assert query["query"]["maxLength"] == limits.MAX_QUERY_BYTES
    assert query["ef"]["anyOf"][0]["maximum"] == limits.MAX_EF
    assert fact["text"]["maxLength"] == limits.MAX_TEXT_BYTES
    assert schemas["BatchIn"]["properties"]["facts"]["maxItems"] == limits.MAX_BATCH
    page = client.get("/").text
    assert "{{" not in page
    assert f'maxlength="{limits.MAX_QUERY_BYTES}"' in page
    assert f'maxlength="{limits.MAX_TEXT_BYTES}"' in page
    from api.langchain_retriever import KnowhubRetriever

    field = KnowhubRetriever.model_fields["k"]
    assert field.default == limits.DEFAULT_K
    assert any(getattr(m, "le", None) == limits.MAX_K for m in field.metadata)
    too_long = "x" * (limits.MAX_QUERY_BYTES + 1)
    assert client.post("/v1/query", json={"query": too_long}).status_code == 400


def test_results_carry_relevance_and_the_context_cites_only_relevant_facts(
    client: TestClient,
) -> None:
    texts = ["Octopuses have three hearts and blue blood.", "Tea grows on the hills of Assam."]
    cids = [client.post("/v1/facts", json={"text": t}).json()["cid"] for t in texts]
    for mode in ("dense", "keyword", "hybrid"):
        out = client.post(
            "/v1/query", json={"query": "octopuses have three hearts", "k": 2, "mode": mode}
        ).json()
        first = out["results"][0]
        assert first["cid"] == cids[0] and first["relevance"] > 0.35, (mode, out)
        assert out["min_relevance"] == pytest.approx(0.35)
        assert cids[0] in out["context"]
        # the unrelated fact may be ranked (k=2) but is never cited
        assert cids[1] not in out["context"] or mode == "keyword"
    off = client.post("/v1/query", json={"query": "Who won the 2018 World Cup?", "k": 2}).json()
    assert len(off["results"]) == 2  # ranked results are not cut...
    assert "Nothing in this knowledge hub is relevant" in off["context"]  # ...the context is
    assert not any(cid in off["context"] for cid in cids)
    everything = client.post(
        "/v1/query", json={"query": "Who won the 2018 World Cup?", "k": 2, "min_relevance": -1}
    ).json()
    assert all(cid in everything["context"] for cid in cids)
    bad = client.post("/v1/query", json={"query": "x", "min_relevance": 1.5})
    assert bad.status_code == 400 and "min_relevance" in bad.json()["error"]["message"]


def test_include_asks_for_a_lean_answer(client: TestClient) -> None:
    cid = client.post("/v1/facts", json={"text": "Octopuses have three hearts."}).json()["cid"]
    lean = client.post(
        "/v1/query", json={"query": "octopus hearts", "include": ["cid", "score", "relevance"]}
    )
    assert lean.status_code == 200 and "embed;dur=" in lean.headers["server-timing"]
    body = lean.json()
    assert set(body) == {"results"}  # no context unless asked
    assert set(body["results"][0]) == {"cid", "score", "relevance"}
    assert body["results"][0]["cid"] == cid
    with_context = client.post(
        "/v1/query", json={"query": "octopus hearts", "include": ["cid", "context"]}
    ).json()
    assert set(with_context) == {"results", "context", "min_relevance"}
    assert cid in with_context["context"] and set(with_context["results"][0]) == {"cid"}
    full = client.post("/v1/query", json={"query": "octopus hearts"}).json()
    assert set(full["results"][0]) >= {"cid", "text", "metadata", "provenance", "relevance"}
    for bad in (["cid", "password"], "cid", ["cid"] * 20):
        reply = client.post("/v1/query", json={"query": "x", "include": bad})
        assert reply.status_code == 400, bad


def test_no_route_or_dependency_runs_in_a_thread_pool() -> None:
    """FastAPI runs a plain ``def`` endpoint or dependency in its thread pool: a thread hop per
    request on the query path (api.deps). Work that blocks goes to the node's own threads."""

    def calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
        for sub in dependant.dependencies:
            if sub.call is not None:
                yield sub.call
            yield from calls(sub)

    def is_async(call: Callable[..., Any]) -> bool:
        return inspect.iscoroutinefunction(call) or inspect.iscoroutinefunction(
            getattr(call, "__call__", None)  # noqa: B004 - a callable instance's method
        )

    routes = [r for router in ROUTERS for r in router.routes if isinstance(r, APIRoute)]
    assert len(routes) > 20
    sync = [
        f"{route.path}: {getattr(call, '__qualname__', call)}"
        for route in routes
        for call in [route.endpoint, *calls(route.dependant)]
        if not is_async(call)
    ]
    assert sync == []
