"""Thinking: a level becomes a token budget, and the model's profile picks how it thinks.

``native``: the engine parses the model's own thought tags, closes the thought at the budget
and switches thinking off for a zero budget. ``two_pass``: for a model that does not think
by itself, a first pass writes reasoning under the budget, and a second pass answers with
that reasoning in front of it (the second prompt extends the first, so its KV cache is
reused and only the short follow-up is prefilled). Either way the result is one stream of
``ThoughtDelta`` … ``TextDelta`` … ``Finished``, which the event builder turns into a
``thought`` step and a ``model_output`` step.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace

from gemserve.config import ModelSpec
from gemserve.config.models import ThinkingLevel, ThinkingProfile
from gemserve.engine import (
    ChatMessage,
    Engine,
    EngineEvent,
    Finished,
    FinishReason,
    GenerationRequest,
    GenerationStream,
    ReasoningControl,
    TextDelta,
    ThoughtDelta,
    without_media_placeholder,
)
from gemserve.errors import GemserveError, InvalidArgument
from gemserve.service.signatures import ThoughtSigner, is_placeholder
from gemserve.service.turn_input import (
    ConversationItem,
    Message,
    TextPart,
    ThinkingRequest,
    Thought,
)

log = logging.getLogger("gemserve.thinking")

THINK_INSTRUCTION = (
    "Before answering, think about my message step by step: what is asked, what you know "
    "that is relevant, and how to answer well. Write only your reasoning, not the answer."
)
# Restating a short question helps small models answer it rather than continue reasoning.
ANSWER_INSTRUCTION = "Using that reasoning, answer: {question}"
ANSWER_INSTRUCTION_LONG = "Using that reasoning, answer my message above."
RESTATE_LIMIT = 400  # characters of the question restated in the answering pass


@dataclass(frozen=True)
class ThinkingPlan:
    level: ThinkingLevel
    budget: int  # thinking tokens; 0 means no thinking
    summaries: bool  # return the thought text as the step's summary
    profile: ThinkingProfile
    floor: int = 0  # the fewest thinking tokens (budget forcing); at most ``budget``


def plan_thinking(request: ThinkingRequest, spec: ModelSpec) -> ThinkingPlan:
    profile = spec.thinking
    level: ThinkingLevel
    if request.level is not None:
        level = request.level
    elif profile.default_level is not None:
        level = profile.default_level
    else:
        level = "medium" if profile.mode == "native" else "minimal"
    floor = 0
    if profile.mode == "off":
        budget = 0
    elif request.budget is not None:
        budget = request.budget
    else:
        budget = profile.budgets[level]
        floor = profile.floor(level)
    return ThinkingPlan(level, budget, request.summaries, profile, floor)


async def start_turn(
    engine: Engine, request: GenerationRequest, plan: ThinkingPlan
) -> GenerationStream:
    """Admit the request (errors surface here, before any response) and return its stream."""
    profile = plan.profile
    if profile.mode == "two_pass" and plan.budget > 0:
        return await TwoPassTurn.start(engine, request, plan.budget, plan.floor)
    return await engine.generate(first_request(request, plan))


def first_request(request: GenerationRequest, plan: ThinkingPlan) -> GenerationRequest:
    """What the engine is handed first for this plan: its prompt is the turn's prompt (the
    input tokens usage reports, and what countTokens counts)."""
    profile = plan.profile
    if profile.mode == "native":
        control = ReasoningControl(profile.open_tag, profile.close_tag, plan.budget, plan.floor)
        return replace(request, reasoning=control)
    if profile.mode == "two_pass" and plan.budget > 0:
        return TwoPassTurn.first_request(request, plan.budget, plan.floor)
    return request


class TwoPassTurn:
    """Reason first (budgeted), then answer with the reasoning in the conversation."""

    def __init__(
        self,
        engine: Engine,
        request: GenerationRequest,
        thinking_messages: tuple[ChatMessage, ...],
        first: GenerationStream,
    ) -> None:
        self._engine = engine
        self._request = request
        self._thinking_messages = thinking_messages
        self._current = first
        self._cancelled = False
        self.prompt_tokens = first.prompt_tokens

    @classmethod
    async def start(
        cls, engine: Engine, request: GenerationRequest, budget: int, floor: int = 0
    ) -> TwoPassTurn:
        reasoning = cls.first_request(request, budget, floor)
        first = await engine.generate(reasoning)
        return cls(engine, request, reasoning.messages, first)

    @staticmethod
    def first_request(request: GenerationRequest, budget: int, floor: int = 0) -> GenerationRequest:
        """The reasoning pass: the request with the instruction to reason, within ``budget``
        and at least ``floor`` tokens long (its end of generation is banned until then)."""
        messages = _append_to_last_user(request.messages, THINK_INSTRUCTION)
        sampling = replace(
            request.sampling,
            max_output_tokens=budget,
            min_output_tokens=floor,
            stop_sequences=(),
            logprobs=None,
        )
        return replace(request, messages=messages, sampling=sampling, constraint=None, tools=None)

    def cancel(self) -> None:
        self._cancelled = True
        self._current.cancel()

    async def __aiter__(self) -> AsyncIterator[EngineEvent]:
        pieces: list[str] = []
        first: Finished | None = None
        async for event in self._current:
            if isinstance(event, TextDelta):
                pieces.append(event.text)
                yield ThoughtDelta(event.text)
            elif isinstance(event, Finished):
                first = event
        assert first is not None
        if self._cancelled or first.reason in (FinishReason.CANCELLED, FinishReason.ERROR):
            yield replace(first, thought_tokens=first.output_tokens)
            return
        second = await self._second_pass("".join(pieces).strip())
        if isinstance(second, Finished):
            yield _combined(first, second)
            return
        self._current = second
        if self._cancelled:
            second.cancel()
        async for event in second:
            if isinstance(event, Finished):
                yield _combined(first, event)
            else:
                yield event

    async def _second_pass(self, thought: str) -> GenerationStream | Finished:
        request = self._request
        if thought:
            messages = (
                *self._thinking_messages,
                ChatMessage("assistant", thought),
                ChatMessage("user", _answer_instruction(request.messages)),
            )
            try:
                return await self._engine.generate(replace(request, messages=messages))
            except InvalidArgument:
                log.info("the reasoning does not fit the context; answering without it")
        try:
            return await self._engine.generate(request)
        except GemserveError as exc:
            log.warning("the answering pass could not start: %s", exc.message)
            return Finished(FinishReason.ERROR, 0, 0, exc.message)


def _append_to_last_user(
    messages: tuple[ChatMessage, ...], instruction: str
) -> tuple[ChatMessage, ...]:
    for i in range(len(messages) - 1, -1, -1):
        message = messages[i]
        if message.role == "user":
            updated = replace(message, text=f"{message.text}\n\n{instruction}")
            return (*messages[:i], updated, *messages[i + 1 :])
    return (*messages, ChatMessage("user", instruction))


def _answer_instruction(messages: tuple[ChatMessage, ...]) -> str:
    question = next((m.text for m in reversed(messages) if m.role == "user"), "")
    question = without_media_placeholder(question).strip()
    if not question or len(question) > RESTATE_LIMIT:
        return ANSWER_INSTRUCTION_LONG
    return ANSWER_INSTRUCTION.format(question=question)


def _combined(first: Finished, second: Finished) -> Finished:
    """One turn's result: the first pass's prompt and thought, the second pass's answer."""
    return Finished(
        reason=second.reason,
        prompt_tokens=first.prompt_tokens,
        output_tokens=first.output_tokens + second.output_tokens,
        error=second.error,
        cached_tokens=first.cached_tokens,
        media_tokens=first.media_tokens,
        thought_tokens=first.output_tokens,
        estimated=first.estimated or second.estimated,
    )


# ----- thoughts in history --------------------------------------------------------------------


def restore_thoughts(
    items: Sequence[ConversationItem], signer: ThoughtSigner, profile: ThinkingProfile
) -> list[Message]:
    """Verify every thought's signature (400 if tampered) and, for a native model, put each
    thought back in front of the model turn that followed it, in the model's format.

    Stored thoughts come from the server's own store: they are trusted, and one whose
    signature no longer opens (the key changed) falls back to its summary.
    """
    out: list[Message] = []
    pending: str | None = None
    for item in items:
        if isinstance(item, Thought):
            pending = _thought_text(item, signer)
            continue
        if item.role == "model" and pending and profile.mode == "native":
            thought = f"{profile.open_tag}\n{pending}\n{profile.close_tag}\n"
            item = Message("model", (TextPart(thought), *item.parts))
        pending = None
        out.append(item)
    return out


def _thought_text(thought: Thought, signer: ThoughtSigner) -> str | None:
    if thought.stored:
        opened = signer.open(thought.signature) if thought.signature else None
        return opened.text if opened is not None else thought.summary
    field = f"{thought.where}.{thought.signature_field}"
    if thought.signature is None or is_placeholder(thought.signature):
        # Clients drop signatures (Gemini accepts that too): the turn goes on without the
        # thought, whose text only the signature can carry.
        return None
    return signer.verify(thought.signature, field).text
