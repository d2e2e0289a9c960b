"""SequenceOutput without a model: token bytes in, events and sampler signals out, at every
token boundary."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import pytest

from gemserve.engine.base import (
    Constraint,
    EngineEvent,
    FinishReason,
    ReasoningControl,
    TextDelta,
    ThoughtDelta,
)
from gemserve.engine.output import Gate, GateChange, SequenceOutput
from gemserve.engine.reasoning import Phase

CLOSE = (7, 8)  # stand-ins for the closing tag's token ids


def splits(data: bytes, cuts: int) -> list[list[bytes]]:
    out = []
    for points in itertools.combinations(range(1, len(data)), cuts):
        bounds = (0, *points, len(data))
        out.append([data[a:b] for a, b in itertools.pairwise(bounds)])
    return out


@dataclass
class Run:
    thought: str = ""
    answer: str = ""
    stopped_at: int | None = None  # index of the piece whose feed returned True
    changes: list[tuple[int, GateChange]] = field(default_factory=list)
    events: list[EngineEvent] = field(default_factory=list)


def run(
    output: SequenceOutput,
    pieces: list[bytes],
    reason: FinishReason = FinishReason.STOP,
) -> Run:
    result = Run()
    events: list[EngineEvent] = []
    for i, piece in enumerate(pieces):
        stopped = output.feed(piece, events)
        change = output.take_change()
        if change is not None:
            result.changes.append((i, change))
        if stopped:
            result.stopped_at = i
            break
    output.finish(reason, events)
    for event in events:
        if isinstance(event, ThoughtDelta):
            result.thought += event.text
        elif isinstance(event, TextDelta):
            result.answer += event.text
    result.events = events
    return result


def thinking(budget: int = 1000, **kwargs: object) -> SequenceOutput:
    return SequenceOutput(
        reasoning=ReasoningControl(budget=budget),
        close_tokens=CLOSE,
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("cuts", [1, 2, 3])
def test_tags_split_across_tokens(cuts: int) -> None:
    text = b"<think>\nDogs: 2.\n</think>\n\nFour paws each."
    for pieces in splits(text, cuts):
        result = run(thinking(), pieces)
        assert (result.thought, result.answer) == ("Dogs: 2.\n", "Four paws each."), pieces


@pytest.mark.parametrize("cuts", [1, 2])
def test_utf8_split_across_tokens(cuts: int) -> None:
    text = "<think>Grüße 🙂</think>café 世界".encode()
    for pieces in splits(text, cuts):
        result = run(thinking(), pieces)
        assert (result.thought, result.answer) == ("Grüße 🙂", "café 世界"), pieces
        assert all(
            "\ufffd" not in e.text for e in result.events if isinstance(e, TextDelta | ThoughtDelta)
        )


def test_an_incomplete_character_at_the_end_is_dropped() -> None:
    result = run(SequenceOutput(), [b"ok ", "🙂".encode()[:2]], FinishReason.MAX_TOKENS)
    assert result.answer == "ok "


@pytest.mark.parametrize("cuts", [1, 2, 3])
def test_stop_sequences_across_tokens(cuts: int) -> None:
    text = b"one two END three"
    for pieces in splits(text, cuts):
        output = SequenceOutput(stop_sequences=("END", "never"))
        result = run(output, pieces)
        assert result.answer == "one two ", pieces
        assert result.stopped_at is not None
        assert output.stopped


def test_a_stop_sequence_in_the_thought_does_not_stop_it() -> None:
    text = b"<think>say END here</think>Answer END rest"
    for pieces in splits(text, 2):
        result = run(thinking(stop_sequences=("END",)), pieces)
        assert (result.thought, result.answer) == ("say END here", "Answer "), pieces
        assert result.stopped_at is not None


def test_a_stop_held_back_is_text_at_a_natural_end() -> None:
    for reason in FinishReason:
        result = run(SequenceOutput(stop_sequences=("STOP",)), [b"a S", b"TO"], reason)
        natural = reason in (FinishReason.STOP, FinishReason.MAX_TOKENS, FinishReason.CONTEXT)
        assert result.answer == ("a STO" if natural else "a "), reason


@pytest.mark.parametrize("reason", list(FinishReason))
def test_finish_flushes_held_text_only_at_a_natural_end(reason: FinishReason) -> None:
    natural = reason in (FinishReason.STOP, FinishReason.MAX_TOKENS, FinishReason.CONTEXT)
    # A half-written closing tag in a thought, then held text that may open a thought.
    in_thought = run(thinking(phase=Phase.THOUGHT), [b"plan", b" </thi"], reason)
    assert in_thought.thought == ("plan </thi" if natural else "plan ")
    before = run(thinking(), [b"  <th"], reason)
    assert before.answer == ("<th" if natural else "")
    # A character cut in two by the limit is dropped either way.
    cut = run(SequenceOutput(), [b"x", "é".encode()[:1]], reason)
    assert cut.answer == "x"


def test_nothing_is_flushed_after_a_stop_sequence() -> None:
    output = SequenceOutput(stop_sequences=("END",))
    events: list[EngineEvent] = []
    assert output.feed(b"a END", events)
    output.finish(FinishReason.STOP, events)
    assert events == [TextDelta("a ")]


def test_the_closing_tag_is_forced_at_the_budget() -> None:
    output = thinking(budget=3)
    events: list[EngineEvent] = []
    for piece in (b"<think>", b"one", b" two"):
        assert not output.forced
        output.feed(piece, events)
    assert list(output.forced) == list(CLOSE)
    assert output.thought_tokens == 3
    # Forced once: the engine pops the queue as it writes the tag.
    output.feed(b" three", events)
    assert list(output.forced) == list(CLOSE)


def test_no_tag_is_forced_while_one_is_half_written() -> None:
    output = thinking(budget=2, phase=Phase.THOUGHT)
    events: list[EngineEvent] = []
    output.feed(b"idea", events)
    output.feed(b" </th", events)  # the budget is reached with a tag half-written
    assert not output.forced
    output.feed(b"ought", events)  # not a tag after all
    assert list(output.forced) == list(CLOSE)


def test_answer_tokens_do_not_count_as_thought() -> None:
    result_output = thinking()
    run(result_output, [b"<think>", b"a", b"</think>", b"x", b"y"])
    assert result_output.thought_tokens == 3  # the opening tag, "a" and the closing tag


# ----- where the constraint applies ------------------------------------------------------

ANSWER = Constraint('root ::= "x"', scope="answer")
OUTPUT = Constraint('root ::= "x"', scope="output")


def test_an_output_scoped_or_unreasoned_constraint_is_on_from_the_start() -> None:
    assert thinking(constraint=OUTPUT).gate is Gate.ON
    assert SequenceOutput(constraint=ANSWER).gate is Gate.ON
    assert thinking(constraint=ANSWER, phase=Phase.ANSWER).gate is Gate.ON  # thinking off
    assert SequenceOutput().gate is Gate.OFF


@pytest.mark.parametrize("cuts", [1, 2, 3])
def test_an_answer_scoped_constraint_switches_on_with_the_answer(cuts: int) -> None:
    text = b"<think>a\n</think>\n\n{x}"
    for pieces in splits(text, cuts):
        output = thinking(constraint=ANSWER)
        assert output.gate is Gate.OPENING
        result = run(output, pieces)
        gates = [change.gate for _, change in result.changes]
        # Off in the thought, unless one token both opens and closes it.
        assert gates in ([Gate.OFF, Gate.ON], [Gate.ON]), pieces
        on_at, on = result.changes[-1]
        # The grammar takes the answer text of the token it switched on at: the text after
        # the closing tag, less the whitespace the parser drops (the wrapper takes later ws).
        consumed = b"".join(pieces[: on_at + 1])
        assert on.text == consumed[len(b"<think>a\n</think>") :].decode().lstrip(), pieces
        assert result.answer == "{x}"


def test_an_answer_without_a_thought_keeps_the_opening_grammar() -> None:
    output = thinking(constraint=ANSWER)
    result = run(output, [b"\n", b"{x", b"}"])
    assert result.changes == []
    assert output.gate is Gate.OPENING
    assert result.answer == "{x}"


def test_a_thought_opened_by_the_prompt_starts_unconstrained() -> None:
    output = thinking(constraint=ANSWER, phase=Phase.THOUGHT)
    assert output.gate is Gate.OFF
    result = run(output, [b"hm", b"</think>", b"\n\n", b"{x}"])
    assert [(i, c.gate, c.text) for i, c in result.changes] == [(1, Gate.ON, "")]


def test_the_answer_gate_opens_after_a_forced_closing_tag() -> None:
    output = thinking(budget=1, constraint=ANSWER, phase=Phase.THOUGHT)
    events: list[EngineEvent] = []
    output.feed(b"long thought", events)
    assert list(output.forced) == list(CLOSE)
    output.forced.clear()
    output.feed(b"</think>", events)  # what the engine writes from the forced tokens
    assert output.take_change() == GateChange(Gate.ON, "")


LAZY = Constraint('root ::= "<tool>" [a-z]+', scope="answer", triggers=("<tool>", "@@"))


@pytest.mark.parametrize("cuts", [1, 2, 3])
def test_a_trigger_split_across_tokens(cuts: int) -> None:
    text = b"free text <tool>call"
    for pieces in splits(text, cuts):
        output = SequenceOutput(constraint=LAZY)
        assert output.gate is Gate.OFF
        result = run(output, pieces)
        assert len(result.changes) == 1, pieces
        at, change = result.changes[0]
        consumed = b"".join(pieces[: at + 1]).decode()
        assert change.gate is Gate.ON
        # From the trigger's start to the end of the token that completed it.
        assert change.text == consumed[consumed.index("<tool>") :], pieces
        assert consumed.endswith(change.text)
        assert result.answer == "free text <tool>call"


def test_the_first_trigger_wins() -> None:
    result = run(SequenceOutput(constraint=LAZY), [b"a @", b"@ <tool>"])
    assert [c for _, c in result.changes] == [GateChange(Gate.ON, "@@ <tool>")]


def test_an_answer_scoped_trigger_in_the_thought_is_ignored() -> None:
    output = thinking(constraint=LAZY)
    result = run(output, [b"<think>use <to", b"ol> later</think>", b"ok <tool>", b"go"])
    assert [(i, c.text) for i, c in result.changes] == [(2, "<tool>")]


def test_an_output_scoped_trigger_fires_in_the_thought() -> None:
    lazy = Constraint(LAZY.grammar, scope="output", triggers=LAZY.triggers)
    result = run(thinking(constraint=lazy), [b"<think>use <to", b"ol> later"])
    assert [(i, c.text) for i, c in result.changes] == [(1, "<tool> later")]


def test_a_trigger_that_starts_inside_a_split_character() -> None:
    lazy = Constraint('root ::= "éa" [a-z]+', triggers=("éa",))
    for pieces in splits("xéab".encode(), 2):
        result = run(SequenceOutput(constraint=lazy), pieces)
        [(at, change)] = result.changes
        consumed = b"".join(pieces[: at + 1]).decode()
        assert change.text == consumed[consumed.index("é") :], pieces


# ----- the answer stage (a tool-call parser goes here) -----------------------------------


class Marker:
    """A stage that turns "<call>" into an event (a ThoughtDelta stands in for a call)."""

    def __init__(self) -> None:
        self.held = ""

    def feed(self, text: str) -> list[EngineEvent]:
        buf = self.held + text
        out: list[EngineEvent] = []
        while "<call>" in buf:
            before, buf = buf.split("<call>", 1)
            if before:
                out.append(TextDelta(before))
            out.append(ThoughtDelta("CALL"))
        keep = next((k for k in range(5, 0, -1) if buf.endswith("<call>"[:k])), 0)
        self.held = buf[len(buf) - keep :] if keep else ""
        if buf[: len(buf) - keep]:
            out.append(TextDelta(buf[: len(buf) - keep]))
        return out

    def flush(self) -> list[EngineEvent]:
        held, self.held = self.held, ""
        return [TextDelta(held)] if held else []


def test_the_stage_sits_between_the_parser_and_the_stop_matcher() -> None:
    output = thinking(stage=Marker(), stop_sequences=("ST",))
    result = run(output, [b"<think>no <call> here</think>", b"a S", b"<ca", b"ll>b <", b"c"])
    kinds = [(type(e).__name__, e.text) for e in result.events if hasattr(e, "text")]
    assert kinds == [
        ("ThoughtDelta", "no <call> here"),
        ("TextDelta", "a "),
        ("TextDelta", "S"),  # held as a possible stop, released by the event
        ("ThoughtDelta", "CALL"),
        ("TextDelta", "b "),
        ("TextDelta", "<c"),  # the stage's held text, flushed at the end
    ]


def test_a_stop_sequence_in_the_stage_output_stops() -> None:
    output = SequenceOutput(stage=Marker(), stop_sequences=("END",))
    result = run(output, [b"x E", b"ND <call>"])
    assert result.answer == "x "
    assert result.stopped_at == 1
    assert not any(isinstance(e, ThoughtDelta) for e in result.events)
