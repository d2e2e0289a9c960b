"""One upstream: an OpenAI-compatible engine behind a base URL (``http://host:port/v1``).

Everything goes through one ``httpx.AsyncClient`` whose transport is a parameter, the seam
where tests inject faults. Besides streaming chat completions it speaks the extensions the
engines have: ``/props`` (llama-server: context, modalities), ``/tokenize`` and
``/apply-template`` (llama-server, vLLM), ``/health``.

llama-cpp-python's server runs one request at a time behind a lock that ``/v1/models`` and
``/extras/tokenize`` take too: asked while it decodes, they wait for the answer to end, or
(its default ``interrupt_requests``) cut that answer short. So it is told apart by its
``/openapi.json`` (FastAPI's, outside the lock), probed for health there, and never asked to
tokenize (``/extras/tokenize`` has no chat template either): its counts are estimates. It
checks a prompt against its context only after a stream's headers, and then cuts the stream;
:meth:`UpstreamClient.refusal` asks it again unstreamed, where that check is a 400.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import httpx
import orjson

from gemserve.config.remote import RemoteTimeouts, UpstreamKind

log = logging.getLogger("gemserve.remote")

Json = dict[str, Any]

# An error body is read up to this many bytes (the message is all that is kept).
_ERROR_BODY_LIMIT = 64 * 1024
# The title of llama-cpp-python's FastAPI app ("🦙 llama.cpp Python API").
_LLAMA_CPP_PYTHON_TITLE = "llama.cpp Python API"


class UpstreamError(Exception):
    """The upstream could not be used for this request."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UpstreamUnreachable(UpstreamError):
    """No answer: refused, reset, timed out, or not HTTP."""


class UpstreamStatus(UpstreamError):
    """An HTTP error status, with the upstream's message and its Retry-After."""

    def __init__(self, status: int, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


@dataclass(frozen=True)
class UpstreamInfo:
    """What an upstream says about itself (None where it does not say)."""

    kind: UpstreamKind
    models: tuple[str, ...]
    context_length: int | None = None
    modalities: frozenset[str] | None = None


def root_url(base: str) -> str:
    """``http://h:8000/v1`` → ``http://h:8000``: where the non-OpenAI endpoints live."""
    parts = urlsplit(base)
    path = parts.path.rstrip("/")
    if path.endswith("/v1"):
        path = path[: -len("/v1")]
    return urlunsplit((parts.scheme, parts.netloc, path, "", "")).rstrip("/")


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _error_message(status: int, body: bytes) -> str:
    """The message of an OpenAI-style (or llama-server, vLLM, FastAPI) error body."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        text = body.decode("utf-8", "replace").strip()
        return text[:500] or f"HTTP {status}"
    if isinstance(parsed, dict):
        error = parsed.get("error", parsed)
        if isinstance(error, dict):
            message = error.get("message") or error.get("detail")
            if isinstance(message, str):
                return message[:500]
        elif isinstance(error, str):
            return error[:500]
        detail = parsed.get("detail") or parsed.get("message")
        if isinstance(detail, str):
            return detail[:500]
    return f"HTTP {status}"


class UpstreamClient:
    def __init__(
        self,
        url: str,
        *,
        api_key: str | None,
        timeouts: RemoteTimeouts,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.root = root_url(self.url)
        self._timeouts = timeouts
        headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.AsyncClient(
            transport=transport,
            headers=headers,
            timeout=httpx.Timeout(
                connect=timeouts.connect,
                read=timeouts.first_token,
                write=timeouts.first_token,
                pool=timeouts.connect,
            ),
            # One connection per stream in flight; the pool's cap bounds them.
            # llama-server (cpp-httplib) closes an idle connection after 5 s: never reuse one
            # that old, or the request races the close.
            limits=httpx.Limits(
                max_connections=None, max_keepalive_connections=64, keepalive_expiry=2.0
            ),
            trust_env=False,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    # ----- chat completions ----------------------------------------------------------------

    async def open_chat(self, body: bytes) -> httpx.Response:
        """POST a streaming chat completion and wait for the response headers; the caller
        reads the SSE body (calling :meth:`answering` once its first data came) and must close
        the response. Raises :class:`UpstreamStatus` for an error status and
        :class:`UpstreamUnreachable` for no answer."""
        request = self._http.build_request(
            "POST",
            self.url + "/chat/completions",
            content=body,
            headers={"content-type": "application/json", "accept": "text/event-stream"},
        )
        try:
            try:
                response = await self._http.send(request, stream=True)
            except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError):
                # A kept-alive connection the upstream closed while it sat idle: once more on
                # a fresh one (a second failure is the upstream's).
                response = await self._http.send(request, stream=True)
        except httpx.TimeoutException as exc:
            raise UpstreamUnreachable(
                f"no answer within {self._timeouts.first_token:g} s ({type(exc).__name__})"
            ) from None
        except httpx.HTTPError as exc:
            raise UpstreamUnreachable(_describe(exc)) from None
        if response.status_code != 200:
            try:
                raw = await _read_limited(response)
            except httpx.HTTPError:
                raw = b""
            finally:
                await response.aclose()
            raise UpstreamStatus(
                response.status_code,
                _error_message(response.status_code, raw),
                _retry_after(response),
            )
        return response

    def answering(self, response: httpx.Response) -> None:
        """The upstream has started answering (its first data came): from now on the stream
        may be silent at most ``idle`` seconds between two chunks, not ``first_token`` (httpcore
        reads the read timeout off the request's extensions at each read)."""
        timeout = dict(response.request.extensions.get("timeout", {}))
        timeout["read"] = self._timeouts.idle
        response.request.extensions["timeout"] = timeout

    async def refusal(self, body: bytes) -> UpstreamStatus | None:
        """The error status the upstream answers a streaming chat ``body`` with when it is
        asked again unstreamed for one token; None when it answers that, or not at all.

        llama-cpp-python's server checks the prompt against its context only once a stream's
        headers are out, then cuts the connection without a word; unstreamed, the same check
        is a 400 with its counts. (A prompt that fits costs its prefill again: this runs only
        after a stream broke before its first data.)"""
        try:
            request = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        request["stream"] = False
        request.pop("stream_options", None)
        request["max_tokens"] = 1
        content = orjson.dumps(request)
        headers = {"content-type": "application/json"}
        url = self.url + "/chat/completions"
        try:
            try:
                response = await self._http.post(url, content=content, headers=headers)
            except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError):
                # A kept-alive connection closed meanwhile (as in open_chat): once more.
                response = await self._http.post(url, content=content, headers=headers)
        except httpx.HTTPError as exc:
            log.info("upstream %s: asking again unstreamed failed: %s", self.url, _describe(exc))
            return None
        if response.status_code == 200:
            return None
        return UpstreamStatus(
            response.status_code,
            _error_message(response.status_code, response.content),
            _retry_after(response),
        )

    # ----- discovery, health ---------------------------------------------------------------

    async def _get_json(self, url: str, seconds: float) -> Json | None:
        try:
            response = await self._http.get(url, timeout=seconds)
        except httpx.HTTPError:
            return None
        if response.status_code != 200:
            return None
        try:
            parsed = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            return None
        return parsed if isinstance(parsed, dict) else None

    async def _post_json(self, url: str, body: Json) -> Json | None:
        try:
            response = await self._http.post(
                url,
                content=orjson.dumps(body),
                headers={"content-type": "application/json"},
                timeout=self._timeouts.first_token,
            )
        except httpx.HTTPError:
            return None
        if response.status_code != 200:
            return None
        try:
            parsed = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            return None
        return parsed if isinstance(parsed, dict) else None

    async def discover(self, declared: UpstreamKind) -> UpstreamInfo | None:
        """``/v1/models`` (every kind) and llama-server's ``/props``; None: no answer."""
        timeout = self._timeouts.health
        models = await self._get_json(self.url + "/models", timeout)
        if models is None:
            return None
        entries = [m for m in models.get("data") or [] if isinstance(m, dict)]
        names = tuple(str(m["id"]) for m in entries if "id" in m)
        owners = {str(m.get("owned_by", "")) for m in entries}
        kind: UpstreamKind = declared
        if kind == "auto":
            if "llamacpp" in owners:
                kind = "llama-server"
            elif "vllm" in owners:
                kind = "vllm"
            elif "sglang" in owners:
                kind = "sglang"
            elif owners & {"library", "ollama"}:
                kind = "ollama"
            elif await self._is_llama_cpp_python(timeout):
                kind = "llama-cpp-python"
            else:
                kind = "openai"
        context: int | None = None
        for entry in entries:
            meta = entry.get("meta")
            if isinstance(meta, dict) and isinstance(meta.get("n_ctx"), int):
                context = int(meta["n_ctx"])  # llama-server: the slot's context
            elif isinstance(entry.get("max_model_len"), int):
                context = int(entry["max_model_len"])  # vLLM, SGLang
            if context is not None:
                break
        modalities: frozenset[str] | None = None
        if kind == "llama-server":
            props = await self._get_json(self.root + "/props", timeout)
            if props is not None:
                found = props.get("modalities")
                if isinstance(found, dict):
                    modalities = frozenset(
                        {"text"}
                        | ({"image"} if found.get("vision") else set())
                        | ({"audio"} if found.get("audio") else set())
                    )
                settings = props.get("default_generation_settings")
                if isinstance(settings, dict) and isinstance(settings.get("n_ctx"), int):
                    context = int(settings["n_ctx"])
        return UpstreamInfo(kind, names, context, modalities)

    async def _is_llama_cpp_python(self, seconds: float) -> bool:
        """Whether the server's OpenAPI document is llama-cpp-python's (its ``/v1/models``
        says ``owned_by: "me"``, which tells nothing)."""
        document = await self._get_json(self.root + "/openapi.json", seconds)
        info = document.get("info") if document is not None else None
        title = info.get("title") if isinstance(info, dict) else None
        return isinstance(title, str) and _LLAMA_CPP_PYTHON_TITLE in title

    async def health(self, kind: UpstreamKind) -> bool:
        """``/health`` where the kind has one (200 once the model is loaded), llama-cpp-python's
        ``/openapi.json`` (it loads the model before it listens; its model list would wait for,
        or interrupt, the answer it decodes), else the model list."""
        timeout = self._timeouts.health
        if kind in ("llama-server", "vllm", "sglang"):
            url = self.root + "/health"
        elif kind == "llama-cpp-python":
            url = self.root + "/openapi.json"
        else:
            url = self.url + "/models"
        try:
            response = await self._http.get(url, timeout=timeout)
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    # ----- tokens --------------------------------------------------------------------------

    async def count_chat(self, kind: UpstreamKind, body: Json) -> int | None:
        """The prompt tokens of a chat body on the upstream's own template; None where the
        upstream cannot say (SGLang, Ollama, llama-cpp-python: gemserve then estimates)."""
        if kind == "llama-server":
            counted = await self._post_json(self.url + "/chat/completions/input_tokens", body)
            if counted is not None and isinstance(counted.get("input_tokens"), int):
                return int(counted["input_tokens"])
            rendered = await self._post_json(self.root + "/apply-template", body)
            if rendered is None or not isinstance(rendered.get("prompt"), str):
                return None
            tokens = await self._post_json(
                self.root + "/tokenize",
                {"content": rendered["prompt"], "add_special": True, "parse_special": True},
            )
            return _token_count(tokens)
        if kind == "vllm":
            request: Json = {
                key: body[key]
                for key in ("model", "messages", "tools", "chat_template_kwargs")
                if key in body
            }
            request["add_generation_prompt"] = True
            counted = await self._post_json(self.root + "/tokenize", request)
            if counted is not None and isinstance(counted.get("count"), int):
                return int(counted["count"])
            return _token_count(counted)
        return None

    async def tokenize(self, kind: UpstreamKind, model: str, text: str) -> list[int] | None:
        if kind == "llama-server":
            body: Json = {"content": text, "add_special": False, "parse_special": False}
        elif kind == "vllm":
            body = {"model": model, "prompt": text, "add_special_tokens": False}
        else:
            return None
        result = await self._post_json(self.root + "/tokenize", body)
        tokens = result.get("tokens") if result is not None else None
        if not isinstance(tokens, list):
            return None
        return [int(t) for t in tokens if isinstance(t, int)]

    async def embeddings(self, model: str, inputs: list[str] | list[list[int]]) -> Json:
        """``/v1/embeddings``; raises like :meth:`open_chat`."""
        try:
            response = await self._http.post(
                self.url + "/embeddings",
                content=orjson.dumps({"model": model, "input": inputs, "encoding_format": "float"}),
                headers={"content-type": "application/json"},
            )
        except httpx.TimeoutException:
            raise UpstreamUnreachable("no answer to an embeddings request") from None
        except httpx.HTTPError as exc:
            raise UpstreamUnreachable(_describe(exc)) from None
        if response.status_code != 200:
            raise UpstreamStatus(
                response.status_code,
                _error_message(response.status_code, response.content),
                _retry_after(response),
            )
        try:
            return cast(Json, orjson.loads(response.content))
        except orjson.JSONDecodeError:
            raise UpstreamUnreachable("the embeddings response is not JSON") from None


def _token_count(result: Json | None) -> int | None:
    tokens = result.get("tokens") if result is not None else None
    return len(tokens) if isinstance(tokens, list) else None


async def _read_limited(response: httpx.Response) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= _ERROR_BODY_LIMIT:
            break
    return b"".join(chunks)[:_ERROR_BODY_LIMIT]


def _describe(exc: httpx.HTTPError) -> str:
    detail = str(exc).strip()
    name = type(exc).__name__
    return f"{name}: {detail}" if detail else name
