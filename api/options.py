"""Options of the HTTP layer (the node's own settings live in node.settings)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ApiOptions:
    max_body_bytes: int = 2 * 1024 * 1024
    body_timeout: float = 30.0
    max_car_bytes: int = 1024**3
