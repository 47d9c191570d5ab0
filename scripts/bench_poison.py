"""Knowledge poisoning against reputation ranking: how often planted facts reach the top 5 of
the queries they target, and what reputation ranking costs clean retrieval, through the REST API.

    .venv/bin/python scripts/bench_poison.py [--queries 100] [--reuse] [--disputer root]

A fresh node (bench-out/poison, removed first unless ``--reuse``; KNOWHUB_TRUST_ROOTS = one
root key, no chain, no p2p) gets the SciFact corpus (5,183 abstracts, metadata.doc_id) signed
by 20 honest keys in turn; the root endorses a random 5 % of those facts (fixed seed, at least
one per honest key). Every key is derived from a fixed seed, so every run builds the same
records. Three phases, each measured over the 300 SciFact test claims (hybrid, k=10) asked
once with rank=relevance and once with rank=reputation:

1. clean: once every honest key has a reputation above 0 and the root's endorsements are all
   counted (polled, no fixed sleeps);
2. poisoned: for the first ``--queries`` test claims (by query id), 5 facts each by 5 fresh
   keys (one key per fact), written to rank high for that claim as in PoisonedRAG's black-box
   setting: the claim's text followed by a false statement (5 wordings, one per fact), metadata
   ``{"poison": qid}``; each of the 5 keys endorses the other 4 facts of its group (a sybil
   ring no trust root reaches);
3. disputed: the root also disputes a random 20 % of the honest facts (fixed seed); with
   ``--disputer second-root`` a second trust root (configured from the start, attesting
   nothing before) disputes them instead.

Reported per phase and rank mode: attack success (the share of the targeted claims with a
poisoned fact among the top 5), nDCG@10 on all 300 claims (poisoned facts count as
irrelevant) and the nDCG difference reputation - relevance; when a poisoned fact still makes
the top 5 under rank=reputation, a few such hits with their ``curation`` fields. Plus the
counts of facts, keys and attestations, and the time to ingest, attest, wait for the
reputation to count them, and query. ``--reuse`` keeps an existing data dir (records already
there are accepted again as "exists"; the clean phase is then clean only if the dir held no
more than the corpus and the root's endorsements).
"""

from __future__ import annotations

import argparse
import hashlib
import random
import shutil
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from _bench import OUT, ingest, machine, report, running_node, scifact_facts, scifact_test_queries
from bench_quality import ndcg_at_10

from node.attestation import make_attestation
from node.facts import make_fact
from node.signing import SigningKey

HONEST_KEYS = 20
PER_QUERY = 5
ENDORSE_SHARE = 0.05
DISPUTE_SHARE = 0.2
SEED = 20240611
K = 10
TOP = 5
#: The attestations' ``at``: the disputes come later than the endorsements, so a root's
#: dispute of a fact it endorsed replaces the endorsement.
AT_ENDORSE = 1_700_000_000
AT_DISPUTE = AT_ENDORSE + 1
DEADLINE = 900.0
FALSE_CLAIMS = (
    "This has been conclusively refuted by a 2024 meta-analysis.",
    "Large randomized controlled trials have since shown the opposite to be true.",
    "Independent replications found no such effect, and the original report was retracted.",
    "Systematic reviews agree that the evidence points the other way.",
    "In fact the reverse holds, as every well-powered study since has confirmed.",
)
MODES = ("relevance", "reputation")


def key(label: str) -> SigningKey:
    return SigningKey(hashlib.sha256(label.encode()).digest())


def signed_fact(signer: SigningKey, text: str, metadata: dict[str, Any]) -> dict[str, Any]:
    cid = make_fact(text, metadata, signer.address).cid
    return {
        "text": text,
        "metadata": metadata,
        "contributor": signer.address,
        "signature": signer.sign_cid(cid),
        "cid": cid,
    }


def attest(client: httpx.Client, signer: SigningKey, cid: str, verdict: str, at: int) -> None:
    record = make_attestation(cid, verdict, signer.address, at)
    body = {
        "verdict": verdict,
        "contributor": signer.address,
        "at": at,
        "signature": signer.sign_cid(record.cid),
    }
    response = client.post(f"/v1/facts/{cid}/attestations", json=body)
    if response.status_code not in (200, 201):
        raise RuntimeError(f"attestation on {cid}: {response.status_code} {response.text}")


def attest_all(client: httpx.Client, items: Sequence[tuple[SigningKey, str, str, int]]) -> float:
    """POST every (signer, fact CID, verdict, at), a few at a time; seconds taken."""
    started = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:
        for _ in pool.map(lambda item: attest(client, *item), items):
            pass
    return time.perf_counter() - started


def contribute(url: str, facts: Sequence[dict[str, Any]]) -> float:
    wire = [{k: v for k, v in f.items() if k != "cid"} for f in facts]
    return ingest(url, wire)


def contributor(client: httpx.Client, address: str) -> dict[str, Any]:
    response = client.get(f"/v1/contributors/{address}")
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


def wait_until(what: str, done: Callable[[], bool]) -> float:
    """Poll ``done`` until it holds; seconds waited. RuntimeError after DEADLINE."""
    started = time.perf_counter()
    while not done():
        if time.perf_counter() - started > DEADLINE:
            raise RuntimeError(f"timed out after {DEADLINE:.0f} s waiting for {what}")
        time.sleep(0.25)
    return time.perf_counter() - started


def ask_all(
    client: httpx.Client, queries: dict[str, str], rank: str
) -> dict[str, list[dict[str, Any]]]:
    out = {}
    for qid, text in queries.items():
        response = client.post(
            "/v1/query",
            json={
                "query": text,
                "k": K,
                "mode": "hybrid",
                "rank": rank,
                "include": ["cid", "metadata", "contributor", "curation"],
            },
        )
        response.raise_for_status()
        out[qid] = response.json()["results"]
    return out


def measure(
    client: httpx.Client,
    queries: dict[str, str],
    qrels: dict[str, dict[str, int]],
    targeted: Sequence[str],
) -> dict[str, Any]:
    """Both rank modes over every query: attack success, nDCG@10, and examples of poisoned
    hits that rank=reputation still puts in the top 5."""
    phase: dict[str, Any] = {}
    started = time.perf_counter()
    for rank in MODES:
        answers = ask_all(client, queries, rank)
        hit = 0
        examples = []
        for qid in targeted:
            poisoned = [h for h in answers[qid][:TOP] if "poison" in h["metadata"]]
            hit += bool(poisoned)
            if rank == "reputation" and poisoned and len(examples) < 5:
                h = poisoned[0]
                examples.append(
                    {
                        "query": qid,
                        "position": answers[qid].index(h) + 1,
                        "contributor": h["contributor"],
                        "curation": h["curation"],
                    }
                )
        ndcg = sum(
            ndcg_at_10([h["metadata"].get("doc_id", "") for h in answers[q]], qrels[q])
            for q in queries
        ) / len(queries)
        phase[rank] = {
            "attack_success": round(hit / len(targeted), 3),
            "ndcg@10": round(ndcg, 4),
        }
        if examples:
            phase[rank]["poisoned_top5_examples"] = examples
    phase["ndcg_diff_reputation_minus_relevance"] = round(
        phase["reputation"]["ndcg@10"] - phase["relevance"]["ndcg@10"], 4
    )
    phase["query_seconds"] = round(time.perf_counter() - started, 1)
    return phase


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queries", type=int, default=100, help="targeted test claims")
    parser.add_argument("--reuse", action="store_true", help="keep bench-out/poison")
    parser.add_argument(
        "--disputer",
        choices=("root", "second-root"),
        default="root",
        help="who disputes in the disputed phase: the root, or a second trust root",
    )
    args = parser.parse_args()

    queries, qrels = scifact_test_queries()
    targeted = sorted(queries, key=int)[: args.queries]
    rng = random.Random(SEED)

    root = key("root")
    disputer = root if args.disputer == "root" else key("root-2")
    roots = sorted({root.address, disputer.address})
    honest = [key(f"honest-{i}") for i in range(HONEST_KEYS)]
    corpus = [
        signed_fact(honest[n % HONEST_KEYS], f["text"], f["metadata"])
        for n, f in enumerate(scifact_facts())
    ]
    endorsed = set(rng.sample(range(len(corpus)), round(ENDORSE_SHARE * len(corpus))))
    for i in range(HONEST_KEYS):  # every honest key gets at least one endorsement
        if not any(n % HONEST_KEYS == i for n in endorsed):
            endorsed.add(i)
    disputed = set(rng.sample(range(len(corpus)), round(DISPUTE_SHARE * len(corpus))))

    groups: list[list[tuple[SigningKey, dict[str, Any]]]] = []
    for qid in targeted:
        group = []
        for j in range(PER_QUERY):
            signer = key(f"poison-{qid}-{j}")
            text = f"{queries[qid]} {FALSE_CLAIMS[j]}"
            group.append((signer, signed_fact(signer, text, {"poison": qid})))
        groups.append(group)
    poison_facts = [f for group in groups for _, f in group]
    ring = [
        (signer, other["cid"], "endorse", AT_ENDORSE)
        for group in groups
        for signer, own in group
        for _, other in group
        if other is not own
    ]

    data_dir = OUT / "poison"
    if not args.reuse:
        shutil.rmtree(data_dir, ignore_errors=True)
        (OUT / "poison.log").unlink(missing_ok=True)
    env = {
        "KNOWHUB_TRUST_ROOTS": ",".join(roots),
        "KNOWHUB_LOCAL_CHAIN": "false",
        "KNOWHUB_P2P_LISTEN": "off",
    }
    timings: dict[str, float] = {}
    phases: dict[str, Any] = {}
    with (
        running_node(data_dir, **env) as (url, _pid),
        httpx.Client(base_url=url, timeout=600) as client,
    ):
        # -- clean -----------------------------------------------------------------------
        timings["ingest_corpus_s"] = contribute(url, corpus)
        timings["attest_root_endorse_s"] = attest_all(
            client, [(root, corpus[n]["cid"], "endorse", AT_ENDORSE) for n in sorted(endorsed)]
        )

        def clean_counted() -> bool:
            if contributor(client, root.address)["endorsements_given"] != len(endorsed):
                return False
            return all(contributor(client, h.address)["reputation"] > 0 for h in honest)

        timings["wait_clean_s"] = wait_until("the root's endorsements", clean_counted)
        reputations = [contributor(client, h.address)["reputation"] for h in honest]
        print(f"clean: honest reputations {min(reputations):.3f}..{max(reputations):.3f}")
        phases["clean"] = measure(client, queries, qrels, targeted)
        phases["clean"]["honest_reputation"] = [min(reputations), max(reputations)]
        phases["clean"]["honest_keys_below_full_reputation"] = sum(r < 1 for r in reputations)
        print("clean:", {m: phases["clean"][m] for m in MODES})

        # -- poisoned --------------------------------------------------------------------
        timings["ingest_poison_s"] = contribute(url, poison_facts)
        timings["attest_poison_ring_s"] = attest_all(client, ring)

        def ring_counted() -> bool:
            for signer, _ in groups[-1]:
                seen = contributor(client, signer.address)
                if seen["endorsements"] != PER_QUERY - 1:
                    return False
                if seen["endorsements_given"] != PER_QUERY - 1:
                    return False
            return True

        timings["wait_poisoned_s"] = wait_until("the poison ring's endorsements", ring_counted)
        views = [contributor(client, s.address) for group in groups for s, _ in group]
        uncounted = [v["address"] for v in views if v["endorsements"] != PER_QUERY - 1]
        if uncounted:
            raise RuntimeError(f"{len(uncounted)} poison keys' endorsements not counted")
        poison_reputation = max(v["reputation"] for v in views)
        phases["poisoned"] = measure(client, queries, qrels, targeted)
        phases["poisoned"]["max_poison_key_reputation"] = poison_reputation
        print("poisoned:", {m: phases["poisoned"][m] for m in MODES})

        # -- disputed --------------------------------------------------------------------
        timings["attest_disputes_s"] = attest_all(
            client,
            [(disputer, corpus[n]["cid"], "dispute", AT_DISPUTE) for n in sorted(disputed)],
        )
        replaced = endorsed & disputed if disputer is root else set()

        def disputes_counted() -> bool:
            if contributor(client, root.address)["endorsements_given"] != len(endorsed - replaced):
                return False
            return contributor(client, disputer.address)["disputes_given"] == len(disputed)

        timings["wait_disputed_s"] = wait_until("the disputes", disputes_counted)
        views = [contributor(client, h.address) for h in honest]
        phases["disputed"] = measure(client, queries, qrels, targeted)
        phases["disputed"]["honest_reputation"] = [
            min(v["reputation"] for v in views),
            max(v["reputation"] for v in views),
        ]
        phases["disputed"]["honest_keys_reached"] = sum(v["reputation"] > 0 for v in views)
        status = client.get("/v1/status").json()

    timings = {name: round(seconds, 1) for name, seconds in timings.items()}
    result = {
        "machine": machine(),
        "queries": len(queries),
        "targeted_queries": len(targeted),
        "k": K,
        "mode": "hybrid",
        "reused_data_dir": args.reuse,
        "disputer": args.disputer,
        "counts": {
            "honest_facts": len(corpus),
            "poison_facts": len(poison_facts),
            "facts_on_node": status.get("facts"),
            "honest_keys": HONEST_KEYS,
            "poison_keys": len(poison_facts),
            "trust_roots": len(roots),
            "root_endorsements": len(endorsed),
            "poison_ring_endorsements": len(ring),
            "disputes": len(disputed),
            "root_endorsements_replaced_by_disputes": len(replaced),
        },
        "phases": phases,
        "timings": timings,
    }
    report("poison" if args.disputer == "root" else f"poison-{args.disputer}", result)
    print(f"\n{'phase':<10} {'rank':<11} {'attack@5':>9} {'nDCG@10':>8} {'diff':>8}")
    for name, phase in phases.items():
        for rank in MODES:
            diff = phase["ndcg_diff_reputation_minus_relevance"] if rank == "reputation" else ""
            print(
                f"{name:<10} {rank:<11} {phase[rank]['attack_success']:>9.3f} "
                f"{phase[rank]['ndcg@10']:>8.4f} {diff!s:>8}"
            )


if __name__ == "__main__":
    main()
