"""How the web3 ledger reads a client's answer to a resent transaction (contracts/registry.py).
Under load, anvil answered a resend of a pending anchor with "transaction already imported",
which was taken for a failure (the congruence test failed once beside a CPU hog)."""

from __future__ import annotations

import pytest

from contracts.registry import already_known


@pytest.mark.parametrize(
    "message",
    [
        "{'code': -32000, 'message': 'already known'}",  # geth, erigon
        "{'code': -32003, 'message': 'transaction already imported'}",  # anvil
        "Transaction with the same hash was already imported.",  # OpenEthereum
        "Known transaction",  # Besu
        "AlreadyKnown",  # Nethermind
    ],
)
def test_a_transaction_the_node_has_is_a_successful_resend(message: str) -> None:
    assert already_known(message)


@pytest.mark.parametrize(
    "message",
    [
        "nonce too low",
        "insufficient funds for gas * price + value",
        "replacement transaction underpriced",
    ],
)
def test_other_errors_are_not(message: str) -> None:
    assert not already_known(message)
