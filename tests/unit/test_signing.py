"""EIP-191 contributor signatures, key files, and how the node accepts submissions."""

from __future__ import annotations

import random
import stat
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct

from index.sqlite_catalog import SqliteCatalog
from node.assembly import assemble
from node.errors import InvalidFact, InvalidSignature, SignatureMismatch, SignatureRequired
from node.facts import make_fact
from node.memory import HashEmbedder, MemoryContentStore, MemoryKeywordIndex, MemoryVectorIndex
from node.service import KnowledgeNode, NodeOptions
from node.signing import (
    SigningKey,
    check_signature,
    load_or_create_key,
    normalize_signature,
    read_key_file,
    recover_signer,
    signature_valid,
)
from node.submissions import parse_submission

ALICE = SigningKey(
    bytes.fromhex("59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d")
)
BOB = SigningKey.generate()
N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def signed_item(key: SigningKey, text: str = "The Moon orbits the Earth.") -> dict[str, object]:
    fact = make_fact(text, {"lang": "en"}, key.address)
    return {
        "text": text,
        "metadata": {"lang": "en"},
        "contributor": key.address,
        "signature": key.sign_cid(fact.cid),
    }


def test_signature_is_what_a_wallet_produces() -> None:
    cid = make_fact("x", None, ALICE.address).cid
    wallet = Account.sign_message(encode_defunct(text=cid), private_key=ALICE.private_key)
    assert ALICE.sign_cid(cid) == "0x" + bytes(wallet.signature).hex()
    assert ALICE.address == "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"  # anvil account 1
    assert recover_signer(cid, ALICE.sign_cid(cid)) == ALICE.address
    check_signature(cid, ALICE.address, ALICE.sign_cid(cid))


def test_v_0_or_1_is_accepted_and_normalised() -> None:
    cid = make_fact("x", None, ALICE.address).cid
    sig = ALICE.sign_cid(cid)
    low_v = sig[:-2] + f"{int(sig[-2:], 16) - 27:02x}"
    assert normalize_signature(low_v) == sig
    assert recover_signer(cid, low_v) == ALICE.address


@pytest.mark.parametrize(
    ("signature", "message"),
    [
        ("deadbeef", "0x-prefixed"),
        ("0xzz" + "00" * 64, "hex"),
        ("0x" + "00" * 64, "65 bytes"),
        ("0x" + "11" * 64 + "05", "v must be"),
        (123, "0x-prefixed"),
    ],
)
def test_malformed_signatures_are_400(signature: object, message: str) -> None:
    cid = make_fact("x", None, ALICE.address).cid
    with pytest.raises(InvalidSignature, match=message):
        check_signature(cid, ALICE.address, signature)  # type: ignore[arg-type]


def test_high_s_copy_of_a_signature_is_refused() -> None:
    cid = make_fact("x", None, ALICE.address).cid
    raw = bytes.fromhex(ALICE.sign_cid(cid)[2:])
    s = int.from_bytes(raw[32:64], "big")
    flipped = raw[:32] + (N - s).to_bytes(32, "big") + bytes([55 - raw[64]])
    with pytest.raises(InvalidSignature, match="EIP-2"):
        recover_signer(cid, "0x" + flipped.hex())


def test_signature_of_another_fact_or_signer_is_401() -> None:
    cid = make_fact("x", None, ALICE.address).cid
    other = make_fact("y", None, ALICE.address).cid
    with pytest.raises(SignatureMismatch):
        check_signature(cid, ALICE.address, ALICE.sign_cid(other))
    with pytest.raises(SignatureMismatch):
        check_signature(cid, ALICE.address, BOB.sign_cid(cid))
    assert not signature_valid(cid, ALICE.address, BOB.sign_cid(cid))
    assert not signature_valid(cid, None, None)


def test_key_file_is_created_0600_and_reloaded(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "operator.key"
    key = load_or_create_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_key(path) == key
    assert read_key_file(path).address == key.address
    bare = tmp_path / "bare.key"
    bare.write_text("0x" + ALICE.private_key.hex() + "\n")
    assert read_key_file(bare).address == ALICE.address


def test_parse_submission_checks_the_signature() -> None:
    fact, signature = parse_submission(signed_item(ALICE))
    assert fact.contributor == ALICE.address and signature is not None
    forged = {**signed_item(ALICE), "signature": BOB.sign_cid(fact.cid)}
    with pytest.raises(SignatureMismatch):
        parse_submission(forged)
    claims_bob = {**signed_item(ALICE), "contributor": BOB.address}
    with pytest.raises(SignatureMismatch, match="not by the record's contributor"):
        parse_submission(claims_bob)
    with pytest.raises(InvalidSignature, match="needs the contributor"):
        parse_submission({"text": "x", "signature": ALICE.sign_cid(fact.cid)})
    with pytest.raises(InvalidFact, match="checksummed"):
        parse_submission({**signed_item(ALICE), "contributor": ALICE.address.lower()})


def build(tmp_path: Path, require: bool) -> KnowledgeNode:
    return assemble(
        SqliteCatalog(tmp_path / f"c{require}.sqlite3"),
        MemoryVectorIndex(384),
        HashEmbedder(),
        MemoryContentStore(),
        NodeOptions(data_dir=tmp_path, require_signatures=require),
        operator=BOB,
        keywords=MemoryKeywordIndex(),
    )


def test_unsigned_submissions_are_signed_by_the_operator(tmp_path: Path) -> None:
    node = build(tmp_path, require=False)
    signed = node.accept({"text": "Paris is in France."})
    assert signed.contributor == BOB.address
    assert signed.signature is not None
    check_signature(signed.cid, BOB.address, signed.signature)
    mine = node.accept(signed_item(ALICE))
    assert mine.contributor == ALICE.address
    with pytest.raises(SignatureRequired, match="must carry"):
        node.accept({"text": "x", "contributor": ALICE.address})


def test_required_signatures_refuse_unsigned(tmp_path: Path) -> None:
    node = build(tmp_path, require=True)
    with pytest.raises(SignatureRequired, match="requires signed"):
        node.accept({"text": "Paris is in France."})
    assert node.accept(signed_item(ALICE)).contributor == ALICE.address


def _eth_account_signer(cid: str, signature: str) -> str | None:
    """What eth_account recovers (None: it refuses), the reference for the direct path."""
    raw = bytes.fromhex(signature[2:])
    try:
        return str(Account.recover_message(encode_defunct(text=cid), signature=raw))
    except Exception:
        return None


def test_direct_recovery_answers_as_eth_account_does() -> None:
    import random

    rng = random.Random(15)
    cid = make_fact("Recovery is checked against eth_account.", None, ALICE.address).cid
    good = ALICE.sign_cid(cid)
    r, s = int(good[2:66], 16), int(good[66:130], 16)
    cases = [good, BOB.sign_cid(cid), good[:-2] + "1c", good[:-2] + "00", good[:-2] + "01"]
    for r_edge in (0, 1, N - 1, N, 2**256 - 1):
        cases.append("0x" + r_edge.to_bytes(32, "big").hex() + good[66:])
    for s_edge in (0, 1, N // 2):
        cases.append("0x" + good[2:66] + s_edge.to_bytes(32, "big").hex() + good[-2:])
    for _ in range(300):  # random r and low s: some points exist, some do not
        r_rand = rng.randrange(2**256) if rng.random() < 0.1 else rng.randrange(1, N)
        s_rand = rng.randrange(1, N // 2)
        cases.append(f"0x{r_rand:064x}{s_rand:064x}{rng.choice((27, 28)):02x}")
    cases.append(f"0x{r:064x}{s:064x}{good[-2:]}")
    recovered = 0
    for signature in cases:
        expected = _eth_account_signer(cid, signature)
        try:
            got: str | None = recover_signer(cid, signature)
        except InvalidSignature:
            got = None
        assert got == expected, signature
        recovered += got is not None
        if got is not None:
            check_signature(cid, got, signature)
    assert recovered > 100  # most random (r, s) recover some address


def test_direct_signing_and_addresses_are_eth_accounts() -> None:
    # coincurve signs deterministically (RFC 6979) as eth_account does: byte-equal signatures
    rng = random.Random(16)
    for n in range(50):
        key = SigningKey(rng.randbytes(32)) if n else SigningKey.generate()
        account = Account.from_key(key.private_key)
        assert key.address == account.address
        text = make_fact(f"fact {n}", None, key.address).cid
        expected = Account.sign_message(encode_defunct(text=text), private_key=key.private_key)
        assert key.sign_cid(text) == "0x" + bytes(expected.signature).hex()
        assert recover_signer(text, key.sign_cid(text)) == key.address
