"""One error tree for the whole node.

Adapters map library errors into these at their boundary (``raise ... from exc``); the API
maps these to HTTP status codes in exactly one place (``api.errors``).
"""

from __future__ import annotations


class KnowhubError(Exception):
    """Base of every error the node raises on purpose."""

    code = "error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        message = printable(message)
        super().__init__(message)
        self.message = message
        self.field = None if field is None else printable(field)


def printable(text: str) -> str:
    """``text`` with every lone surrogate replaced by U+FFFD, so that an error quoting hostile
    input (a metadata key, a filter value) can always be encoded as UTF-8 JSON."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


class InvalidInput(KnowhubError):
    """The caller sent something the node will not accept."""

    code = "invalid_input"


class InvalidFact(InvalidInput):
    code = "invalid_fact"


class InvalidCid(InvalidInput):
    code = "invalid_cid"


class InvalidQuery(InvalidInput):
    code = "invalid_query"


class InvalidFilter(InvalidQuery):
    code = "invalid_filter"


class ModelMismatch(InvalidQuery):
    """A query vector made with another model than the node's (its ``model_cid`` differs from
    the node's, ``node.model_identity``): 400, nothing is searched."""

    code = "model_mismatch"


class InvalidSignature(InvalidInput):
    """A signature that is malformed or recovers to no address (400)."""

    code = "invalid_signature"


class Unauthorized(KnowhubError):
    """The request needs a valid signature or credential it did not carry (401)."""

    code = "unauthorized"


class SignatureRequired(Unauthorized):
    code = "signature_required"


class SignatureMismatch(Unauthorized):
    """A well-formed signature by someone other than the record's contributor."""

    code = "signature_mismatch"


class NotContributor(Unauthorized):
    """A correction (a tombstone) signed by someone other than the fact's contributor (403):
    only a fact's contributor can take it back."""

    code = "not_contributor"


class NotFound(KnowhubError):
    code = "not_found"


class Hidden(KnowhubError):
    """This node's operator hides the fact (451): it is not served, searched or forwarded here,
    though other nodes may still hold it."""

    code = "hidden"


class CollectionNotHeld(KnowhubError):
    """This node does not hold the fact's collection (409): it refuses the fact and stores
    nothing; the message names the collections it holds (``node.collections``) and
    ``holders`` the peers that advertise the collection (the peer directory)."""

    code = "collection_not_held"

    def __init__(
        self, message: str, *, holders: tuple[str, ...] = (), field: str | None = None
    ) -> None:
        super().__init__(message, field=field)
        self.holders = holders


class Revoked(KnowhubError):
    """The fact was revoked by its contributor and erased here (410 Gone); ``tombstone`` is the
    CID of the signed tombstone that says so. A node that receives the fact again refuses it:
    no fault of the sender's (it may just be behind)."""

    code = "revoked"

    def __init__(self, message: str, *, tombstone: str, field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.tombstone = tombstone


class NetworkingOff(NotFound):
    """A peer operation on a node that runs without networking (404: nothing to act on)."""

    code = "networking_off"


class StorageError(KnowhubError):
    """The catalog, index or block store failed; the request was not acknowledged."""

    code = "storage_error"


class IncompatibleDataDir(StorageError):
    """The data directory was written with another model or schema than this node runs."""

    code = "incompatible_data_dir"


class ChainError(KnowhubError):
    """The chain RPC failed or a transaction could not be sent; anchoring retries later."""

    code = "chain_error"


class NonceTooLow(ChainError):
    """The transaction's nonce was already used by another transaction of the account."""

    code = "nonce_too_low"


class ConfigError(KnowhubError):
    """A setting points at something unusable (unreadable file, malformed value)."""

    code = "config_error"


class Unavailable(KnowhubError):
    """The node is starting or shutting down, or a dependency it needs is down (503)."""

    code = "unavailable"


class Overloaded(Unavailable):
    """The node is at one of its bounds (e.g. the ingest queue is full): 503 with
    ``Retry-After``. Nothing from the request was stored; the same request may be retried."""

    code = "overloaded"

    def __init__(self, message: str, *, retry_after: float, field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.retry_after = retry_after


class PeerUnavailable(Unavailable):
    """A peer asked over the network did not answer: unreachable, or not within the time
    budget (``timeout`` says which)."""

    code = "peer_unavailable"

    def __init__(self, message: str, *, timeout: bool = False) -> None:
        super().__init__(message)
        self.timeout = timeout


class PeerRefused(Unavailable):
    """A peer answered a request with an error (``reason``: busy, model_mismatch, not_held,
    invalid, unavailable)."""

    code = "peer_refused"

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class InvalidAnswer(KnowhubError):
    """A peer's answer broke the protocol (malformed, or hits that fail verification): the
    peer is penalised."""

    code = "invalid_answer"
