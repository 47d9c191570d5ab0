"""FastAPI dependencies."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from node.errors import Unavailable
from node.service import KnowledgeNode


def get_node(request: Request) -> KnowledgeNode:
    return get_node_of(request.app)


def get_node_of(app: Any) -> KnowledgeNode:
    node: KnowledgeNode | None = getattr(app.state, "node", None)
    if node is None:
        raise Unavailable("the node is not running")
    return node


NodeDep = Annotated[KnowledgeNode, Depends(get_node)]
