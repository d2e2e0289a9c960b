"""Text assembly from tokens: UTF-8-safe incremental decoding and stop sequences.

Pure Python and engine-independent, so every boundary case is unit-testable.
"""

from __future__ import annotations

import codecs


class IncrementalDetokenizer:
    """Joins token byte pieces into text without ever splitting a UTF-8 sequence.

    A multi-byte character spread over several tokens is held back until it is complete.
    """

    __slots__ = ("_decoder",)

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, piece: bytes) -> str:
        return self._decoder.decode(piece)

    def flush(self) -> str:
        """End of generation: an incomplete character cut off by a token limit is dropped."""
        self._decoder.errors = "ignore"
        return self._decoder.decode(b"", final=True)


class StopMatcher:
    """Finds stop sequences across chunk boundaries.

    Text that could be the start of a stop sequence is held back until it is either
    completed (generation stops, the stop text is dropped) or ruled out (released).
    """

    __slots__ = ("_held", "_stops")

    def __init__(self, stops: tuple[str, ...]) -> None:
        self._stops = tuple(s for s in stops if s)
        self._held = ""

    def feed(self, text: str) -> tuple[str, bool]:
        """Return ``(text safe to emit, stopped)``."""
        if not self._stops:
            return text, False
        buf = self._held + text
        first = -1
        for stop in self._stops:
            at = buf.find(stop)
            if at != -1 and (first == -1 or at < first):
                first = at
        if first != -1:
            self._held = ""
            return buf[:first], True
        hold = 0
        for stop in self._stops:
            for k in range(min(len(stop) - 1, len(buf)), hold, -1):
                if buf.endswith(stop[:k]):
                    hold = k
                    break
        self._held = buf[len(buf) - hold :] if hold else ""
        return buf[: len(buf) - hold], False

    def flush(self) -> str:
        held, self._held = self._held, ""
        return held
