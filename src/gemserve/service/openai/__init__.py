"""The OpenAI-compatible surface's adapter onto the turn pipeline: chat completion requests
become :class:`~gemserve.service.turn_input.TurnInput` (``turns``), turn events become
completions and chunks (``translate``)."""

from gemserve.service.openai.service import ChatCompletionService

__all__ = ["ChatCompletionService"]
