"""What every tool-call format provides: one object per model family holds the rendering of
tools, calls and results into the prompt, the grammar of the calls the model may write, and
the parser that reads them back, so that what the model reads in its history is what it is
held to write.

The grammar side is split the way ``grammar.py`` assembles it: ``body_rules`` defines the
rule ``calls_body``, everything a call block holds after its ``opener`` (the trigger of a lazy
grammar); ``grammar.py`` puts the opener in front, or a lazy lexeme of free text ending with
it where the answer's text is constrained too (after results). An ``anchored`` format (Llama
3) has no opener in running text: its calls can only open the answer, so its answer is either
the calls or text that does not start like one.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, Protocol

from gemserve.engine.base import ChatMessage, EngineEvent, ToolSpec, ToolUse
from gemserve.engine.tools.lark import PLAIN, Markers


class ToolCallStage(Protocol):
    """The answer stage of a request with tools (see ``engine/output.py``'s AnswerStage)."""

    def feed(self, text: str) -> list[EngineEvent]: ...

    def flush(self) -> list[EngineEvent]: ...

    @property
    def calls(self) -> int:
        """Calls completed so far."""
        ...

    @property
    def in_call(self) -> bool:
        """A call was started and not finished (the output was cut inside it)."""
        ...


class ToolFormat(ABC):
    """One model family's way of calling tools."""

    name: str
    # Where a call block starts in running text: the lazy grammar's trigger, and the marker
    # ``none`` keeps out of the answer. Anchored formats: what a call starts with.
    opener: str
    anchored: bool = False
    # The starts of the markup results come wrapped in, which an answer to results must not
    # echo (a start, so that a near miss such as ``<tool_response]`` is out too).
    result_markers: tuple[str, ...] = ()
    # The answer to results opens with words: not with markup, nor with a call (one may
    # follow some text). For a model that echoes what it just read, as SmolLM2 does.
    text_first_after_results: bool = False

    @abstractmethod
    def render(
        self, messages: Sequence[ChatMessage], tools: ToolUse | None
    ) -> tuple[tuple[ChatMessage, ...], dict[str, Any]]:
        """The messages for the chat template, and its extra variables (``tools``)."""

    @abstractmethod
    def body_rules(
        self, tools: tuple[ToolSpec, ...], *, parallel: bool, mark: Markers = PLAIN
    ) -> str:
        """Lark rules: ``calls_body`` (after the opener) and whatever it uses; ``mark``
        writes each marker (a special token of the vocabulary, or text)."""

    def markers(self) -> tuple[str, ...]:
        """The markers the grammar writes: where the vocabulary has one as a special token,
        the grammar names that token and the engine shows its text to the parser."""
        return (self.opener,)

    @abstractmethod
    def tool_grammar(self, tool: ToolSpec) -> str:
        """One tool's call alone, as a whole grammar: compiled by itself, its error names
        that tool."""

    @abstractmethod
    def parser(self, tools: tuple[ToolSpec, ...]) -> ToolCallStage:
        """A new parser of one answer's calls, to the declared tools."""

    def banned_at_start(self) -> tuple[str, ...]:
        """What text may not begin with (anchored formats: the starts of a call)."""
        return ()


def declaration(tool: ToolSpec) -> dict[str, Any]:
    """A declaration as the JSON tool lists of chat templates carry it."""
    declared: dict[str, Any] = {"name": tool.name}
    if tool.description:
        declared["description"] = tool.description
    declared["parameters"] = json.loads(tool.parameters)
    return declared


def openai_tool(tool: ToolSpec) -> dict[str, Any]:
    """A declaration in the OpenAI shape HF chat templates read from ``tools``."""
    return {"type": "function", "function": declaration(tool)}


def template_tools(tools: ToolUse | None) -> dict[str, Any]:
    """The ``tools`` variable for a template that renders declarations itself (none when no
    tool may be called: ``none`` keeps them out of the prompt)."""
    offered = tools.callable() if tools is not None else ()
    return {"tools": [openai_tool(t) for t in offered]} if offered else {}
