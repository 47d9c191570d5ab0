"""The web3 adapter of the ``Ledger`` port: the KnowledgeRegistry on any EVM chain.

Transactions are signed locally with the operator key (EIP-1559 fees, explicit nonce and gas)
and sent raw, so the node controls nonces and can resend byte-identical transactions after a
crash. Every RPC failure becomes ``ChainError`` at this boundary.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar, cast

import requests
from eth_account import Account
from eth_utils.address import to_checksum_address
from web3 import Web3
from web3.exceptions import TransactionNotFound, Web3Exception, Web3RPCError

from node.errors import ChainError, NonceTooLow
from node.ports import AnchorEvent, MinedTx, OnChainAnchor, SignedTx
from node.signing import PYTHON_RECURSION_LIMIT, SigningKey

sys.setrecursionlimit(PYTHON_RECURSION_LIMIT)  # web3 imports py_ecc, which raised it: see there

log = logging.getLogger(__name__)

ARTIFACT_PATH = Path(__file__).with_name("KnowledgeRegistry.json")
ANCHORED_TOPIC = "0x" + Web3.keccak(text="Anchored(bytes32,address,string,uint32)").hex()
_ZERO = "0x" + "00" * 20
_FALLBACK_GAS = 250_000
T = TypeVar("T")


def load_artifact() -> dict[str, Any]:
    return cast(dict[str, Any], json.loads(ARTIFACT_PATH.read_text()))


@contextmanager
def _rpc(what: str) -> Iterator[None]:
    try:
        yield
    except (requests.RequestException, Web3Exception, OSError) as exc:
        raise ChainError(f"chain RPC failed ({what}): {exc}") from exc


def _connect(rpc_url: str, timeout: float) -> Web3:
    return Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": timeout}))


class RegistryClient:
    """Read-only access to a registry: enough to verify provenance (no key needed)."""

    def __init__(self, rpc_url: str, registry: str, *, timeout: float = 10.0) -> None:
        self._rpc_url = rpc_url
        self._w3 = _connect(rpc_url, timeout)
        try:
            self._registry = to_checksum_address(registry)
        except ValueError as exc:
            raise ChainError(f"registry address {registry!r} is not an address") from exc
        self._contract = self._w3.eth.contract(address=self._registry, abi=load_artifact()["abi"])

    @property
    def rpc_url(self) -> str:
        return self._rpc_url

    @property
    def registry(self) -> str:
        return str(self._registry)

    @cached_property
    def chain_id(self) -> int:
        with _rpc("eth_chainId"):
            return int(self._w3.eth.chain_id)

    def has_code(self) -> bool:
        with _rpc("eth_getCode"):
            return len(self._w3.eth.get_code(self._registry)) > 0

    def get_anchor(self, root: bytes) -> OnChainAnchor | None:
        """The registry's storage says who anchored ``root`` and in which block; the manifest
        CID and count come from the ``Anchored`` event of that block (the registry keeps them
        out of storage: 1 slot per root instead of 5)."""
        with _rpc("getAnchor"):
            submitter, block, timestamp = self._contract.functions.getAnchor(root).call()
        if submitter == _ZERO or int(submitter, 16) == 0:
            return None
        event = self._anchored_event(root, int(block))
        if event is None:
            raise ChainError(
                f"registry {self._registry} stores root 0x{root.hex()} at block {block} "
                "but that block has no Anchored event for it"
            )
        return OnChainAnchor(
            root, str(submitter), int(block), int(timestamp), event.count, event.manifest_cid
        )

    def _anchored_event(self, root: bytes, block_number: int) -> AnchorEvent | None:
        with _rpc("eth_getLogs"):
            logs = self._contract.events.Anchored().get_logs(
                from_block=block_number,
                to_block=block_number,
                argument_filters={"root": root},
            )
        events = [_event(e) for e in logs if bytes(e["args"]["root"]) == root]
        return events[0] if events else None

    def verify_fact(self, cid_bytes: bytes, proof: Sequence[bytes], root: bytes) -> bool:
        with _rpc("verifyFact"):
            return bool(self._contract.functions.verifyFact(cid_bytes, list(proof), root).call())

    def head(self) -> int:
        with _rpc("eth_blockNumber"):
            return int(self._w3.eth.block_number)

    def receipt(self, tx_hash: str) -> MinedTx | None:
        try:
            with _rpc("eth_getTransactionReceipt"):
                got = self._w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
        except ChainError as exc:
            if isinstance(exc.__cause__, TransactionNotFound):
                return None
            raise
        return MinedTx(tx_hash, int(got["status"]) == 1, int(got["blockNumber"]))

    def find_anchor_tx(self, root: bytes, block_number: int) -> str | None:
        event = self._anchored_event(root, block_number)
        return None if event is None else event.tx_hash

    def anchored_events(self, from_block: int, to_block: int) -> list[AnchorEvent]:
        with _rpc("eth_getLogs"):
            logs = self._contract.events.Anchored().get_logs(
                from_block=from_block, to_block=to_block
            )
        return [_event(e) for e in logs]

    def close(self) -> None:
        provider = self._w3.provider
        with _rpc("close"):
            if hasattr(provider, "disconnect"):
                provider.disconnect()


class RegistryLedger(RegistryClient):
    """The ``Ledger`` port: reads plus anchoring transactions signed with ``key``."""

    def __init__(
        self,
        rpc_url: str,
        registry: str,
        key: SigningKey,
        *,
        timeout: float = 10.0,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(rpc_url, registry, timeout=timeout)
        self._key = key
        self._account = key.address
        self._on_close = on_close

    @property
    def account(self) -> str:
        return self._account

    def next_nonce(self) -> int:
        with _rpc("eth_getTransactionCount"):
            return int(self._w3.eth.get_transaction_count(self._account, "pending"))  # type: ignore[arg-type]

    def sign_anchor(
        self, root: bytes, manifest_cid: str, count: int, nonce: int, fee_bump: float = 1.0
    ) -> SignedTx:
        data = self._contract.encode_abi("anchor", args=[root, manifest_cid, count])
        with _rpc("fees"):
            base = int(self._w3.eth.get_block("latest")["baseFeePerGas"])
            tip = int(self._w3.eth.max_priority_fee)
        try:
            with _rpc("eth_estimateGas"):
                gas = int(
                    self._w3.eth.estimate_gas(
                        {"from": self._account, "to": self._registry, "data": data}
                    )
                    * 1.2
                )
        except ChainError as exc:
            log.debug("gas estimate failed (%s); using %d", exc.message, _FALLBACK_GAS)
            gas = _FALLBACK_GAS
        tip = max(int(tip * fee_bump), 1)
        tx = {
            "type": 2,
            "chainId": self.chain_id,
            "nonce": nonce,
            "to": self._registry,
            "data": data,
            "value": 0,
            "gas": gas,
            "maxPriorityFeePerGas": tip,
            "maxFeePerGas": int((2 * base) * fee_bump) + tip,
        }
        signed = Account.sign_transaction(tx, self._key.private_key)
        return SignedTx("0x" + bytes(signed.hash).hex(), bytes(signed.raw_transaction), nonce)

    def broadcast(self, raw: bytes) -> None:
        try:
            with _rpc("eth_sendRawTransaction"):
                self._w3.eth.send_raw_transaction(raw)
        except ChainError as exc:
            text = str(exc.__cause__).lower()
            if isinstance(exc.__cause__, Web3RPCError) and already_known(text):
                return
            if "nonce too low" in text or "nonce is too low" in text:
                if self.receipt("0x" + Web3.keccak(raw).hex()) is not None:
                    return  # this very transaction is already mined
                raise NonceTooLow(exc.message) from exc.__cause__
            raise

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self._on_close is not None:
                self._on_close()


#: How clients say "this transaction is in my pool already": geth and erigon "already known",
#: anvil "transaction already imported", OpenEthereum "...was already imported", Besu "Known
#: transaction", Nethermind "AlreadyKnown".
_ALREADY_KNOWN = ("already known", "already imported", "known transaction", "alreadyknown")


def already_known(message: str) -> bool:
    """Whether an ``eth_sendRawTransaction`` error says the node has the transaction already
    (resending it is then a success: it is pending or mined)."""
    text = message.lower()
    return any(phrase in text for phrase in _ALREADY_KNOWN)


def deploy_registry(rpc_url: str, key: SigningKey, *, timeout: float = 30.0) -> str:
    """Deploy KnowledgeRegistry from ``key``'s account; the new contract's address."""
    w3 = _connect(rpc_url, timeout)
    artifact = load_artifact()
    factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    with _rpc("deploy"):
        tx = factory.constructor().build_transaction(
            {
                "from": key.address,
                "nonce": w3.eth.get_transaction_count(key.address, "pending"),  # type: ignore[arg-type]
                "chainId": w3.eth.chain_id,
            }
        )
        signed = Account.sign_transaction(tx, key.private_key)
        tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
        receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=timeout)
    if int(receipt["status"]) != 1 or not receipt["contractAddress"]:
        raise ChainError(f"registry deployment failed in tx 0x{bytes(tx_hash).hex()}")
    address = str(receipt["contractAddress"])
    log.info("deployed KnowledgeRegistry at %s on %s", address, rpc_url)
    return address


def _event(entry: Any) -> AnchorEvent:
    args = entry["args"]
    return AnchorEvent(
        root=bytes(args["root"]),
        submitter=str(args["submitter"]),
        manifest_cid=str(args["manifestCid"]),
        count=int(args["count"]),
        tx_hash="0x" + bytes(entry["transactionHash"]).hex(),
        block_number=int(entry["blockNumber"]),
    )
