"""A tiny OpenAI-compatible upstream on loopback, for injecting the faults a real engine does
not make on demand: hanging, 503s, malformed SSE, dying mid-stream.

It serves ``GET /v1/models``, ``GET /health`` and ``POST /v1/chat/completions`` with an
HTTP/1.1 of its own (asyncio streams), in the test's event loop. ``script`` is the list of
behaviours of the next chat requests (one each, then ``default``). Everything it answers
normally is a two-word streamed answer with a usage chunk.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

Behaviour = Literal[
    "ok",  # a streamed answer: "Hello", " world", usage, [DONE]
    "hang",  # never answers (the headers never come)
    "hang_mid",  # headers and one chunk, then silence
    "503",  # 503 with Retry-After: 1
    "429",  # 429 without Retry-After
    "500",  # 500
    "malformed",  # headers, one chunk, then data that is not JSON
    "die_mid",  # headers and one chunk, then the connection is reset and the server stops
    "truncated",  # headers and one chunk, then a clean close without [DONE]
    "die_early",  # headers and a role-only chunk (no token yet), then a reset
    "tool_call",  # a call to get_weather streamed in pieces, as llama-server and vLLM do
    "drop",  # closes the connection without an answer (an idle keep-alive closed in a race)
    "no_usage",  # "ok" without the usage chunk, as llama-cpp-python's server streams
    "interrupted",  # headers and one chunk, then [DONE] without a finish reason
    "refuse_first",  # headers, then a client error (400, context) as the first data
    "fail_first",  # headers, then a server error (500) as the first data
    "refuse_mid",  # headers and one chunk, then a client error (400, context)
]

# llama-server's words for a prompt over its context, as its error objects carry them.
OVER_CONTEXT = {
    "code": 400,
    "message": "request (5000 tokens) exceeds the available context size (4096 tokens), "
    "try increasing it",
    "type": "exceed_context_size_error",
}

WORDS = ("Hello", " world")


def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    body = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "model": "fake-model",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def usage_chunk(prompt: int, completion: int) -> bytes:
    body = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "choices": [],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
    }
    return b"data: " + json.dumps(body).encode() + b"\n\n"


@dataclass
class FakeUpstream:
    script: list[Behaviour] = field(default_factory=list)
    default: Behaviour = "ok"
    owned_by: str = "fake"
    # Seconds between two chunks of an answer.
    delay: float = 0.0
    requests: list[dict[str, Any]] = field(default_factory=list)
    health_checks: int = 0
    # Answers the client hung up on before their end.
    disconnects: int = 0
    _server: asyncio.Server | None = None
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def start(self, port: int = 0) -> FakeUpstream:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", port or self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        """Stop listening and drop every open connection."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._writers):
            with contextlib.suppress(Exception):
                writer.transport.abort()
        self._writers.clear()
        current = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2)

    def queue(self, behaviours: Iterable[Behaviour]) -> None:
        self.script.extend(behaviours)

    @property
    def chats(self) -> int:
        return len(self.requests)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {
                    k.strip().lower(): v.strip()
                    for k, _, v in (line.partition(":") for line in lines[1:] if line)
                }
                length = int(headers.get("content-length", "0"))
                body = await reader.readexactly(length) if length else b""
                if not await self._answer(method, path, body, reader, writer):
                    return
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            return
        except asyncio.CancelledError:
            return
        finally:
            self._tasks.discard(task)
            self._writers.discard(writer)
            with contextlib.suppress(Exception):
                writer.close()

    async def _answer(
        self,
        method: str,
        path: str,
        body: bytes,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> bool:
        """Answer one request; False: the connection is done."""
        if method == "GET" and path == "/v1/models":
            payload = {
                "object": "list",
                "data": [{"id": "fake-model", "object": "model", "owned_by": self.owned_by}],
            }
            await self._json(writer, 200, payload)
            return True
        if method == "GET" and path == "/health":
            self.health_checks += 1
            await self._json(writer, 200, {"status": "ok"})
            return True
        if method != "POST" or path != "/v1/chat/completions":
            await self._json(writer, 404, {"error": {"message": "not found"}})
            return True
        self.requests.append(json.loads(body))
        behaviour = self.script.pop(0) if self.script else self.default
        if behaviour == "hang":
            await asyncio.Event().wait()
        if behaviour == "drop":
            return False
        if behaviour in ("503", "429", "500"):
            extra = {"retry-after": "1"} if behaviour == "503" else {}
            await self._json(
                writer, int(behaviour), {"error": {"message": f"fake {behaviour}"}}, extra
            )
            return True
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"cache-control: no-cache\r\nconnection: close\r\n\r\n"
        )
        if behaviour in ("refuse_first", "fail_first"):
            error = (
                OVER_CONTEXT if behaviour == "refuse_first" else {"code": 500, "message": "boom"}
            )
            writer.write(b"data: " + json.dumps({"error": error}).encode() + b"\n\n")
            await writer.drain()
            return False
        writer.write(chunk({"role": "assistant", "content": ""}))
        if behaviour == "tool_call":
            await self._tool_call(writer)
            return False
        if behaviour == "die_early":
            await writer.drain()
            writer.transport.abort()
            return False
        writer.write(chunk({"content": WORDS[0]}))
        await writer.drain()
        if behaviour == "hang_mid":
            await asyncio.Event().wait()
        if behaviour == "malformed":
            writer.write(b"data: {this is not json\n\n")
            await writer.drain()
            return False
        if behaviour == "die_mid":
            writer.transport.abort()
            await self.stop()
            return False
        if behaviour == "truncated":
            return False
        if behaviour == "refuse_mid":
            writer.write(b"data: " + json.dumps({"error": OVER_CONTEXT}).encode() + b"\n\n")
            await writer.drain()
            return False
        if behaviour == "interrupted":
            writer.write(b"data: [DONE]\n\n")
            await writer.drain()
            return False
        for word in WORDS[1:]:
            if self.delay and await self._hung_up(reader, self.delay):
                self.disconnects += 1
                return False
            writer.write(chunk({"content": word}))
            await writer.drain()
        writer.write(chunk({}, finish="stop"))
        if behaviour != "no_usage":
            writer.write(usage_chunk(7, len(WORDS)))
        writer.write(b"data: [DONE]\n\n")
        await writer.drain()
        return False

    @staticmethod
    async def _tool_call(writer: asyncio.StreamWriter) -> None:
        head = {"index": 0, "id": "call_1", "type": "function"}
        writer.write(chunk({"tool_calls": [{**head, "function": {"name": "get_weather"}}]}))
        for piece in ('{"city', '": "Par', 'is"}'):
            writer.write(chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}))
        writer.write(chunk({}, finish="tool_calls"))
        writer.write(usage_chunk(30, 12))
        writer.write(b"data: [DONE]\n\n")
        await writer.drain()

    @staticmethod
    async def _hung_up(reader: asyncio.StreamReader, seconds: float) -> bool:
        """Wait ``seconds``; True as soon as the client closes the connection."""
        try:
            data = await asyncio.wait_for(reader.read(1), seconds)
        except TimeoutError:
            return False
        return not data

    async def _json(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        payload: dict[str, Any],
        extra: dict[str, str] | None = None,
    ) -> None:
        data = json.dumps(payload).encode()
        head = [f"HTTP/1.1 {status} X", "content-type: application/json"]
        head.append(f"content-length: {len(data)}")
        head.extend(f"{k}: {v}" for k, v in (extra or {}).items())
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + data)
        await writer.drain()
