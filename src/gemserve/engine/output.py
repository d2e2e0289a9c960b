"""One sequence's output: token bytes in; engine events and signals for the sampler out.

Every generated token's bytes go through the same stages, written once here and used both
per token (:meth:`SequenceOutput.feed`) and when the sequence ends (:meth:`SequenceOutput.finish`):

1. detokenize (``IncrementalDetokenizer``: a UTF-8 character split over tokens waits);
2. reasoning (``ThinkingParser``: thought or answer; thought tokens counted against the budget,
   and the closing tag queued for the engine to write once it is reached);
3. an answer stage: the slot where a tool-call parser goes (:class:`AnswerStage`);
4. stop sequences (``StopMatcher``), on the answer only.

The output also tells the sampler where a request's constraint applies (:class:`Gate`): the
grammar of an answer-scoped constraint is off in the thought and on from the answer, and a lazy
one switches on where a trigger first appears. Pure Python and engine-neutral: no llama.cpp
here, so any engine can run it and every boundary case is unit-testable.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from gemserve.engine.base import (
    Constraint,
    EngineEvent,
    FinishReason,
    ReasoningControl,
    TextDelta,
    ThoughtDelta,
)
from gemserve.engine.reasoning import Phase, ThinkingParser
from gemserve.engine.text import IncrementalDetokenizer, StopMatcher

# Finish reasons whose held-back text is still output (a stop sequence drops it).
_NATURAL_ENDS = frozenset({FinishReason.STOP, FinishReason.MAX_TOKENS, FinishReason.CONTEXT})


class Gate(Enum):
    """Where a request's constraint stands for the next token."""

    OFF = "off"  # sample freely: no constraint, a thought, or no trigger yet
    # Answer scope, and the output may still open a thought: the grammar admits the opening
    # tag or the answer (a reasoning model that skips its thought is still held to it).
    OPENING = "opening"
    ON = "on"  # the constraint's grammar applies


@dataclass(frozen=True, slots=True)
class GateChange:
    """The constraint moves to ``gate`` from the next token on. ``text`` is output already
    generated from the switch point (the trigger's start, the answer's start) that the
    grammar must take first: a token can carry text on both sides of the switch point."""

    gate: Gate
    text: str = ""


class AnswerStage(Protocol):
    """A stage between the reasoning parser and the stop matcher, e.g. a tool-call parser.

    It maps answer text to events: a ``TextDelta`` goes on to stop matching, any other event
    (a tool call) is emitted as it is, in order. It may hold text back between calls.
    """

    def feed(self, text: str) -> list[EngineEvent]: ...

    def flush(self) -> list[EngineEvent]:
        """The output ended: what it still holds."""
        ...


class SequenceOutput:
    """The output side of one sequence: what the engine does with each generated token."""

    __slots__ = (
        "_budget",
        "_close_tokens",
        "_detok",
        "_follow_answer",
        "_longest_trigger",
        "_parser",
        "_simple",
        "_stage",
        "_stopped",
        "_stops",
        "_tail",
        "_trigger_in_answer",
        "_triggers",
        "change",
        "forced",
        "gate",
        "thought_tokens",
    )

    def __init__(
        self,
        *,
        stop_sequences: tuple[str, ...] = (),
        reasoning: ReasoningControl | None = None,
        phase: Phase = Phase.BEFORE,
        close_tokens: tuple[int, ...] = (),
        constraint: Constraint | None = None,
        stage: AnswerStage | None = None,
    ) -> None:
        """``phase``: where the prompt leaves a reasoning model's output (see
        ``ThinkingParser``); ``close_tokens``: the closing tag's tokens, written by the engine
        when the thought reaches ``reasoning.budget``."""
        self._detok = IncrementalDetokenizer()
        self._parser = (
            None
            if reasoning is None
            else ThinkingParser(reasoning.open_tag, reasoning.close_tag, phase=phase)
        )
        self._budget = reasoning.budget if reasoning is not None else 0
        self._close_tokens = close_tokens
        matcher = StopMatcher(stop_sequences)
        self._stops: StopMatcher | None = matcher if any(stop_sequences) else None
        self._stage = stage
        self._stopped = False
        self.thought_tokens = 0
        self.forced: deque[int] = deque()  # tokens the engine writes instead of sampling
        self.change: GateChange | None = None  # set by feed; the engine takes it
        self.gate = Gate.OFF
        self._follow_answer = False
        self._triggers: tuple[str, ...] = ()
        self._trigger_in_answer = False
        self._longest_trigger = 0
        self._tail = ""
        if constraint is not None:
            self._set_up_constraint(constraint)
        # Nothing but detokenizing and stop matching: the common case, kept short.
        self._simple = self._parser is None and stage is None and not self._triggers

    def _set_up_constraint(self, constraint: Constraint) -> None:
        parser = self._parser
        if constraint.triggers:
            self._triggers = tuple(t for t in constraint.triggers if t)
            self._longest_trigger = max((len(t) for t in self._triggers), default=0)
            self._trigger_in_answer = constraint.scope == "answer" and parser is not None
            if not self._triggers:  # only empty triggers: on from the start
                self.gate = Gate.ON
        elif constraint.scope == "output" or parser is None or parser.phase is Phase.ANSWER:
            self.gate = Gate.ON
        else:
            self._follow_answer = True
            self.gate = Gate.OPENING if parser.phase is Phase.BEFORE else Gate.OFF

    @property
    def thinking(self) -> bool:
        """Inside a native thought."""
        return self._parser is not None and self._parser.phase is Phase.THOUGHT

    @property
    def answering(self) -> bool:
        """The next token belongs to the answer (not to a thought)."""
        return self._parser is None or self._parser.phase is Phase.ANSWER

    @property
    def stopped(self) -> bool:
        """A stop sequence ended the output."""
        return self._stopped

    def take_change(self) -> GateChange | None:
        change, self.change = self.change, None
        return change

    # ----- per token ---------------------------------------------------------------------

    def feed(self, piece: bytes, events: list[EngineEvent]) -> bool:
        """One generated token's bytes (not an end-of-generation token). Appends this token's
        events to ``events``; returns whether a stop sequence ended the output."""
        text = self._detok.feed(piece)
        if self._simple:  # no thought, stage or trigger: straight to stop matching
            return self._text(text, events, final=False) if text else False
        return self._route(text, events, final=False)

    def finish(self, reason: FinishReason, events: list[EngineEvent]) -> None:
        """The sequence ended: on a natural end (end of generation, a token limit, the
        context), text held back as a possible tag or stop sequence is output after all. A
        stop sequence, a cancellation or an error drops it."""
        if self._stopped or reason not in _NATURAL_ENDS:
            return
        self._route(self._detok.flush(), events, final=True)

    def _route(self, text: str, events: list[EngineEvent], *, final: bool) -> bool:
        parser = self._parser
        if parser is None:
            answer = text
        else:
            thinking = parser.phase is not Phase.ANSWER
            pieces = parser.feed(text) if text else []
            if final:
                pieces += parser.flush()
            answer = ""
            for is_thought, chunk in pieces:
                if is_thought:
                    events.append(ThoughtDelta(chunk))
                else:
                    answer += chunk
            if thinking and not answer and not final:
                self.thought_tokens += 1
        if not final:
            if self._follow_answer:
                self._gate_answer(answer)
            elif self._triggers:
                self._watch(answer if self._trigger_in_answer else text)
        if self._stage is not None:
            stopped = self._staged(self._stage, answer, events, final=final)
        elif answer or final:
            stopped = self._text(answer, events, final=final)
        else:
            stopped = False
        if (
            parser is not None
            and not final
            and parser.phase is Phase.THOUGHT
            and self.thought_tokens >= self._budget
            and not parser.holding_tag
            and not self.forced
        ):
            # The budget is spent and no tag is half-written: the engine closes the thought.
            self.forced.extend(self._close_tokens)
        return stopped

    def _staged(
        self, stage: AnswerStage, answer: str, events: list[EngineEvent], *, final: bool
    ) -> bool:
        items = stage.feed(answer) if answer else []
        if final:
            items = [*items, *stage.flush()]
        for event in items:
            if isinstance(event, TextDelta):
                if self._text(event.text, events, final=False):
                    return True
                continue
            # Another kind of event ends a run of text: what the stop matcher held is text.
            held = self._stops.flush() if self._stops is not None else ""
            if held:
                events.append(TextDelta(held))
            events.append(event)
        return self._text("", events, final=True) if final else False

    def _text(self, text: str, events: list[EngineEvent], *, final: bool) -> bool:
        stops = self._stops
        stopped = False
        if stops is not None:
            if text:
                text, stopped = stops.feed(text)
            if final and not stopped:
                text += stops.flush()
        if stopped:
            self._stopped = True
        if text:
            events.append(TextDelta(text))
        return stopped

    # ----- where the constraint applies ------------------------------------------------

    def _gate_answer(self, answer: str) -> None:
        """Answer scope: the grammar is off in a thought and on from the answer. ``answer``:
        this token's answer text, which the grammar must take when it switches on here."""
        parser = self._parser
        assert parser is not None
        phase = parser.phase
        if phase is Phase.BEFORE:
            return
        if phase is Phase.THOUGHT:
            want = Gate.OFF
        elif self.gate is Gate.OFF or (self.gate is Gate.OPENING and parser.opened):
            want = Gate.ON
        else:
            # On already, or the opening grammar took the answer directly (no thought).
            return
        if want is not self.gate:
            self.gate = want
            self.change = GateChange(want, answer if want is Gate.ON else "")

    def _watch(self, text: str) -> None:
        """A lazy constraint: look for the first trigger in its scope's text, across tokens."""
        if not text:
            return
        buf = self._tail + text
        first = -1
        for trigger in self._triggers:
            at = buf.find(trigger)
            if at != -1 and (first == -1 or at < first):
                first = at
        if first == -1:
            keep = self._longest_trigger - 1
            self._tail = buf[-keep:] if keep > 0 else ""
            return
        self._triggers = ()
        self._tail = ""
        self._simple = self._parser is None and self._stage is None
        self.gate = Gate.ON
        self.change = GateChange(Gate.ON, buf[first:])
