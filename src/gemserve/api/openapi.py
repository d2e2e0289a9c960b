"""``GET /openapi.json``: an OpenAPI 3.1 document of every served route.

Request bodies are the JSON Schemas of the protocol models that parse them (pydantic), so the
document cannot drift from what the server accepts; every property is listed under both its
snake_case and its lowerCamelCase name, as the parsers take either. Responses name their
envelope (Google's, or OpenAI's on that surface). ``OPERATIONS`` lists the routes; a test
checks that it and the app's routes are the same set.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from pydantic.alias_generators import to_camel, to_snake
from pydantic.json_schema import models_json_schema
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gemserve import __version__
from gemserve.api.responses import json_response
from gemserve.protocol.classic.batches import BatchGenerateContent
from gemserve.protocol.classic.caches import CreateCachedContent, UpdateCachedContent
from gemserve.protocol.classic.embed import (
    BatchEmbedContentsRequest,
    CountTokensRequest,
    EmbedContentRequest,
)
from gemserve.protocol.classic.embed_batches import AsyncBatchEmbedContent
from gemserve.protocol.classic.request import GenerateContentRequest
from gemserve.protocol.files import UploadStart
from gemserve.protocol.interactions.request import CreateInteraction
from gemserve.protocol.openai.embeddings import EmbeddingRequest
from gemserve.protocol.openai.request import ChatCompletionRequest

VERSION = {
    "name": "version",
    "in": "path",
    "required": True,
    "schema": {
        "type": "string",
        "pattern": r"^v\d+(?:(?:alpha|beta)\d*)?$",
        "examples": ["v1beta"],
    },
}


@dataclass(frozen=True)
class Operation:
    method: str
    path: str  # OpenAPI path template
    operation_id: str
    summary: str
    tag: str
    body: type[BaseModel] | None = None
    streams: bool = False  # may answer text/event-stream
    openai: bool = False  # errors in OpenAI's envelope
    public: bool = False  # no API key
    media_type: str = "application/json"  # of a success
    query: tuple[str, ...] = ()
    headers: tuple[str, ...] = ()
    extra_params: tuple[str, ...] = field(default=())  # path parameters besides version


_I = "/{version}/interactions"
_M = "/{version}/models/{model}"
OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "post",
        _I,
        "createInteraction",
        "Create an interaction (stream with stream=true)",
        "interactions",
        CreateInteraction,
        streams=True,
        query=("alt",),
    ),
    Operation(
        "get",
        _I,
        "listConversations",
        "gemserve's own: the last turn of each of the caller's conversations, newest first",
        "interactions",
        query=("pageSize", "pageToken"),
    ),
    Operation(
        "get",
        _I + "/{id}",
        "getInteraction",
        "Get an interaction, or follow its events (stream=true)",
        "interactions",
        streams=True,
        query=("stream", "last_event_id", "include_input"),
        extra_params=("id",),
    ),
    Operation(
        "delete",
        _I + "/{id}",
        "deleteInteraction",
        "Delete an interaction",
        "interactions",
        extra_params=("id",),
    ),
    Operation(
        "post",
        _I + "/{id}/cancel",
        "cancelInteraction",
        "Cancel a running interaction",
        "interactions",
        extra_params=("id",),
    ),
    Operation(
        "post",
        _M + ":generateContent",
        "generateContent",
        "Generate a response",
        "classic",
        GenerateContentRequest,
        extra_params=("model",),
    ),
    Operation(
        "post",
        _M + ":streamGenerateContent",
        "streamGenerateContent",
        "Generate a response as server-sent events",
        "classic",
        GenerateContentRequest,
        streams=True,
        query=("alt",),
        extra_params=("model",),
    ),
    Operation(
        "post",
        _M + ":countTokens",
        "countTokens",
        "Count a request's tokens",
        "classic",
        CountTokensRequest,
        extra_params=("model",),
    ),
    Operation(
        "post",
        _M + ":embedContent",
        "embedContent",
        "Embed one content",
        "classic",
        EmbedContentRequest,
        extra_params=("model",),
    ),
    Operation(
        "post",
        _M + ":batchEmbedContents",
        "batchEmbedContents",
        "Embed several contents",
        "classic",
        BatchEmbedContentsRequest,
        extra_params=("model",),
    ),
    Operation(
        "post",
        _M + ":batchGenerateContent",
        "batchGenerateContent",
        "Create a batch",
        "batches",
        BatchGenerateContent,
        extra_params=("model",),
    ),
    Operation(
        "post",
        _M + ":asyncBatchEmbedContent",
        "asyncBatchEmbedContent",
        "Create an embedding batch",
        "batches",
        AsyncBatchEmbedContent,
        extra_params=("model",),
    ),
    Operation(
        "get",
        "/{version}/models",
        "listModels",
        "List the served models",
        "models",
        query=("pageSize", "pageToken"),
    ),
    Operation(
        "get",
        "/{version}/models/{model}",
        "getModel",
        "Get a model",
        "models",
        extra_params=("model",),
    ),
    Operation(
        "post",
        "/{version}/cachedContents",
        "createCachedContent",
        "Create a cached content",
        "caches",
        CreateCachedContent,
    ),
    Operation(
        "get",
        "/{version}/cachedContents",
        "listCachedContents",
        "List cached contents",
        "caches",
        query=("pageSize", "pageToken"),
    ),
    Operation(
        "get",
        "/{version}/cachedContents/{id}",
        "getCachedContent",
        "Get a cached content",
        "caches",
        extra_params=("id",),
    ),
    Operation(
        "patch",
        "/{version}/cachedContents/{id}",
        "updateCachedContent",
        "Update a cached content's expiry",
        "caches",
        UpdateCachedContent,
        query=("updateMask",),
        extra_params=("id",),
    ),
    Operation(
        "delete",
        "/{version}/cachedContents/{id}",
        "deleteCachedContent",
        "Delete a cached content",
        "caches",
        extra_params=("id",),
    ),
    Operation(
        "get",
        "/{version}/batches",
        "listBatches",
        "List batches",
        "batches",
        query=("pageSize", "pageToken"),
    ),
    Operation(
        "get", "/{version}/batches/{id}", "getBatch", "Get a batch", "batches", extra_params=("id",)
    ),
    Operation(
        "post",
        "/{version}/batches/{id}:cancel",
        "cancelBatch",
        "Cancel a batch",
        "batches",
        extra_params=("id",),
    ),
    Operation(
        "delete",
        "/{version}/batches/{id}",
        "deleteBatch",
        "Delete a batch",
        "batches",
        extra_params=("id",),
    ),
    Operation(
        "get",
        "/{version}/files",
        "listFiles",
        "List files",
        "files",
        query=("pageSize", "pageToken"),
    ),
    Operation(
        "get",
        "/{version}/files/{id}",
        "getFile",
        "Get a file's metadata",
        "files",
        extra_params=("id",),
    ),
    Operation(
        "get",
        "/{version}/files/{id}:download",
        "downloadFile",
        "Download a file's bytes (alt=media)",
        "files",
        query=("alt",),
        extra_params=("id",),
    ),
    Operation(
        "delete",
        "/{version}/files/{id}",
        "deleteFile",
        "Delete a file",
        "files",
        extra_params=("id",),
    ),
    Operation(
        "post",
        "/upload/{version}/files",
        "uploadFile",
        "Start, continue, query, finalize or cancel a resumable upload",
        "files",
        UploadStart,
        headers=(
            "X-Goog-Upload-Protocol",
            "X-Goog-Upload-Command",
            "X-Goog-Upload-Offset",
            "X-Goog-Upload-Header-Content-Length",
            "X-Goog-Upload-Header-Content-Type",
        ),
        query=("upload_id",),
    ),
    Operation(
        "post",
        "/{version}/openai/chat/completions",
        "createChatCompletion",
        "OpenAI-compatible chat completion",
        "openai",
        ChatCompletionRequest,
        streams=True,
        openai=True,
    ),
    Operation(
        "get",
        "/{version}/openai/models",
        "listOpenAIModels",
        "OpenAI-compatible model list",
        "openai",
        openai=True,
    ),
    Operation(
        "get",
        "/{version}/openai/models/{model}",
        "getOpenAIModel",
        "OpenAI-compatible model",
        "openai",
        openai=True,
        extra_params=("model",),
    ),
    Operation(
        "post",
        "/{version}/openai/embeddings",
        "createEmbedding",
        "OpenAI-compatible embeddings",
        "openai",
        EmbeddingRequest,
        openai=True,
    ),
    Operation("get", "/healthz", "healthz", "Liveness", "operations", public=True),
    Operation(
        "get", "/readyz", "readyz", "Readiness: every model loaded", "operations", public=True
    ),
    Operation("get", "/statsz", "statsz", "Engine counters per model", "operations", public=True),
    Operation(
        "get",
        "/metrics",
        "metrics",
        "Prometheus metrics (keep off public networks)",
        "operations",
        public=True,
        media_type="text/plain",
    ),
    Operation(
        "get",
        "/",
        "playground",
        "The playground page",
        "operations",
        public=True,
        media_type="text/html",
    ),
    Operation("get", "/openapi.json", "openapi", "This document", "operations", public=True),
)

_GOOGLE_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "status"],
            "properties": {
                "code": {"type": "integer"},
                "message": {"type": "string"},
                "status": {"type": "string"},
                "details": {"type": "array", "items": {"type": "object"}},
            },
        }
    },
}
_OPENAI_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
        }
    },
}


def with_both_casings(schema: Any) -> Any:
    """Every property also under its other casing (the parsers accept snake_case and
    lowerCamelCase at every depth); ``required`` keeps the one name pydantic gave."""
    if isinstance(schema, list):
        return [with_both_casings(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: with_both_casings(value) for key, value in schema.items()}
    properties = out.get("properties")
    if isinstance(properties, dict) and all(isinstance(k, str) for k in properties):
        merged = dict(properties)
        for name, value in properties.items():
            for other in (to_camel(name), to_snake(name)):
                merged.setdefault(other, value)
        out["properties"] = merged
        required = out.get("required")
        if isinstance(required, list) and any(to_camel(r) != r for r in required):
            # Either spelling satisfies a required field.
            out.pop("required")
            out.setdefault("allOf", []).extend(
                {"anyOf": [{"required": [r]}, {"required": [to_camel(r)]}]} for r in required
            )
    return out


def _parameters(op: Operation) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = []
    if "{version}" in op.path:
        params.append(VERSION)
    for name in op.extra_params:
        params.append({"name": name, "in": "path", "required": True, "schema": {"type": "string"}})
    for name in op.query:
        params.append(
            {"name": name, "in": "query", "required": False, "schema": {"type": "string"}}
        )
    for name in op.headers:
        params.append(
            {"name": name, "in": "header", "required": False, "schema": {"type": "string"}}
        )
    return params


def _responses(op: Operation) -> dict[str, Any]:
    ok: dict[str, Any] = {op.media_type: {"schema": {"type": "object"}}}
    if op.media_type != "application/json":
        ok = {op.media_type: {"schema": {"type": "string"}}}
    if op.streams:
        ok["text/event-stream"] = {"schema": {"type": "string"}}
    if op.operation_id == "downloadFile":
        ok = {"application/octet-stream": {"schema": {"type": "string"}}}
    error = {"$ref": "#/components/schemas/" + ("OpenAIError" if op.openai else "GoogleError")}
    responses: dict[str, Any] = {"200": {"description": "Success", "content": ok}}
    for code, what in (
        ("400", "Invalid request"),
        ("401", "Missing or unknown API key"),
        ("404", "Not found (another tenant's ids included)"),
        ("408", "The request body did not arrive in time"),
        ("413", "The request body is over the limit"),
        ("429", "Queue full or quota exceeded (with Retry-After)"),
        ("503", "Still loading, or the store is unavailable (with Retry-After)"),
    ):
        if op.public and code not in ("503",):
            continue
        responses[code] = {
            "description": what,
            "content": {"application/json": {"schema": error}},
        }
    return responses


@functools.cache
def openapi_document() -> dict[str, Any]:
    """The document (built once per process: it depends only on code)."""
    models = sorted({op.body for op in OPERATIONS if op.body is not None}, key=lambda m: m.__name__)
    refs, defs = models_json_schema(
        [(model, "validation") for model in models],
        by_alias=False,
        ref_template="#/components/schemas/{model}",
    )
    schemas = with_both_casings(defs.get("$defs", {}))
    schemas["GoogleError"] = _GOOGLE_ERROR
    schemas["OpenAIError"] = _OPENAI_ERROR
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        entry: dict[str, Any] = {
            "operationId": op.operation_id,
            "summary": op.summary,
            "tags": [op.tag],
            "parameters": _parameters(op),
            "responses": _responses(op),
        }
        if op.body is not None:
            schema = refs[(op.body, "validation")]
            entry["requestBody"] = {
                "required": op.operation_id != "uploadFile",
                "content": {"application/json": {"schema": schema}},
            }
        if op.public:
            entry["security"] = []
        paths.setdefault(op.path, {})[op.method] = entry
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "gemserve",
            "version": __version__,
            "description": "The Gemini API (Interactions, classic, Files, OpenAI-compatible), "
            "self-hosted on open models.",
        },
        "servers": [{"url": "/"}],
        "security": [{"apiKeyHeader": []}, {"apiKeyQuery": []}, {"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "x-goog-api-key"},
                "apiKeyQuery": {"type": "apiKey", "in": "query", "name": "key"},
                "bearer": {"type": "http", "scheme": "bearer"},
            },
        },
    }


async def openapi(_request: Request) -> Response:
    return json_response(openapi_document())


routes = [Route("/openapi.json", openapi, methods=["GET"])]
