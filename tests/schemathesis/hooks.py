"""Schemathesis hooks for the knowhub API (loaded through SCHEMATHESIS_HOOKS).

The CAR import body is ``application/vnd.ipld.car``, bytes schemathesis cannot serialize on its
own: send what it generated as raw bytes.
"""

from __future__ import annotations

from typing import Any

import schemathesis


@schemathesis.serializer("application/vnd.ipld.car")
def car_bytes(_ctx: Any, value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    return str(value).encode("utf-8", "surrogatepass")
