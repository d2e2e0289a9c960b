"""Wire shapes of batches: the ``models/{model}:batchGenerateContent`` body (either casing)
and the operation-like resource both SDKs read (``name``, ``metadata`` with ``state`` and
``batchStats``, ``done``, and when done the output as ``inlinedResponses``). Embedding batches
(``protocol/classic/embed_batches.py``) share the input config and the operation; only the
``@type`` names differ.

Counts are int64, so strings (proto3 JSON); an error in a response is a ``google.rpc.Status``
(``code`` is the RPC code, not the HTTP status).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Protocol

import orjson
from pydantic import Field, StrictStr

from gemserve.errors import InvalidArgument
from gemserve.protocol.classic.caches import rfc3339
from gemserve.protocol.common import ProtoInt, WireModel, refuse_unserved, validate_body

_TYPE_PREFIX = "type.googleapis.com/google.ai.generativelanguage.v1main."
BATCH_TYPE = _TYPE_PREFIX + "GenerateContentBatch"
OUTPUT_TYPE = _TYPE_PREFIX + "GenerateContentBatchOutput"
EMBED_BATCH_TYPE = _TYPE_PREFIX + "EmbedContentBatch"
EMBED_OUTPUT_TYPE = _TYPE_PREFIX + "EmbedContentBatchOutput"
# What a batch runs (the store keeps it with the batch): generate or embedding requests.
GENERATE_KIND = "generate"
EMBED_KIND = "embed"
# The operation's metadata and response ``@type`` by kind.
_TYPES = {
    GENERATE_KIND: (BATCH_TYPE, OUTPUT_TYPE),
    EMBED_KIND: (EMBED_BATCH_TYPE, EMBED_OUTPUT_TYPE),
}
# The id after "batches/": gemserve makes 24 lowercase letters and digits.
BATCH_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
REQUESTS_PATH = "batch.input_config.requests.requests"

# google.rpc.Code by status name.
RPC_CODES = {
    "CANCELLED": 1,
    "UNKNOWN": 2,
    "INVALID_ARGUMENT": 3,
    "DEADLINE_EXCEEDED": 4,
    "NOT_FOUND": 5,
    "ALREADY_EXISTS": 6,
    "PERMISSION_DENIED": 7,
    "RESOURCE_EXHAUSTED": 8,
    "FAILED_PRECONDITION": 9,
    "ABORTED": 10,
    "OUT_OF_RANGE": 11,
    "UNIMPLEMENTED": 12,
    "INTERNAL": 13,
    "UNAVAILABLE": 14,
    "DATA_LOSS": 15,
    "UNAUTHENTICATED": 16,
}


def rpc_status(status: str, message: str) -> dict[str, Any]:
    """A ``google.rpc.Status``: the numeric code of ``status`` and the message."""
    return {"code": RPC_CODES.get(status, RPC_CODES["UNKNOWN"]), "message": message}


class InlinedRequest(WireModel):
    # A GenerateContentRequest; validated by the service, which names it by its index.
    request: dict[str, Any] | None = None
    metadata: Any = None


class InlinedRequests(WireModel):
    requests: list[InlinedRequest] = Field(default_factory=list)


class InputConfig(WireModel):
    requests: InlinedRequests | None = None
    # A JSONL file from the Files API: one ``{"key", "request"}`` object per line.
    file_name: StrictStr | None = None


class GenerateContentBatch(WireModel):
    display_name: StrictStr | None = Field(default=None, max_length=512)
    input_config: InputConfig | None = None
    # Some clients repeat the path's model here.
    model: StrictStr | None = None
    # Accepted, not used: batches run oldest first.
    priority: ProtoInt | None = None
    # In the schema, not served: refused by name.
    webhook_config: Any = None


class BatchGenerateContent(WireModel):
    """The body of ``models/{model}:batchGenerateContent``."""

    batch: GenerateContentBatch | None = None

    @classmethod
    def parse(cls, body: Any) -> tuple[GenerateContentBatch, list[InlinedRequest] | str]:
        """The batch, and its inline requests or the name of its input file."""
        batch = validate_body(cls, body).batch
        if batch is None:
            raise InvalidArgument("Missing required field 'batch'.")
        refuse_unserved(batch, ("webhook_config",), "batch")
        return batch, batch_source(batch.input_config)


def batch_source(config: InputConfig | None) -> list[InlinedRequest] | str:
    """A batch's inline requests (each with its ``request``), or the name of its input file."""
    if config is None:
        raise InvalidArgument("Missing required field 'batch.input_config'.")
    if config.file_name is not None:
        if config.requests is not None:
            raise InvalidArgument(
                "Invalid value at 'batch.input_config': set requests or file_name, not both."
            )
        return config.file_name
    if config.requests is None or not config.requests.requests:
        raise InvalidArgument(f"Missing required field '{REQUESTS_PATH}'.")
    for i, item in enumerate(config.requests.requests):
        if item.request is None:
            raise InvalidArgument(f"Missing required field '{REQUESTS_PATH}[{i}].request'.")
    return config.requests.requests


class FileLine(WireModel):
    """One line of a JSONL input file: the request and the key its answer repeats."""

    key: StrictStr | None = None
    request: dict[str, Any] | None = None
    metadata: Any = None


def parse_input_file(data: bytes, where: str) -> list[FileLine]:
    """The requests of a JSONL input file; a 400 names the first bad line (1-based)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidArgument(f"Invalid value at '{where}': the file is not UTF-8 text.") from None
    lines: list[FileLine] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            parsed = orjson.loads(raw)
            line = validate_body(FileLine, parsed)
        except orjson.JSONDecodeError as exc:
            raise InvalidArgument(
                f"Invalid value at '{where}', line {number}: not JSON ({exc.msg})."
            ) from None
        except InvalidArgument as exc:
            raise InvalidArgument(
                f"Invalid value at '{where}', line {number}: {exc.message}"
            ) from None
        if line.request is None:
            raise InvalidArgument(f"Invalid value at '{where}', line {number}: no 'request'.")
        lines.append(line)
    if not lines:
        raise InvalidArgument(f"Invalid value at '{where}': the file holds no requests.")
    return lines


def output_line(
    response: dict[str, Any] | None, error: dict[str, Any] | None, metadata: Any
) -> dict[str, Any]:
    """One line of a responses file: the request's ``key`` (kept in its metadata), then its
    response or error."""
    out: dict[str, Any] = {}
    if isinstance(metadata, dict) and "key" in metadata:
        out["key"] = metadata["key"]
    out.update({"error": error} if error is not None else {"response": response})
    return out


def batch_id_from_name(name: str, field: str = "name") -> str:
    bare = name.removeprefix("batches/")
    if not BATCH_ID.fullmatch(bare):
        raise InvalidArgument(f"Invalid value at '{field}': {name!r} is not a batch name.")
    return bare


class StoredBatch(Protocol):
    """What the operation reads of a stored batch (the store's record has these fields)."""

    @property
    def id(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def display_name(self) -> str | None: ...
    @property
    def state(self) -> str: ...
    @property
    def request_count(self) -> int: ...
    @property
    def succeeded(self) -> int: ...
    @property
    def failed(self) -> int: ...
    @property
    def pending(self) -> int: ...
    @property
    def done(self) -> bool: ...
    @property
    def error(self) -> dict[str, Any] | None: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def updated_at(self) -> datetime: ...
    @property
    def end_time(self) -> datetime | None: ...
    @property
    def output_file(self) -> str | None: ...


def batch_operation(
    record: StoredBatch, responses: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The batch as the operation both SDKs read; ``responses`` (one inlined response per
    request, in input order) are shown once the batch is done. An embedding batch's output
    has the same keys (its responses hold ``embedding``, which the SDKs look for)."""
    name = f"batches/{record.id}"
    batch_type, output_type = _TYPES.get(record.kind, _TYPES[GENERATE_KIND])
    metadata: dict[str, Any] = {
        "@type": batch_type,
        "name": name,
        "model": record.model,
        "createTime": rfc3339(record.created_at),
        "updateTime": rfc3339(record.updated_at),
        "batchStats": {
            "requestCount": str(record.request_count),
            "successfulRequestCount": str(record.succeeded),
            "failedRequestCount": str(record.failed),
            "pendingRequestCount": str(record.pending),
        },
        "state": record.state,
    }
    if record.display_name is not None:
        metadata["displayName"] = record.display_name
    if record.end_time is not None:
        metadata["endTime"] = rfc3339(record.end_time)
    operation: dict[str, Any] = {"name": name, "metadata": metadata, "done": record.done}
    output: dict[str, Any] | None = None
    if record.output_file is not None:
        output = {"responsesFile": record.output_file}
    elif record.done and responses is not None:
        output = {"inlinedResponses": {"inlinedResponses": responses}}
    if record.done and record.error is not None:
        operation["error"] = record.error
    if output is not None:
        metadata["output"] = output
        if record.error is None:
            operation["response"] = {"@type": output_type, **output}
    return operation


def inlined_response(
    response: dict[str, Any] | None, error: dict[str, Any] | None, metadata: Any
) -> dict[str, Any]:
    out: dict[str, Any] = {"error": error} if error is not None else {"response": response}
    if metadata is not None:
        out["metadata"] = metadata
    return out
