"""The same assertions against the in-memory ledger and the web3 adapter on a real anvil chain
running the compiled KnowledgeRegistry."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import pytest
from multiformats import CID

from contracts.registry import RegistryClient, RegistryLedger, deploy_registry
from node.errors import ChainError, NonceTooLow
from node.facts import make_fact
from node.memory import MemoryLedger
from node.merkle import build_tree
from node.ports import Ledger, MinedTx
from node.signing import SigningKey
from tests.helpers import ANVIL_KEYS, Anvil, free_port
from tests.p2p_nodes import wait_until


class Control(Protocol):
    def set_automine(self, on: bool) -> None: ...

    def mine(self) -> None: ...

    def drop_pending(self) -> None: ...


class MemoryControl:
    def __init__(self, ledger: MemoryLedger) -> None:
        self.ledger = ledger

    def set_automine(self, on: bool) -> None:
        self.ledger.automine = on

    def mine(self) -> None:
        self.ledger.mine()

    def drop_pending(self) -> None:
        self.ledger.drop_pending()


class AnvilControl:
    def __init__(self, anvil: Anvil) -> None:
        self.anvil = anvil

    def set_automine(self, on: bool) -> None:
        self.anvil.rpc("evm_setAutomine", on)

    def mine(self) -> None:
        self.anvil.rpc("evm_mine")

    def drop_pending(self) -> None:
        self.anvil.rpc("anvil_dropAllTransactions")


@pytest.fixture(params=["memory", "anvil"])
def ledger(request: pytest.FixtureRequest) -> Iterator[tuple[Ledger, Control]]:
    if request.param == "memory":
        memory = MemoryLedger()
        yield memory, MemoryControl(memory)
        return
    anvil = Anvil().start()
    key = SigningKey(bytes.fromhex(ANVIL_KEYS[0][2:]))
    real = RegistryLedger(anvil.url, deploy_registry(anvil.url, key), key)
    try:
        yield real, AnvilControl(anvil)
    finally:
        real.close()
        anvil.stop()


def tree_of(n: int, tag: str) -> tuple[list[bytes], bytes, list[list[bytes]]]:
    cids = [bytes(CID.decode(make_fact(f"{tag} {i}").cid)) for i in range(n)]
    tree = build_tree(cids)
    return cids, tree.root, [tree.proof(c) for c in cids]


def mined_receipt(chain: Ledger, tx_hash: str) -> MinedTx:
    """The receipt once the transaction is mined: anvil answers eth_sendRawTransaction before
    its automine has sealed the block, so a busy machine can ask too early."""
    wait_until(lambda: chain.receipt(tx_hash) is not None, 120, f"a receipt for {tx_hash}")
    mined = chain.receipt(tx_hash)
    assert mined is not None
    return mined


def test_anchor_receipt_record_and_verify(ledger: tuple[Ledger, Control]) -> None:
    chain, _ = ledger
    cids, root, proofs = tree_of(5, "congruent")
    assert chain.get_anchor(root) is None
    assert not chain.verify_fact(cids[0], proofs[0], root)  # not anchored yet
    nonce = chain.next_nonce()
    tx = chain.sign_anchor(root, "bafyreimanifest", 5, nonce)
    chain.broadcast(tx.raw)
    chain.broadcast(tx.raw)  # a known transaction again is not an error, pending or mined
    mined = mined_receipt(chain, tx.tx_hash)
    assert mined.success
    anchor = chain.get_anchor(root)
    assert anchor is not None
    assert (anchor.submitter, anchor.count, anchor.manifest_cid) == (
        chain.account,
        5,
        "bafyreimanifest",
    )
    assert anchor.block_number == mined.block_number <= chain.head()
    assert chain.find_anchor_tx(root, anchor.block_number) == tx.tx_hash
    assert chain.next_nonce() == nonce + 1
    for cid, proof in zip(cids, proofs, strict=True):
        assert chain.verify_fact(cid, proof, root)
    assert not chain.verify_fact(cids[0], proofs[1], root)


def test_second_anchor_of_a_root_reverts(ledger: tuple[Ledger, Control]) -> None:
    chain, _ = ledger
    _, root, _ = tree_of(2, "twice")
    first = chain.sign_anchor(root, "m", 2, chain.next_nonce())
    chain.broadcast(first.raw)
    mined_receipt(chain, first.tx_hash)
    again = chain.sign_anchor(root, "m", 2, chain.next_nonce())
    chain.broadcast(again.raw)
    mined = mined_receipt(chain, again.tx_hash)
    assert not mined.success
    anchor = chain.get_anchor(root)
    assert anchor is not None and chain.find_anchor_tx(root, anchor.block_number) == first.tx_hash


def test_used_nonce_is_refused(ledger: tuple[Ledger, Control]) -> None:
    chain, _ = ledger
    _, root, _ = tree_of(1, "nonce a")
    _, other, _ = tree_of(1, "nonce b")
    nonce = chain.next_nonce()
    first = chain.sign_anchor(root, "m", 1, nonce)
    chain.broadcast(first.raw)
    mined_receipt(chain, first.tx_hash)  # mined: the nonce is used (pending, it is a replacement)
    with pytest.raises(NonceTooLow):
        chain.broadcast(chain.sign_anchor(other, "m", 1, nonce).raw)


def test_pending_transactions_mine_later_or_are_dropped(ledger: tuple[Ledger, Control]) -> None:
    chain, control = ledger
    control.set_automine(False)
    _, root, _ = tree_of(3, "pending")
    tx = chain.sign_anchor(root, "m", 3, chain.next_nonce())
    chain.broadcast(tx.raw)
    assert chain.receipt(tx.tx_hash) is None and chain.get_anchor(root) is None
    assert chain.next_nonce() == tx.nonce + 1  # counts the pending one
    control.drop_pending()
    assert chain.next_nonce() == tx.nonce
    chain.broadcast(tx.raw)  # the same bytes can be sent again
    control.mine()
    mined = mined_receipt(chain, tx.tx_hash)
    assert mined.success and chain.get_anchor(root) is not None


def test_replacement_with_higher_fees_has_a_new_hash(ledger: tuple[Ledger, Control]) -> None:
    chain, control = ledger
    control.set_automine(False)
    _, root, _ = tree_of(2, "bump")
    nonce = chain.next_nonce()
    first = chain.sign_anchor(root, "m", 2, nonce)
    bumped = chain.sign_anchor(root, "m", 2, nonce, 1.5)
    assert first.tx_hash != bumped.tx_hash
    chain.broadcast(first.raw)
    with pytest.raises(ChainError):  # same nonce, same fees: refused
        chain.broadcast(chain.sign_anchor(build_tree([b"x"]).root, "m", 1, nonce).raw)
    chain.broadcast(bumped.raw)
    control.mine()
    anchor = chain.get_anchor(root)
    assert anchor is not None
    assert chain.find_anchor_tx(root, anchor.block_number) == bumped.tx_hash
    assert chain.next_nonce() == nonce + 1


def test_unreachable_chain_is_a_chain_error() -> None:
    dead = RegistryClient(f"http://127.0.0.1:{free_port()}", "0x" + "ab" * 20, timeout=2)
    with pytest.raises(ChainError):
        dead.get_anchor(bytes(32))
    memory = MemoryLedger()
    memory.down = True
    with pytest.raises(ChainError):
        memory.get_anchor(bytes(32))
