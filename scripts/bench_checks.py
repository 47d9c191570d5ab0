"""What checking a peer's record costs: CIDs, signature recovery, gossip envelopes.

    .venv/bin/python scripts/bench_checks.py

Each figure is the median of ``--repeat`` timings of ``--n`` calls, with the baseline (the path
the node used before, still in the libraries) measured in the same run on the same inputs:

* the CID string of a fact block: ``node.cid.dag_cbor_cid`` (prefix, SHA-256, base32) against
  ``multiformats.CID`` (what it replaced);
* recovering a contributor signature: ``node.signing.recover_signer`` (libsecp256k1 through
  ``coincurve``) against ``eth_account.Account.recover_message``;
* checking a full gossip envelope (64 records, the last with another record's signature, the
  costliest invalid message): ``p2p.wire.decode_envelope`` (with the two paths above), then
  ``p2p.checks.EnvelopeChecks`` with nothing remembered (the baseline of the next two), the
  same bytes again (remembered), and 63 known records around one new bad one.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

from _bench import machine, report
from eth_account import Account
from eth_account.messages import encode_defunct

from node.cid import DAG_CBOR, cid_for, dag_cbor_cid
from node.facts import make_fact
from node.signing import SigningKey, recover_signer
from p2p.checks import EnvelopeChecks
from p2p.wire import InvalidEnvelope, RawRecord, decode_envelope, encode_envelope


def per_call_us(fn: Callable[[], Any], n: int, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        for _ in range(n):
            fn()
        times.append((time.perf_counter() - started) / n * 1e6)
    return round(statistics.median(times), 1)


def rejected(check: Callable[[bytes], Any], data: bytes) -> Callable[[], None]:
    def run() -> None:
        try:
            check(data)
        except InvalidEnvelope:
            return
        raise AssertionError("the envelope should be invalid")

    return run


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    key = SigningKey.generate()
    facts = [
        make_fact(f"Benchmark fact number {i} about checks.", {"lang": "en"}, key.address)
        for i in range(65)
    ]
    signatures = [key.sign_cid(f.cid) for f in facts]
    records = [
        RawRecord(f.block, bytes.fromhex(s[2:])) for f, s in zip(facts, signatures, strict=True)
    ]
    bad = encode_envelope([*records[:63], RawRecord(records[63].block, records[0].signature)])
    new_bad = encode_envelope([*records[:63], RawRecord(records[64].block, records[0].signature)])
    block, cid, signature = facts[0].block, facts[0].cid, signatures[0]

    def fresh_checks() -> None:  # a new memory each call: nothing remembered
        rejected(EnvelopeChecks().check, bad)()

    warm = EnvelopeChecks()
    rejected(warm.check, bad)()

    def new_bad_again() -> None:  # the known records are remembered, the verdict is not
        rejected(warm.check, new_bad)()
        warm._rejected.clear()

    n, r = args.n, args.repeat
    rows = {
        "cid": {
            "baseline_us": per_call_us(lambda: str(cid_for(block, DAG_CBOR)), n, r),
            "now_us": per_call_us(lambda: dag_cbor_cid(block), n, r),
        },
        "recover": {
            "baseline_us": per_call_us(
                lambda: Account.recover_message(
                    encode_defunct(text=cid), signature=bytes.fromhex(signature[2:])
                ),
                n,
                r,
            ),
            "now_us": per_call_us(lambda: recover_signer(cid, signature), n, r),
        },
        "invalid_envelope": {
            "baseline_us": per_call_us(rejected(decode_envelope, bad), max(n // 20, 3), r),
            "now_us": per_call_us(fresh_checks, max(n // 20, 3), r),
            "repeated_us": per_call_us(rejected(warm.check, bad), n, r),
            "known_records_one_new_bad_us": per_call_us(new_bad_again, n, r),
        },
    }
    for name in ("cid", "recover"):
        rows[name]["speedup"] = round(rows[name]["baseline_us"] / rows[name]["now_us"], 1)
    envelope = rows["invalid_envelope"]
    envelope["speedup_repeated"] = round(envelope["now_us"] / envelope["repeated_us"], 1)
    envelope["speedup_known_records"] = round(
        envelope["now_us"] / envelope["known_records_one_new_bad_us"], 1
    )
    result = {"machine": machine(), "command": "scripts/bench_checks.py", **rows}
    report("checks", result)


if __name__ == "__main__":
    main()
