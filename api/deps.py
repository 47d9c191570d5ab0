"""FastAPI dependencies.

Invariant: every dependency is ``async def``. FastAPI runs a plain ``def`` dependency in its
thread pool, one thread hop per request (~0.1 ms of wake-up latency on the query path, and a
GIL hand-over); these only read ``app.state``, which never blocks.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from node.errors import Unavailable
from node.service import KnowledgeNode


async def get_node(request: Request) -> KnowledgeNode:
    return get_node_of(request.app)


def get_node_of(app: Any) -> KnowledgeNode:
    node: KnowledgeNode | None = getattr(app.state, "node", None)
    if node is None:
        raise Unavailable("the node is not running")
    return node


NodeDep = Annotated[KnowledgeNode, Depends(get_node)]
