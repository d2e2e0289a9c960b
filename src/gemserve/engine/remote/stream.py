"""An upstream's SSE chat-completion stream as engine events.

:class:`ChunkDecoder` maps the chunks: ``delta.reasoning_content`` (or vLLM's
``delta.reasoning``) becomes :class:`ThoughtDelta`; ``delta.content`` goes through
``ThinkingParser`` when the request has native reasoning, so a ``<think>`` the upstream left in
the content (llama-server with ``--reasoning-format none``, vLLM without a reasoning parser)
is a thought too; ``delta.tool_calls`` become ``ToolCallStart``/``ToolCallArguments``/
``ToolCallEnd``; the usage chunk (``stream_options.include_usage``) gives the counts. An
upstream that sends none (llama-cpp-python's server) gets estimated counts, flagged
``Finished.estimated``: the prompt as the engine estimated it, one token per chunk.

:class:`RemoteStream` reads the response in a task of its own and hands events over a queue:
``cancel()`` cancels that task, which closes the upstream connection (llama-server, vLLM and
SGLang then abort the request and free its slot). It starts from an :class:`Opened` request,
whose first data the engine may have read (for upstreams that tell an error only in
the stream: an error before it is then still a status for the client).
A stream that breaks before its first token is retried on another upstream; after it, the
stream ends with ``Finished(ERROR)``. An error the upstream reports as the request's fault
(``refusal.is_client_error``) ends it at once: another upstream would refuse it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import orjson

from gemserve.engine.base import (
    EngineEvent,
    Finished,
    FinishReason,
    ReasoningControl,
    TextDelta,
    ThoughtDelta,
    ToolCallArguments,
    ToolCallEnd,
    ToolCallStart,
)
from gemserve.engine.reasoning import Phase, ThinkingParser
from gemserve.engine.remote.client import UpstreamError
from gemserve.engine.remote.pool import Upstream, UpstreamLease, UpstreamPool
from gemserve.engine.remote.refusal import is_client_error, refused
from gemserve.errors import GemserveError

log = logging.getLogger("gemserve.remote")

Json = dict[str, Any]

_FINISH = {
    "stop": FinishReason.STOP,
    "eos": FinishReason.STOP,
    "tool_calls": FinishReason.STOP,
    "function_call": FinishReason.STOP,
    "content_filter": FinishReason.STOP,
    "length": FinishReason.MAX_TOKENS,
}


class StreamBroken(Exception):
    """The upstream's stream cannot be read on: the message says why. ``refusal`` is the
    upstream's own message where it said the request is at fault (a client error)."""

    def __init__(self, message: str, *, refusal: str | None = None) -> None:
        super().__init__(message)
        self.refusal = refusal


def chunk_error(chunk: Json) -> StreamBroken | None:
    """The error an upstream reports inside its stream (``{"error": ...}``), if any."""
    error = chunk.get("error")
    if error is None:
        return None
    message = str(error.get("message") if isinstance(error, dict) else error)
    return StreamBroken(
        f"the upstream reported an error mid-stream: {message}",
        refusal=message if is_client_error(error) else None,
    )


class _Call:
    __slots__ = ("arguments", "index", "name", "started")

    def __init__(self, index: int) -> None:
        self.index = index
        self.name = ""
        self.arguments: list[str] = []
        self.started = False


class ChunkDecoder:
    """Chunks of one chat completion in, engine events out; :meth:`finish` ends them."""

    def __init__(
        self,
        reasoning: ReasoningControl | None,
        *,
        max_output_tokens: int,
        context_length: int,
        prompt_estimate: int = 0,
    ) -> None:
        self._parser = (
            ThinkingParser(reasoning.open_tag, reasoning.close_tag, phase=Phase.BEFORE)
            if reasoning is not None
            else None
        )
        self._max_output = max_output_tokens
        self._context = context_length
        self._prompt_estimate = prompt_estimate  # where the upstream sends no usage
        self._calls: dict[int, _Call] = {}  # by the upstream's index
        self._order: list[_Call] = []
        self.finish_reason: str | None = None
        self.usage: Json | None = None
        self.timings: Json | None = None
        self.done = False  # [DONE] seen
        self.produced = False  # an event (a token) went out
        self.content_chunks = 0
        self.thought_chunks = 0
        self._undecided = 0

    def feed(self, chunk: Json) -> list[EngineEvent]:
        error = chunk_error(chunk)
        if error is not None:
            raise error
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self.usage = usage
        timings = chunk.get("timings")
        if isinstance(timings, dict):
            self.timings = timings
        out: list[EngineEvent] = []
        choices = chunk.get("choices")
        if not choices:
            return out
        if not isinstance(choices, list) or not isinstance(choices[0], dict):
            raise StreamBroken("the upstream sent a chunk without a choice object")
        choice = choices[0]
        delta = choice.get("delta")
        if isinstance(delta, dict):
            thought = delta.get("reasoning_content") or delta.get("reasoning")
            if isinstance(thought, str) and thought:
                self.thought_chunks += 1
                out.append(ThoughtDelta(thought))
            content = delta.get("content")
            if isinstance(content, str) and content:
                self.content_chunks += 1
                if self._parser is None:
                    out.append(TextDelta(content))
                else:
                    before = self._parser.phase
                    for is_thought, text in self._parser.feed(content):
                        out.append(ThoughtDelta(text) if is_thought else TextDelta(text))
                    self._count_thought(before)
            calls = delta.get("tool_calls")
            if isinstance(calls, list):
                for call in calls:
                    if isinstance(call, dict):
                        out.extend(self._tool_call(call))
        reason = choice.get("finish_reason")
        if isinstance(reason, str):
            self.finish_reason = reason
        if out:
            self.produced = True
        return out

    def _count_thought(self, before: Phase) -> None:
        """A content chunk spent on the thought (its tags included) counts as a thought
        token; chunks before the output settles count once it has."""
        assert self._parser is not None
        after = self._parser.phase
        if after is Phase.BEFORE:
            self._undecided += 1
        elif before is Phase.BEFORE:
            if self._parser.opened:
                self.thought_chunks += self._undecided + 1
            self._undecided = 0
        elif before is Phase.THOUGHT:
            self.thought_chunks += 1

    def _tool_call(self, delta: Json) -> list[EngineEvent]:
        index = delta.get("index", len(self._calls))
        if not isinstance(index, int):
            raise StreamBroken("the upstream sent a tool call without an index")
        call = self._calls.get(index)
        out: list[EngineEvent] = []
        if call is None:
            # A new call ends the ones before it.
            out.extend(self._end_calls())
            call = _Call(len(self._order))
            self._calls[index] = call
            self._order.append(call)
        function = delta.get("function")
        if not isinstance(function, dict):
            return out
        name = function.get("name")
        if isinstance(name, str) and name and not call.started:
            # Once started the name is settled: llama-cpp-python repeats it in every chunk.
            call.name += name
        arguments = function.get("arguments")
        if not call.started and call.name:
            call.started = True
            out.append(ToolCallStart(call.index, call.name))
            if call.arguments:
                out.append(ToolCallArguments(call.index, "".join(call.arguments)))
        if isinstance(arguments, str) and arguments:
            call.arguments.append(arguments)
            if call.started:
                out.append(ToolCallArguments(call.index, arguments))
        return out

    def _end_calls(self) -> list[EngineEvent]:
        out: list[EngineEvent] = []
        for call in self._order:
            if call.started and call.name:
                arguments = "".join(call.arguments).strip() or "{}"
                try:
                    parsed = orjson.loads(arguments)
                except orjson.JSONDecodeError:
                    raise StreamBroken(
                        f"the upstream's call to {call.name!r} has arguments that are not JSON"
                    ) from None
                if not isinstance(parsed, dict):
                    raise StreamBroken(
                        f"the upstream's call to {call.name!r} has arguments that are not an object"
                    )
                out.append(ToolCallEnd(call.index, call.name, orjson.dumps(parsed).decode()))
                call.started = False
                call.name = ""  # ended: never again
        return out

    def finish(self) -> tuple[list[EngineEvent], Finished]:
        """The end of a stream that completed (``[DONE]`` or a finish reason)."""
        out: list[EngineEvent] = []
        if self._parser is not None:
            for is_thought, text in self._parser.flush():
                out.append(ThoughtDelta(text) if is_thought else TextDelta(text))
        out.extend(self._end_calls())
        reason = _FINISH.get(self.finish_reason or "stop", FinishReason.ERROR)
        error = None
        if reason is FinishReason.ERROR:
            error = f"the upstream ended the answer with finish_reason {self.finish_reason!r}"
        finished = self.counts(reason, error)
        if reason is FinishReason.MAX_TOKENS and finished.output_tokens < self._max_output:
            finished.reason = FinishReason.CONTEXT  # the upstream's context filled up first
        return out, finished

    def counts(self, reason: FinishReason, error: str | None = None) -> Finished:
        """A :class:`Finished` with the upstream's usage, or, where it sent none (an upstream
        without ``include_usage``, a stream cut before its usage chunk), estimated counts:
        the prompt estimate and one token per chunk (as llama-server, vLLM, SGLang and
        llama-cpp-python stream)."""
        usage = self.usage or {}
        prompt = _int(usage.get("prompt_tokens"))
        output = _int(usage.get("completion_tokens"))
        estimated = prompt is None or output is None
        if prompt is None:
            prompt = self._prompt_estimate
        if output is None:
            output = self.content_chunks + self.thought_chunks
        details = usage.get("prompt_tokens_details")
        cached = _int(details.get("cached_tokens")) if isinstance(details, dict) else None
        if cached is None and self.timings is not None:
            cached = _int(self.timings.get("cache_n"))  # llama-server
        out_details = usage.get("completion_tokens_details")
        thought = (
            _int(out_details.get("reasoning_tokens")) if isinstance(out_details, dict) else None
        )
        if thought is None:
            thought = min(self.thought_chunks, output)
        return Finished(
            reason,
            prompt_tokens=prompt,
            output_tokens=output,
            error=error,
            cached_tokens=cached or 0,
            thought_tokens=thought,
            estimated=estimated,
        )


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


async def sse_data(response: httpx.Response) -> AsyncGenerator[bytes, None]:
    """The ``data`` of each server-sent event (multi-line data joined by newlines)."""
    data: list[str] = []
    async for line in response.aiter_lines():
        if not line:
            if data:
                yield "\n".join(data).encode()
                data = []
            continue
        if line.startswith("data:"):
            value = line[5:]
            data.append(value[1:] if value.startswith(" ") else value)
        # Anything else (comments, event:, id:, retry:) is not data (the SSE rules).
    if data:
        yield "\n".join(data).encode()


class Opened:
    """A request an upstream has started answering: the lease on it, the response, and its
    SSE data (``data``, from ``sse_data(response)``), whose first item may have been read
    already (``first``; iterating gives it again, then the rest). ``on_first`` runs when the
    first item is read here instead."""

    __slots__ = ("_on_first", "_pending", "data", "lease", "response")

    def __init__(
        self,
        lease: UpstreamLease,
        response: httpx.Response,
        first: bytes | None,
        data: AsyncGenerator[bytes, None],
        on_first: Callable[[], None] | None = None,
    ) -> None:
        self.lease = lease
        self.response = response
        self.data = data
        self._pending = first
        self._on_first = on_first

    def __aiter__(self) -> Opened:
        return self

    async def __anext__(self) -> bytes:
        pending, self._pending = self._pending, None
        if pending is not None:
            return pending
        item = await anext(self.data)
        if self._on_first is not None:
            on_first, self._on_first = self._on_first, None
            on_first()
        return item

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.data.aclose()
        with contextlib.suppress(Exception):
            await self.response.aclose()


# Opens the request on an upstream other than those given.
Opener = Callable[[set[Upstream]], Awaitable[Opened]]


class StreamCounters:
    """What an engine counts of its streams (for ``stats``)."""

    __slots__ = ("cancelled", "failed", "finished", "retried", "tokens")

    def __init__(self) -> None:
        self.finished = 0
        self.cancelled = 0
        self.failed = 0
        self.retried = 0
        self.tokens = 0

    def count(self, finished: Finished) -> None:
        self.finished += 1
        self.tokens += finished.output_tokens
        if finished.reason is FinishReason.CANCELLED:
            self.cancelled += 1
        elif finished.reason is FinishReason.ERROR:
            self.failed += 1


class RemoteStream:
    """One admitted request on an upstream. Iterate for events; ``cancel`` closes the
    upstream request."""

    def __init__(
        self,
        opened: Opened,
        make_decoder: Callable[[], ChunkDecoder],
        reopen: Opener,
        pool: UpstreamPool,
        counters: StreamCounters,
    ) -> None:
        self.prompt_tokens = 0
        self._opened = opened
        self._make_decoder = make_decoder
        self._reopen = reopen
        self._pool = pool
        self._counters = counters
        self._queue: asyncio.Queue[list[EngineEvent]] = asyncio.Queue()
        self._done = False
        self._cancelled = False
        self._ended = False  # Finished is queued
        self._task = asyncio.create_task(self._pump())

    def cancel(self) -> None:
        if not self._done and not self._cancelled:
            self._cancelled = True
            self._task.cancel()

    async def __aiter__(self) -> AsyncIterator[EngineEvent]:
        try:
            while True:
                for event in await self._queue.get():
                    yield event
                    if isinstance(event, Finished):
                        self._done = True
                        return
        finally:
            # Closing the iterator early (client gone, task cancelled) stops the upstream.
            self.cancel()

    def add_done_callback(self, callback: Callable[[RemoteStream], object]) -> None:
        """``callback(self)`` once the upstream request is closed."""
        self._task.add_done_callback(lambda _task: callback(self))

    async def wait_closed(self) -> None:
        """Until the upstream request is closed (after the end or ``cancel``)."""
        await asyncio.gather(self._task, return_exceptions=True)

    async def _pump(self) -> None:
        decoder = self._make_decoder()
        tried: set[Upstream] = set()
        try:
            while True:
                try:
                    await self._read(decoder)
                except (StreamBroken, UpstreamError, httpx.HTTPError) as exc:
                    reason = _reason(exc)
                    upstream = self._lease.upstream
                    await self._close_response()
                    if isinstance(exc, StreamBroken) and exc.refusal is not None:
                        # The request's fault: any upstream would refuse it, and this one is
                        # fine.
                        log.info("model %s: the upstream refused: %s", self._pool.model_id, reason)
                        message = refused(self._pool.model_id, exc.refusal).message
                        self._end(decoder.counts(FinishReason.ERROR, message))
                        return
                    self._pool.failed(upstream, reason)
                    if decoder.produced:
                        log.warning(
                            "model %s: upstream %s failed mid-answer: %s",
                            self._pool.model_id,
                            upstream.url,
                            reason,
                        )
                        self._end(decoder.counts(FinishReason.ERROR, _client_error(reason)))
                        return
                    # Nothing went out yet: the request starts over on another upstream.
                    log.info("retrying a request that failed before its first token: %s", reason)
                    tried.add(upstream)
                    self._lease.release()
                    try:
                        self._opened = await self._reopen(tried)
                    except GemserveError as retry_exc:
                        log.warning(
                            "model %s: no upstream left to retry on: %s",
                            self._pool.model_id,
                            retry_exc.message,
                        )
                        self._end(Finished(FinishReason.ERROR, 0, 0, retry_exc.message))
                        return
                    self._counters.retried += 1
                    decoder = self._make_decoder()
                    continue
                await self._close_response()
                return
        except asyncio.CancelledError:
            await self._close_response()
            self._end(decoder.counts(FinishReason.CANCELLED))
        except Exception:
            # A bug here must not leave the consumer waiting for an end that never comes.
            log.exception("model %s: reading an upstream stream failed", self._pool.model_id)
            await self._close_response()
            self._end(decoder.counts(FinishReason.ERROR, "The model's upstream stream failed."))
        finally:
            self._lease.release()

    @property
    def _lease(self) -> UpstreamLease:
        return self._opened.lease

    async def _close_response(self) -> None:
        await self._opened.close()

    async def _read(self, decoder: ChunkDecoder) -> None:
        """Read the stream to its end; events go to the queue as they arrive."""
        put = self._queue.put_nowait
        first = True
        async for data in self._opened:
            if data == b"[DONE]":
                decoder.done = True
                break
            try:
                chunk = orjson.loads(data)
            except orjson.JSONDecodeError:
                text = data[:80].decode(errors="replace")
                raise StreamBroken(f"the upstream sent malformed SSE data: {text!r}") from None
            if not isinstance(chunk, dict):
                raise StreamBroken("the upstream sent SSE data that is not a JSON object")
            events = decoder.feed(chunk)
            if events:
                if first:
                    first = False
                    self._pool.succeeded(self._lease.upstream)
                put(events)
        if decoder.finish_reason is None:
            if decoder.done:
                # No upstream ends a whole answer so; llama-cpp-python's server does when
                # another request arrives (interrupt_requests), after the tokens so far.
                raise StreamBroken("the upstream ended the stream without a finish reason")
            raise StreamBroken("the upstream closed the stream before the answer was complete")
        if first:
            self._pool.succeeded(self._lease.upstream)
        events, finished = decoder.finish()
        self._end(finished, events)

    def _end(self, finished: Finished, events: list[EngineEvent] | None = None) -> None:
        if self._ended:
            return
        self._ended = True
        # The upstream's part is over: its capacity is free before the consumer hears so.
        self._lease.release()
        self.prompt_tokens = finished.prompt_tokens
        self._counters.count(finished)
        self._queue.put_nowait([*(events or ()), finished])


def _reason(exc: BaseException) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "the upstream sent nothing for too long (idle timeout)"
    if isinstance(exc, httpx.HTTPError):
        return f"the connection to the upstream broke ({type(exc).__name__})"
    if isinstance(exc, UpstreamError | StreamBroken):
        return str(exc)
    return repr(exc)


def _client_error(reason: str) -> str:
    return f"The model's upstream failed: {reason}."
