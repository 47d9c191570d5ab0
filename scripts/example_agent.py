"""A minimal retrieval agent on a knowhub node: retrieve, build a cited prompt, answer, check.

    .venv/bin/python scripts/example_agent.py "How many hearts does an octopus have?" \
        [--url http://127.0.0.1:8700] [-k 5] [--llm-url http://127.0.0.1:8080/v1 --model NAME]

1. Retrieve ranked facts for the question (``NodeClient.query``, hybrid search).
2. Build a prompt: instructions, the facts numbered [1]..[k] with their CIDs and provenance
   status, then the question.
3. Answer: with ``--llm-url`` the prompt goes to an OpenAI-compatible chat-completions endpoint
   (a local llama.cpp or vLLM server, say; ``$LLM_API_KEY`` is sent when set); without one, the
   agent answers extractively with the top fact, so the loop runs with no model at all.
4. Check every fact the answer cites: its provenance bundle is verified against the chain
   (CID recomputed, signature recovered, Merkle proof, registry lookup), so the agent can say
   which citations are anchored on chain and which are only signed so far.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from api.client import NodeClient
from api.schemas import QueryHit
from api.verification import chain_named_by_node, verify_bundle

INSTRUCTIONS = (
    "Answer the question using only the numbered facts below. Cite every fact you use as [n]. "
    "If the facts do not answer the question, say so."
)


def build_prompt(question: str, hits: list[QueryHit]) -> str:
    lines = [INSTRUCTIONS, "", "Facts:"]
    for n, hit in enumerate(hits, start=1):
        lines.append(f"[{n}] {hit.text} (cid: {hit.cid}; {hit.provenance.status})")
    lines += ["", f"Question: {question}", "Answer:"]
    return "\n".join(lines)


def ask_llm(url: str, model: str, prompt: str) -> str:
    headers = {}
    if key := os.environ.get("LLM_API_KEY"):
        headers["authorization"] = f"Bearer {key}"
    reply = httpx.post(
        f"{url.rstrip('/')}/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": prompt}]},
        headers=headers,
        timeout=120,
    )
    reply.raise_for_status()
    return str(reply.json()["choices"][0]["message"]["content"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("question")
    parser.add_argument("--url", default=os.environ.get("KNOWHUB_URL", "http://127.0.0.1:8700"))
    parser.add_argument("-k", type=int, default=5)
    parser.add_argument("--llm-url", help="OpenAI-compatible API base, e.g. http://host/v1")
    parser.add_argument("--model", default="default")
    args = parser.parse_args()
    out = sys.stdout.write
    with NodeClient(args.url) as node:
        hits = node.query(args.question, k=args.k).results
        if not hits:
            out("The node has no facts for this question.\n")
            return 1
        prompt = build_prompt(args.question, hits)
        out(f"--- prompt ---\n{prompt}\n")
        if args.llm_url:
            answer = ask_llm(args.llm_url, args.model, prompt)
        else:
            answer = f"{hits[0].text} [1]"
        out(f"--- answer ---\n{answer}\n--- citations ---\n")
        chain = node.status().chain
        for n in sorted({int(m) for m in re.findall(r"\[(\d+)\]", answer)}):
            if not 1 <= n <= len(hits):
                out(f"[{n}] cites no retrieved fact\n")
                continue
            bundle = node.provenance(hits[n - 1].cid).model_dump(mode="json")
            rpc, registry = chain_named_by_node(chain, bundle)
            result = verify_bundle(bundle, rpc, registry, chain_from_node=True)
            if result.verified:
                verdict = "verified on chain"
            else:
                verdict = "not verified: " + ", ".join(c.name for c in result.checks if not c.ok)
            out(f"[{n}] {hits[n - 1].cid} {result.status}, {verdict}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
