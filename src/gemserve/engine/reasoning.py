"""Splitting a reasoning model's output into thought and answer, chunk by chunk.

Native reasoning models write ``<think>…</think>`` (or another pair of tags) before the
answer. :class:`ThinkingParser` routes each piece of decoded text to the thought or to the
answer, holding back text that could be the start of a tag until it is settled, so tags split
across tokens are found. Pure Python and engine-independent, like ``engine/text.py``.
"""

from __future__ import annotations

from enum import Enum


class Phase(Enum):
    BEFORE = "before"  # nothing decided yet: the output may or may not open a thought
    THOUGHT = "thought"
    ANSWER = "answer"


Piece = tuple[bool, str]  # (is_thought, text)


def _held_suffix(text: str, tag: str) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of ``tag``."""
    for k in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:k]):
            return k
    return 0


class ThinkingParser:
    __slots__ = (
        "_answer_started",
        "_buffer",
        "_close",
        "_open",
        "_thought_started",
        "opened",
        "phase",
    )

    def __init__(self, open_tag: str, close_tag: str, *, phase: Phase = Phase.BEFORE) -> None:
        """``phase``: THOUGHT when the prompt already opened the thought, ANSWER when it
        already closed it (thinking switched off)."""
        self._open = open_tag
        self._close = close_tag
        self.phase = phase
        self._buffer = ""
        self._thought_started = False
        self._answer_started = False
        # The output itself opened a thought (not the prompt).
        self.opened = False

    @property
    def holding_tag(self) -> bool:
        """Text that may be the start of a tag is held back (do not force a tag now)."""
        return bool(self._buffer)

    def feed(self, text: str) -> list[Piece]:
        out: list[Piece] = []
        buf = self._buffer + text
        self._buffer = ""
        while buf:
            if self.phase is Phase.BEFORE:
                head = buf.lstrip()
                if head.startswith(self._open):
                    self.phase = Phase.THOUGHT
                    self.opened = True
                    buf = head[len(self._open) :]
                    continue
                if self._open.startswith(head):  # still possibly the opening tag
                    self._buffer = buf
                    break
                self.phase = Phase.ANSWER
                continue
            if self.phase is Phase.THOUGHT:
                if not self._thought_started:
                    buf = buf.lstrip()
                    if not buf:
                        break
                    self._thought_started = True
                at = buf.find(self._close)
                if at != -1:
                    if at:
                        out.append((True, buf[:at]))
                    self.phase = Phase.ANSWER
                    buf = buf[at + len(self._close) :]
                    continue
                hold = _held_suffix(buf, self._close)
                if len(buf) > hold:
                    out.append((True, buf[: len(buf) - hold]))
                self._buffer = buf[len(buf) - hold :] if hold else ""
                break
            # ANSWER: the whitespace between the closing tag and the answer is not the answer.
            if not self._answer_started:
                buf = buf.lstrip()
                if not buf:
                    break
                self._answer_started = True
            out.append((False, buf))
            break
        return out

    def flush(self) -> list[Piece]:
        """End of output: held text is what it was heading to be."""
        held, self._buffer = self._buffer, ""
        if not held:
            return []
        if self.phase is Phase.THOUGHT:
            return [(True, held)]
        if not self._answer_started:
            held = held.lstrip()
            if not held:
                return []
        return [(False, held)]
