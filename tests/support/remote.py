"""Building a :class:`RemoteEngine` for tests, and draining its streams."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gemserve.config.remote import RemoteTimeouts, UpstreamKind
from gemserve.engine import (
    ChatMessage,
    EngineEvent,
    Finished,
    GenerationRequest,
    SamplingParams,
    TextDelta,
    ThoughtDelta,
)
from gemserve.engine.remote import RemoteEngine, UpstreamConfig


def remote_engine(
    urls: Sequence[str],
    *,
    cap: int = 8,
    kind: UpstreamKind = "auto",
    timeouts: dict[str, float] | None = None,
    **options: Any,
) -> RemoteEngine:
    """A remote engine over ``urls`` (not started); short timeouts by default."""
    limits = {"connect": 2.0, "first_token": 5.0, "idle": 5.0, "health_interval": 0.2}
    limits.update(timeouts or {})
    return RemoteEngine(
        model_id="pool",
        upstreams=[UpstreamConfig(url, cap, kind=kind) for url in urls],
        timeouts=RemoteTimeouts(**limits),
        output_token_limit=options.pop("output_token_limit", 512),
        **options,
    )


def ask(
    text: str = "Say hello.", *, max_tokens: int = 16, temperature: float = 0.0, **extra: Any
) -> GenerationRequest:
    sampling = SamplingParams(
        temperature=temperature,
        top_p=1.0,
        top_k=0,
        max_output_tokens=max_tokens,
        seed=extra.pop("seed", 0),
        stop_sequences=extra.pop("stop_sequences", ()),
    )
    return GenerationRequest((ChatMessage("user", text),), sampling, **extra)


async def drain(stream: Any) -> tuple[list[EngineEvent], Finished]:
    events: list[EngineEvent] = []
    async for event in stream:
        events.append(event)
    finished = events[-1]
    assert isinstance(finished, Finished), events
    return events[:-1], finished


def text_of(events: Sequence[EngineEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def thought_of(events: Sequence[EngineEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, ThoughtDelta))
