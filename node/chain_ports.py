"""Ports to a chain: the registry as the node uses it (``Ledger``) and what the chain answers.
Re-exported by ``node.ports``; implemented by ``contracts.registry`` and ``node.memory``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class OnChainAnchor:
    """A registry's record of an anchored root."""

    root: bytes
    submitter: str
    block_number: int
    timestamp: int
    count: int
    manifest_cid: str


@dataclass(frozen=True, slots=True)
class AnchorEvent:
    """An ``Anchored`` log of the registry."""

    root: bytes
    submitter: str
    manifest_cid: str
    count: int
    tx_hash: str
    block_number: int


@dataclass(frozen=True, slots=True)
class SignedTx:
    tx_hash: str
    raw: bytes
    nonce: int


@dataclass(frozen=True, slots=True)
class MinedTx:
    tx_hash: str
    success: bool
    block_number: int


class Ledger(Protocol):
    """The KnowledgeRegistry on some EVM chain, used with the operator's account.

    Blocking (an RPC round trip per call): the service calls it from worker threads. Every
    method raises ``ChainError`` when the chain cannot be reached or refuses a call;
    ``broadcast`` raises ``NonceTooLow`` when the nonce was already used.
    """

    @property
    def chain_id(self) -> int: ...

    @property
    def registry(self) -> str: ...

    @property
    def account(self) -> str: ...

    @property
    def rpc_url(self) -> str: ...

    def get_anchor(self, root: bytes) -> OnChainAnchor | None: ...

    def next_nonce(self) -> int:
        """The account's next nonce counting pending transactions."""
        ...

    def sign_anchor(
        self, root: bytes, manifest_cid: str, count: int, nonce: int, fee_bump: float = 1.0
    ) -> SignedTx: ...

    def broadcast(self, raw: bytes) -> None:
        """Send a signed transaction; sending one the chain already knows is not an error."""
        ...

    def receipt(self, tx_hash: str) -> MinedTx | None: ...

    def head(self) -> int:
        """The latest block number."""
        ...

    def find_anchor_tx(self, root: bytes, block_number: int) -> str | None:
        """The hash of the transaction that emitted ``Anchored(root)`` in that block."""
        ...

    def verify_fact(self, cid_bytes: bytes, proof: Sequence[bytes], root: bytes) -> bool:
        """The registry's own ``verifyFact`` view."""
        ...

    def anchored_events(self, from_block: int, to_block: int) -> list[AnchorEvent]:
        """Every ``Anchored`` event in the block range (inclusive), in chain order."""
        ...

    def close(self) -> None: ...
