"""The keyword index's scorer against an earlier revision's, on the same saved index, in one run.

    .venv/bin/python scripts/bench_keyword_kernel.py /tmp/knowhub-scale/node/keywords.bm25
    .venv/bin/python scripts/bench_keyword_kernel.py FILE --baseline 8dbb02d   # the default

The baseline is ``index/bm25_index.py`` as it was at ``--baseline`` (read with ``git show`` and
loaded as a module of its own beside today's, over the same postings store): stop 33's numpy
scorer by default. Both load the same ``keywords.bm25`` (e.g. the one ``bench_scale.py``
leaves in a node's data directory). The 300 SciFact test claims, top 100 (a hybrid query's
pool) and top 10: three rounds of a whole pass per scorer (passes alternate, not claims, so
each scorer runs on its own warm caches, as in a node that serves only it; interleaved per
claim, each evicts the other's and today's looks ~2x slower), p50 / p99 over all timings.
Also checks that both return the same ids and scores for every claim.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

from _bench import ROOT, machine, percentiles, report, scifact_test_queries

from index import bm25_index


def baseline_module(revision: str) -> Any:
    source = subprocess.run(
        ["git", "show", f"{revision}:index/bm25_index.py"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    module = types.ModuleType("bm25_index_baseline")
    module.__file__ = f"<{revision}:index/bm25_index.py>"
    sys.modules[module.__name__] = module  # its dataclasses look themselves up there
    exec(compile(source, module.__file__, "exec"), module.__dict__)
    return module


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("file", type=Path, help="a saved keywords.bm25")
    parser.add_argument("--baseline", default="8dbb02d")
    args = parser.parse_args()
    old_module = baseline_module(args.baseline)
    today = bm25_index.Bm25Index.load(args.file)
    before = old_module.Bm25Index.load(args.file)
    claims = list(scifact_test_queries()[0].values())
    result: dict[str, Any] = {
        "machine": machine(),
        "file": str(args.file),
        "documents": len(today),
        "baseline": args.baseline,
    }
    for k in (100, 10):
        times: dict[str, list[float]] = {"baseline": [], "today": []}
        answers: dict[str, list[Any]] = {}
        for _ in range(3):  # whole passes in turn: each scorer runs on its own warm caches
            for name, index in (("baseline", before), ("today", today)):
                answers[name] = []
                for claim in claims:
                    started = time.perf_counter()
                    answers[name].append(index.search(claim, k))
                    times[name].append((time.perf_counter() - started) * 1000)
        same = sum(a == b for a, b in zip(answers["baseline"], answers["today"], strict=True))
        base, now = percentiles(times["baseline"]), percentiles(times["today"])
        result[f"top{k}"] = {
            "baseline_ms": base,
            "today_ms": now,
            "p50_ratio": round(now["p50"] / base["p50"], 3),
            "identical_answers": f"{same}/{len(claims)}",
        }
    report("keyword-kernel", result)


if __name__ == "__main__":
    main()
