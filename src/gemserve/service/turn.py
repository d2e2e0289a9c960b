"""The one turn pipeline every API surface runs: input in, a stream of turn events out.

``prepare`` does everything that can fail on the request, before the engine sees it: the
model and its engine, sampling, the thinking plan, thoughts restored from signatures, media
loaded, decoded and rendered, the chat messages. ``admit`` hands the request to the engine
(a prompt too long for the context fails here, still before any response byte). The
returned :class:`StartedTurn` yields surface-neutral events (``turn_events.py``), which each
surface translates into its own wire format.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from gemserve.config import Limits, ModelRegistry, ModelSpec
from gemserve.engine import (
    ChatMessage,
    Constraint,
    Engine,
    Finished,
    GenerationRequest,
    GenerationStream,
    SamplingParams,
    TextDelta,
    ThoughtDelta,
    TokenLogprob,
    ToolCallArguments,
    ToolCallEnd,
    ToolCallStart,
)
from gemserve.errors import InvalidArgument, InvalidConstraint, Unavailable
from gemserve.protocol.schema import check_json_schema
from gemserve.service.conversation import build_messages
from gemserve.service.media import MediaPipeline
from gemserve.service.sampling import sampling_params
from gemserve.service.signatures import ThoughtSealer, ThoughtSigner
from gemserve.service.thinking import (
    ThinkingPlan,
    first_request,
    plan_thinking,
    restore_thoughts,
    start_turn,
)
from gemserve.service.tools import pair_calls, tool_use, tool_where
from gemserve.service.turn_events import (
    CallArguments,
    CallEnd,
    CallStart,
    ThoughtEnd,
    TurnDone,
    TurnEvent,
    TurnUsage,
)
from gemserve.service.turn_input import EnumOutput, TurnInput
from gemserve.service.usage import InputAccounting

if TYPE_CHECKING:
    from gemserve.service.metrics import Metrics, TurnMeter


class TurnPipeline:
    def __init__(
        self,
        registry: ModelRegistry,
        engines: Mapping[str, Engine],
        limits: Limits,
        media: MediaPipeline,
        signer: ThoughtSigner,
        metrics: Metrics | None = None,
    ) -> None:
        self._registry = registry
        self._engines = engines
        self._limits = limits
        self._media = media
        self._signer = signer
        self._metrics = metrics  # every surface's turns are observed here, once

    @property
    def limits(self) -> Limits:
        return self._limits

    def model(self, name: str) -> tuple[ModelSpec, Engine]:
        """The model a name (id or alias) resolves to, and its engine once it is ready."""
        spec = self._registry.resolve(name).spec
        engine = self._engines.get(spec.id)
        if engine is None or not engine.ready:
            raise Unavailable(f"Model {spec.id!r} is still loading; retry shortly.")
        return spec, engine

    async def prepare(
        self, turn: TurnInput, *, tenant: str, own_hosts: frozenset[str] = frozenset()
    ) -> PreparedTurn:
        """Validate and render the turn for its model; raises every client error there is
        (short of the context check, which needs the engine's tokenizer and template)."""
        spec, engine = self.model(turn.model)
        sampling = sampling_params(turn.knobs, spec, self._limits, turn.knob_path)
        plan = plan_thinking(turn.thinking, spec)
        messages = pair_calls(restore_thoughts(turn.conversation, self._signer, spec.thinking))
        tools = tool_use(turn.tools, self._limits)
        prepared = await self._media.prepare(
            messages,
            tenant=tenant,
            model=engine.capabilities(),
            others={model_id: e.capabilities() for model_id, e in self._engines.items()},
            own_hosts=own_hosts,
        )
        chat = build_messages(prepared, turn.system, self._limits)
        derived = [
            (modality, len(await engine.tokenize(text))) for modality, text in prepared.derived_text
        ]
        accounting = InputAccounting(tuple(prepared.media_modalities), tuple(derived))
        request = GenerationRequest(
            chat, sampling, constraint=self._constraint(turn, spec), tools=tools
        )
        return PreparedTurn(
            spec, engine, request, plan, accounting, self._signer, turn, tenant, self._metrics
        )

    def _constraint(self, turn: TurnInput, spec: ModelSpec) -> Constraint | None:
        output = turn.output
        if output is None:
            return Constraint(spec.grammar, scope="output") if spec.grammar is not None else None
        if spec.grammar is not None:
            raise InvalidArgument(
                f"Invalid value at '{output.where}': model {spec.id!r} has a grammar of its "
                "own (its configuration), so its output cannot be held to a schema as well."
            )
        if isinstance(output, EnumOutput):
            choices = " | ".join(json.dumps(value) for value in output.values)
            return Constraint(f"start: {choices}", scope="answer", syntax="lark")
        schema = check_json_schema(
            output.schema, output.where, max_bytes=self._limits.max_schema_bytes
        )
        return Constraint(json.dumps(schema), scope="answer", syntax="json_schema")


@dataclass(frozen=True)
class PreparedTurn:
    spec: ModelSpec
    engine: Engine
    request: GenerationRequest
    plan: ThinkingPlan
    accounting: InputAccounting
    signer: ThoughtSigner
    turn: TurnInput
    tenant: str = ""
    metrics: Metrics | None = None

    @property
    def messages(self) -> tuple[ChatMessage, ...]:
        return self.request.messages

    async def count(self) -> TurnCount:
        """The prompt tokens ``admit`` would prefill (what usage reports as input tokens), per
        modality, without generating; a prompt over the context is counted too."""
        counted = await self.engine.count_prompt(first_request(self.request, self.plan))
        return TurnCount(
            counted.tokens,
            self.accounting.split(counted.tokens, counted.media_tokens),
            counted.estimated,
        )

    async def admit_candidates(self, request_id: str, count: int) -> Candidates:
        """``count`` answers to the same prompt, decoded side by side (the engine shares the
        prompt's KV cache between them). A request's seed gives candidate ``i`` seed + i, so
        the candidates differ and the set is reproducible. All or none are admitted."""
        seed = self.request.sampling.seed
        started: list[StartedTurn] = []
        try:
            for i in range(count):
                sampling = replace(
                    self.request.sampling, seed=None if seed is None else (seed + i) % 2**32
                )
                started.append(await self.admit(f"{request_id}.{i}" if i else request_id, sampling))
        except BaseException:
            for turn in started:
                turn.cancel()
            raise
        return Candidates(started)

    async def admit(self, request_id: str, sampling: SamplingParams | None = None) -> StartedTurn:
        """Hand the turn to the engine (the thinking plan picks how); ``request_id`` names it
        in logs and binds its thought signatures."""
        request = GenerationRequest(
            self.request.messages,
            sampling or self.request.sampling,
            request_id,
            constraint=self.request.constraint,
            tools=self.request.tools,
            affinity=conversation_affinity(self.request.messages),
        )
        meter = None if self.metrics is None else self.metrics.turn(self.spec.id, self.tenant)
        try:
            stream = await start_turn(self.engine, request, self.plan)
        except InvalidConstraint as exc:
            if exc.tool is not None or self.turn.output is None:
                where = tool_where(self.turn.tools, exc.tool)
            else:
                where = self.turn.output.where
            raise InvalidArgument(f"Invalid value at '{where}': {exc.message}") from None
        except InvalidArgument as exc:
            if self.turn.history_items:
                raise InvalidArgument(
                    f"{exc.message} The history of {self.turn.history_items} earlier steps "
                    "counts toward the context; start a new conversation or shorten it."
                ) from None
            raise
        sealer = ThoughtSealer(self.signer, self.spec.id, request_id)
        return StartedTurn(
            stream, self.accounting, sealer, summaries=self.plan.summaries, meter=meter
        )


class StartedTurn:
    """An admitted turn. Iterate :meth:`events` once; ``cancel`` stops it within one decode
    step (the events then end with a cancelled :class:`TurnDone`)."""

    def __init__(
        self,
        stream: GenerationStream,
        accounting: InputAccounting,
        sealer: ThoughtSealer,
        *,
        summaries: bool,
        meter: TurnMeter | None = None,
    ) -> None:
        self._stream = stream
        self._meter = meter
        self._accounting = accounting
        self._sealer = sealer
        self.summaries = summaries  # the client asked for the thought text, not only a signature

    @property
    def prompt_tokens(self) -> int:
        return self._stream.prompt_tokens

    def cancel(self) -> None:
        self._stream.cancel()

    async def events(self) -> AsyncIterator[TurnEvent]:
        """The thought (if the model thought) as deltas closed by its signature, then the
        answer's deltas, then exactly one :class:`TurnDone`. A thought that resumes after the
        answer began is not part of this turn."""
        thought: list[str] | None = None
        answering = False
        finished: Finished | None = None
        ids: dict[int, str] = {}
        meter = self._meter
        try:
            async for event in self._stream:
                if meter is not None and not isinstance(event, Finished | TokenLogprob):
                    meter.piece()
                if isinstance(event, ToolCallStart | ToolCallArguments | ToolCallEnd):
                    if thought is not None:
                        yield ThoughtEnd(self._sealer.seal("".join(thought).strip()))
                        thought = None
                    answering = True
                    call = _call_event(event, ids)
                    if call is not None:
                        yield call
                elif isinstance(event, TokenLogprob):
                    yield event
                elif isinstance(event, TextDelta):
                    if thought is not None:
                        yield ThoughtEnd(self._sealer.seal("".join(thought).strip()))
                        thought = None
                    answering = True
                    yield event
                elif isinstance(event, ThoughtDelta):
                    if answering:
                        continue
                    if thought is None:
                        thought = []
                    thought.append(event.text)
                    yield event
                elif isinstance(event, Finished):
                    finished = event
            assert finished is not None
            if thought is not None:
                yield ThoughtEnd(self._sealer.seal("".join(thought).strip()))
            usage = self._usage(finished)
            if meter is not None:
                meter.done(finished.reason, usage)
            yield TurnDone(finished.reason, usage, finished.error)
        finally:
            # Closing this generator early must stop generation.
            self._stream.cancel()

    async def collect(self) -> CollectedTurn:
        """The whole turn at once, for the surfaces' non-streaming responses."""
        thought: list[str] = []
        answer: list[str] = []
        calls: list[CallEnd] = []
        logprobs: list[TokenLogprob] = []
        signature: str | None = None
        done: TurnDone | None = None
        try:
            async for event in self.events():
                if isinstance(event, CallEnd):
                    calls.append(event)
                elif isinstance(event, TokenLogprob):
                    logprobs.append(event)
                elif type(event) is TextDelta:
                    answer.append(event.text)
                elif type(event) is ThoughtDelta:
                    thought.append(event.text)
                elif isinstance(event, ThoughtEnd):
                    signature = event.signature
                elif isinstance(event, TurnDone):
                    done = event
        finally:
            self.cancel()
        assert done is not None
        return CollectedTurn(
            "".join(thought).strip(),
            "".join(answer),
            signature,
            done,
            tuple(calls),
            tuple(logprobs),
        )

    def _usage(self, finished: Finished) -> TurnUsage:
        return TurnUsage(
            input_tokens=finished.prompt_tokens,
            output_tokens=finished.output_tokens - finished.thought_tokens,
            thought_tokens=finished.thought_tokens,
            cached_tokens=finished.cached_tokens,
            input_by_modality=self._accounting.by_modality(finished),
            estimated=finished.estimated,
        )


def conversation_affinity(messages: tuple[ChatMessage, ...]) -> str | None:
    """A key naming the conversation: a digest of its first user message (text and media).
    Every later turn starts with that message, whether the client sends the history
    (classic chats, OpenAI) or the server rebuilds it from a ``previous_interaction_id``
    chain (the chain's first stored interaction), so a pool of upstreams can send each turn
    where the conversation's prefix is cached."""
    first = next((m for m in messages if m.role == "user"), None)
    if first is None:
        return None
    digest = hashlib.blake2b(first.text.encode(), digest_size=12)
    for item in first.media:
        digest.update(item.digest.encode())
    return digest.hexdigest()


def _call_event(
    event: ToolCallStart | ToolCallArguments | ToolCallEnd, ids: dict[int, str]
) -> CallStart | CallArguments | CallEnd | None:
    """An engine's call event as the turn's, each call with an id of its own."""
    if isinstance(event, ToolCallStart):
        ids[event.index] = f"call_{secrets.token_urlsafe(12)}"
        return CallStart(event.index, ids[event.index], event.name)
    call_id = ids.get(event.index)
    if call_id is None:
        return None
    if isinstance(event, ToolCallArguments):
        return CallArguments(event.index, event.text)
    return CallEnd(event.index, call_id, event.name, json.loads(event.arguments))


@dataclass(frozen=True)
class TurnCount:
    tokens: int
    by_modality: dict[str, int]
    estimated: bool = False  # the engine could not count on its own template


class Candidates:
    """The answers to one request (``candidateCount``, ``n``): admitted together, cancelled
    together."""

    def __init__(self, turns: list[StartedTurn]) -> None:
        assert turns
        self.turns = turns

    @property
    def summaries(self) -> bool:
        return self.turns[0].summaries

    def cancel(self) -> None:
        for turn in self.turns:
            turn.cancel()


@dataclass(frozen=True)
class CollectedTurn:
    thought: str
    answer: str
    signature: str | None  # the thought's, when the model thought
    done: TurnDone
    calls: tuple[CallEnd, ...] = ()  # the function calls, in order
    logprobs: tuple[TokenLogprob, ...] = ()  # per answer token, when asked for
