"""p2p.checks: remembered envelope checks give decode_envelope's answers, at the cost of a hash
when the bytes or records were seen before, and stay within their bounds."""

from __future__ import annotations

from typing import Any

import dag_cbor
import pytest

from node.facts import make_fact
from node.signing import SigningKey
from p2p import checks as checks_module
from p2p.checks import EnvelopeChecks
from p2p.wire import InvalidEnvelope, RawRecord, decode_envelope, encode_envelope

KEY = SigningKey.generate()


def records(n: int, tag: str = "") -> list[RawRecord]:
    out = []
    for i in range(n):
        fact = make_fact(f"Checked fact {tag}{i}.", None, KEY.address)
        out.append(RawRecord(fact.block, bytes.fromhex(KEY.sign_cid(fact.cid)[2:])))
    return out


class CountingVerify:
    """Counts the records really verified (the module's verify_record, wrapped)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        inner = checks_module.verify_record  # type: ignore[attr-defined]

        def counted(block: Any, signature: Any) -> Any:
            self.calls += 1
            return inner(block, signature)

        monkeypatch.setattr(checks_module, "verify_record", counted)


def test_answers_equal_decode_envelope_and_repeats_are_not_checked_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    counted = CountingVerify(monkeypatch)
    checks = EnvelopeChecks()
    good = records(8)
    bad = [*good[:7], RawRecord(good[7].block, good[0].signature)]  # forged last signature
    good_envelope, bad_envelope = encode_envelope(good), encode_envelope(bad)

    assert checks.check(good_envelope) == decode_envelope(good_envelope)
    assert counted.calls == 8
    with pytest.raises(InvalidEnvelope) as first:
        checks.check(bad_envelope)
    assert counted.calls == 9  # the seven good records were remembered; only the bad one checked
    for _ in range(50):  # the same bad bytes again: remembered, with the same reason
        with pytest.raises(InvalidEnvelope) as again:
            checks.check(bad_envelope)
        assert again.value.message == first.value.message
    assert counted.calls == 9
    with pytest.raises(InvalidEnvelope) as direct:
        decode_envelope(bad_envelope)
    assert direct.value.message == first.value.message
    # a new envelope around the same good records: only its new record is verified
    shuffled = encode_envelope([*reversed(good), *records(1, "new")])
    assert len(checks.check(shuffled)) == 9
    assert counted.calls == 10
    assert checks.remembered >= 50 + 7 + 8


def test_memories_are_bounded_by_count_and_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    counted = CountingVerify(monkeypatch)
    checks = EnvelopeChecks(rejected=2, records=4)
    many = records(6)
    checks.check(encode_envelope(many))
    assert len(checks._records) == 4
    checks.check(encode_envelope(many[:2]))  # the two oldest were forgotten: checked again
    assert counted.calls == 8
    small = EnvelopeChecks(record_bytes=2 * len(many[0].block))
    small.check(encode_envelope(many))
    assert len(small._records) <= 2
    for junk in (b"\x00", b"\x01", b"\x02"):
        with pytest.raises(InvalidEnvelope):
            checks.check(junk)
    assert len(checks._rejected) == 2


def test_malformed_records_are_refused_with_the_reason() -> None:
    checks = EnvelopeChecks()
    bad: list[dict[str, Any]] = [{"block": "text", "sig": b"x"}, {"block": b"\x00", "sig": 5}]
    for record in bad:
        with pytest.raises(InvalidEnvelope, match="byte strings"):
            checks.check(dag_cbor.encode({"v": 1, "facts": [record]}))
