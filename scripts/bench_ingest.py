"""Ingest benchmark: the SciFact corpus through POST /v1/facts/batch on a running node,
against bare ``model.encode`` of the same texts in the same run.

    .venv/bin/python scripts/bench_ingest.py [--limit N] [--batch 256]
    .venv/bin/python scripts/bench_ingest.py --sentences 10000    # short facts

Leaves the ingested node's data in bench-out/scifact for bench_quality.py and bench_query.py.
"""

from __future__ import annotations

import argparse
import gc
import shutil
import time

from _bench import (
    OUT,
    ingest,
    load_model,
    machine,
    report,
    running_node,
    scifact_facts,
    synthetic_facts,
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--limit", type=int, default=0, help="only the first N docs")
    parser.add_argument("--batch", type=int, default=256, help="facts per POST")
    parser.add_argument(
        "--sentences",
        type=int,
        default=0,
        metavar="N",
        help="N short facts (SciFact sentences, _bench.synthetic_facts) instead of the abstracts",
    )
    args = parser.parse_args()
    facts = synthetic_facts(args.sentences) if args.sentences else scifact_facts()
    if args.limit:
        facts = facts[: args.limit]
    texts = [f["text"] for f in facts]

    model = load_model()
    model.encode(texts[:64], batch_size=64)  # warm up
    started = time.perf_counter()
    model.encode(texts, batch_size=64, normalize_embeddings=True)
    bare_s = time.perf_counter() - started
    del model
    gc.collect()

    data_dir = OUT / ("sentences" if args.sentences else "scifact")
    shutil.rmtree(data_dir, ignore_errors=True)
    with running_node(data_dir) as (url, _pid):
        node_s = ingest(url, facts, args.batch)

    report(
        "ingest-sentences" if args.sentences else "ingest",
        {
            "machine": machine(),
            "facts": len(facts),
            "texts": "SciFact sentences" if args.sentences else "SciFact title + abstract",
            "batch": args.batch,
            "bare_encode_s": round(bare_s, 2),
            "bare_encode_facts_per_s": round(len(facts) / bare_s, 2),
            "node_ingest_s": round(node_s, 2),
            "node_ingest_facts_per_s": round(len(facts) / node_s, 2),
            "ratio_node_vs_bare": round(bare_s / node_s, 3),
        },
    )


if __name__ == "__main__":
    main()
