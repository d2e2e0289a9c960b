"""Driving an engine directly: requests, greedy sampling, a run collected to its end."""

from __future__ import annotations

from collections.abc import Callable

from gemserve.engine import (
    ChatMessage,
    Engine,
    Finished,
    GenerationRequest,
    SamplingParams,
    TextDelta,
    ThoughtDelta,
)
from tests.support.wait import wait_for

GREEDY = SamplingParams(
    temperature=0.0, top_p=1.0, top_k=0, max_output_tokens=48, repeat_penalty=1.15
)

# An answer that cannot end before 1,500 tokens: the grammar wants a thousand numbers. (The
# bundled model, asked to count, stops on its own after 20 to 80 tokens: a test that must act
# while it still decodes asks for this instead.)
LONG_ANSWER_SCHEMA = {"type": "array", "items": {"type": "integer"}, "minItems": 1000}

# Questions this tiny model answers right at temperature 0, with a word the answer must contain.
QUESTIONS = [
    ("What is the capital of France?", ("paris",)),
    ("What color is the sky on a clear day?", ("blue",)),
    ("How many legs does a dog have?", ("4", "four")),
    ("What is 2 + 2?", ("4", "four")),
    ("What is the opposite of hot?", ("cold",)),
    ("Which animal says meow?", ("cat",)),
    ("What is the capital of France? Answer briefly.", ("paris",)),
    ("Which animal says meow? Answer briefly.", ("cat",)),
]


def request(text: str, sampling: SamplingParams = GREEDY) -> GenerationRequest:
    return GenerationRequest((ChatMessage("user", text),), sampling)


async def run(engine: Engine, req: GenerationRequest) -> tuple[str, Finished]:
    """The whole answer's text and its Finished event."""
    stream = await engine.generate(req)
    pieces: list[str] = []
    finished: Finished | None = None
    async for event in stream:
        if isinstance(event, TextDelta):
            pieces.append(event.text)
        elif isinstance(event, Finished):
            finished = event
    assert finished is not None
    return "".join(pieces), finished


async def poll_engine(condition: Callable[[], bool]) -> None:
    """Poll an engine counter (the engine thread sets no asyncio event), every millisecond so
    a test can count the decode steps that pass meanwhile; bounded so a broken engine fails
    instead of hanging."""
    await wait_for(condition, seconds=30, interval=0.001, what="the engine's counters")


async def thought_and_answer(engine: Engine, req: GenerationRequest) -> tuple[str, str, Finished]:
    """A request's thought text, answer text and ``Finished``."""
    stream = await engine.generate(req)
    thought: list[str] = []
    answer: list[str] = []
    finished = None
    async for event in stream:
        if isinstance(event, ThoughtDelta):
            thought.append(event.text)
        elif isinstance(event, TextDelta):
            answer.append(event.text)
        elif isinstance(event, Finished):
            finished = event
    assert finished is not None
    return "".join(thought), "".join(answer), finished
