"""Options of the HTTP layer (the node's own settings live in node.settings)."""

from __future__ import annotations

from dataclasses import dataclass, field

from api.security import AccessPolicy


@dataclass(frozen=True, slots=True)
class ApiOptions:
    max_body_bytes: int = 2 * 1024 * 1024
    body_timeout: float = 30.0
    max_car_bytes: int = 1024**3
    access: AccessPolicy = field(default_factory=AccessPolicy)
    cors_origins: tuple[str, ...] = ()
    #: Seconds the node may spend getting queued facts anchored when it stops.
    shutdown_timeout: float = 0.0
    #: Serve the MCP tools at /mcp; contribute_fact answers only when mcp_contribute is set.
    #: Serve the web page at / (and its files at /static).
    web: bool = True
    #: Block explorer URL for a transaction, with {tx}, e.g. https://etherscan.io/tx/{tx}.
    explorer_tx_url: str | None = None
    mcp: bool = True
    mcp_contribute: bool = False
    #: The address the server listens on (loopback keeps MCP's DNS-rebinding protection on).
    host: str = "127.0.0.1"
