"""The OpenAPI document: what the API really accepts and answers, in one place.

FastAPI documents a 422 for every validated request, which this API never sends (validation
errors are 400, see ``api.errors``), and knows nothing of the answers the guards in front of
the routes give. ``install_openapi`` post-processes the generated document once, on the first
request for it:

- ``422`` becomes ``400`` with the API's error body, on every operation that takes input;
- every operation documents what any request may meet: ``429`` (rate limits), ``503`` with
  ``Retry-After`` (ingest queue or connections full, node starting or storage failing),
  ``401`` where a key or a signature can be required; body-taking operations also ``408``
  (body too slow), ``413`` (too large) and ``415`` (not JSON);
- operations with a ``{cid}`` path document ``404``;
- the query vector's length is the loaded model's dimension, and its ``model_cid`` the loaded
  model's CID.

Invariant: a status the API can send for an operation is listed for it (schemathesis checks
this against the real server in ``tests/integration/test_schemathesis.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

_ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}
_BODY_METHODS = {"post", "put", "patch"}
_ANY_REQUEST = {
    "429": "Over the rate limit; retry after Retry-After seconds.",
    "503": "Busy (ingest queue or connections full: retry after Retry-After seconds), "
    "starting, or storage failing.",
}
_BODY_ERRORS = {
    "400": "Invalid input; the error says what is wrong.",
    "408": "The body did not arrive in time.",
    "413": "The body is over the size limit.",
    "415": "The body is not of the documented media type.",
}
_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before retrying.",
        "schema": {"type": "integer"},
    }
}


def install_openapi(
    app: FastAPI,
    vector_dimension: Callable[[], int | None],
    model_cid: Callable[[], str | None] = lambda: None,
) -> None:
    """Replace ``app.openapi`` with the post-processed document (built once, then cached)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                summary=app.summary,
                routes=app.routes,
            )
            _fix(schema, vector_dimension(), model_cid())
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _fix(schema: dict[str, Any], dimension: int | None, model_cid: str | None = None) -> None:
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            _fix_operation(path, method, operation)
    if dimension is not None and "QueryIn" in components:
        vector = components["QueryIn"]["properties"]["vector"]
        for option in vector.get("anyOf", [vector]):
            if option.get("type") == "array":
                option["minItems"] = option["maxItems"] = dimension
    if model_cid is not None and "QueryIn" in components:
        given = components["QueryIn"]["properties"]["model_cid"]
        for option in given.get("anyOf", [given]):
            if option.get("type") == "string":
                option["enum"] = [model_cid]


def _fix_operation(path: str, method: str, operation: dict[str, Any]) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    had_validation = responses.pop("422", None) is not None
    errors: dict[str, str] = dict(_ANY_REQUEST)
    if had_validation or operation.get("parameters"):
        errors["400"] = _BODY_ERRORS["400"]
    # writes need a key when keys are set, reads too without public reads; a fact needs a
    # valid contributor signature when signatures are required
    errors["401"] = "An API key or a contributor signature is missing or wrong."
    if method in _BODY_METHODS:
        errors.update(_BODY_ERRORS)
    if "{cid}" in path:
        errors["404"] = "No such fact or block on this node."
    if path.startswith("/v1/peers"):
        errors["404"] = "Networking is off on this node."
    for code, description in errors.items():
        entry = responses.setdefault(code, {"description": description})
        entry.setdefault("content", {"application/json": {"schema": _ERROR_REF}})
        if code in {"429", "503"}:
            entry.setdefault("headers", _RETRY_AFTER)
