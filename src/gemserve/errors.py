"""One exception hierarchy for every layer; ``api`` maps it once to the Google error envelope.

Services and engines raise these; they never build HTTP responses themselves.
"""

from __future__ import annotations


class GemserveError(Exception):
    """Base class: an error with a Google RPC status and the HTTP code it maps to."""

    http_status: int = 500
    rpc_status: str = "INTERNAL"
    # Seconds a client should wait before retrying (the Retry-After header), where it helps.
    retry_after: int | None = None

    def __init__(self, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if retry_after is not None:
            self.retry_after = retry_after


class InvalidArgument(GemserveError):
    http_status = 400
    rpc_status = "INVALID_ARGUMENT"


class InvalidConstraint(InvalidArgument):
    """An output constraint the engine cannot enforce; the caller names the request field
    (``tool``: the declared tool whose schema it is)."""

    def __init__(self, message: str, *, tool: str | None = None) -> None:
        super().__init__(message)
        self.tool = tool


class InvalidEmbeddingInput(InvalidArgument):
    """One text of an embedding request the engine cannot embed (empty, longer than the
    model's context, a token id outside the vocabulary); ``index`` says which, and the
    caller names the request field."""

    def __init__(self, message: str, *, index: int) -> None:
        super().__init__(message)
        self.index = index


class FailedPrecondition(GemserveError):
    http_status = 400
    rpc_status = "FAILED_PRECONDITION"


class Unauthenticated(GemserveError):
    http_status = 401
    rpc_status = "UNAUTHENTICATED"


class PermissionDenied(GemserveError):
    http_status = 403
    rpc_status = "PERMISSION_DENIED"


class NotFound(GemserveError):
    http_status = 404
    rpc_status = "NOT_FOUND"


class AlreadyExists(GemserveError):
    """Only on surfaces the SDKs do not retry (files): both retry 409 on interactions."""

    http_status = 409
    rpc_status = "ALREADY_EXISTS"


class RequestTimeout(GemserveError):
    """The client did not send its whole body in time (a slow or stalled sender)."""

    http_status = 408
    rpc_status = "DEADLINE_EXCEEDED"


class MethodNotAllowed(GemserveError):
    http_status = 405
    rpc_status = "UNIMPLEMENTED"


class PayloadTooLarge(GemserveError):
    http_status = 413
    rpc_status = "INVALID_ARGUMENT"


class ResourceExhausted(GemserveError):
    """Load shedding: the SDKs retry 429 with backoff, which is what we want here."""

    http_status = 429
    rpc_status = "RESOURCE_EXHAUSTED"
    retry_after = 1  # a slot frees within a generation


class Unavailable(GemserveError):
    """Only before any work has started: both SDKs retry 5xx."""

    http_status = 503
    rpc_status = "UNAVAILABLE"
    retry_after = 1  # a model or the store comes back within seconds


class Internal(GemserveError):
    http_status = 500
    rpc_status = "INTERNAL"
