"""Relevant-only context: how often the LLM context is (rightly) empty for questions the
corpus cannot answer, and how precise it is for questions it can, through the REST API.

    .venv/bin/python scripts/bench_relevance.py

Uses the node data in bench-out/scifact (from bench_ingest.py; ingests SciFact if missing).
Queries: the 300 SciFact test claims (qrels: the relevant abstracts) and the 100 questions of
scripts/data/offtopic_questions.txt (sports, history, cooking...: nothing in SciFact answers
them). Each query is asked once (hybrid, k=5, the node's default threshold); the hits carry
their relevance, so the context every other threshold would give is computed from the same
answers. Reported per threshold: the share of off-topic questions with an empty context, and
on SciFact the context precision (cited facts that the qrels call relevant), the share of the
relevant facts among the top 5 that stay cited, and the share of SciFact claims left with an
empty context; plus nDCG@10 of the ranked results, which the threshold does not cut.
The baseline in the same run is the padded context (every top-5 hit cited: min_relevance -1).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from _bench import OUT, ingest, machine, report, running_node, scifact_facts, scifact_test_queries
from bench_quality import ndcg_at_10

K = 5
NOTHING = "Nothing in this knowledge hub is relevant"
THRESHOLDS = (-1.0, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5)
OFFTOPIC = Path(__file__).parent / "data" / "offtopic_questions.txt"


def offtopic_questions() -> list[str]:
    lines = OFFTOPIC.read_text().splitlines()
    return [line for line in lines if line.strip() and not line.startswith("#")]


def ask(client: httpx.Client, text: str, k: int) -> dict[str, Any]:
    reply = client.post("/v1/query", json={"query": text, "k": k})
    reply.raise_for_status()
    body: dict[str, Any] = reply.json()
    return body


def cited(hits: list[dict[str, Any]], threshold: float) -> list[dict[str, Any]]:
    return [h for h in hits if h["relevance"] is not None and h["relevance"] >= threshold]


def main() -> None:
    queries, qrels = scifact_test_queries()
    facts = scifact_facts()
    off = offtopic_questions()
    with (
        running_node(OUT / "scifact") as (url, _pid),
        httpx.Client(base_url=url, timeout=600) as client,
    ):
        if client.get("/v1/status").json()["facts"] < len(facts):
            ingest(url, facts)
        sci = {qid: ask(client, text, 10) for qid, text in queries.items()}
        offs = [ask(client, text, K) for text in off]
    default = sci[next(iter(sci))]["min_relevance"]
    # the node's own context at its default threshold, as served
    served_empty_off = sum(o["context"].startswith(NOTHING) for o in offs) / len(offs)
    served_empty_sci = sum(s["context"].startswith(NOTHING) for s in sci.values()) / len(sci)
    ndcg = sum(
        ndcg_at_10([h["metadata"]["doc_id"] for h in sci[q]["results"]], qrels[q]) for q in sci
    ) / len(sci)
    rows = []
    for threshold in sorted({*THRESHOLDS, default}):
        in_context = relevant_cited = relevant_top = empty_sci = 0
        for qid, body in sci.items():
            top = body["results"][:K]
            kept = cited(top, threshold)
            relevant = [h for h in top if h["metadata"]["doc_id"] in qrels[qid]]
            in_context += len(kept)
            relevant_top += len(relevant)
            relevant_cited += sum(h["metadata"]["doc_id"] in qrels[qid] for h in kept)
            empty_sci += not kept
        empty_off = sum(not cited(o["results"], threshold) for o in offs)
        rows.append(
            {
                "min_relevance": threshold,
                "offtopic_empty_context": round(empty_off / len(offs), 3),
                "scifact_context_precision": round(relevant_cited / max(1, in_context), 3),
                "scifact_relevant_kept": round(relevant_cited / max(1, relevant_top), 3),
                "scifact_empty_context": round(empty_sci / len(sci), 3),
                "facts_per_context": round(in_context / len(sci), 2),
            }
        )
    report(
        "relevance",
        {
            "machine": machine(),
            "k": K,
            "node_default_min_relevance": default,
            "served_offtopic_empty_context": round(served_empty_off, 3),
            "served_scifact_empty_context": round(served_empty_sci, 3),
            "scifact_hybrid_ndcg@10": round(100 * ndcg, 2),
            "thresholds": rows,
        },
    )


if __name__ == "__main__":
    main()
