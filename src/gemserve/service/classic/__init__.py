"""The classic surface's adapter onto the turn pipeline: ``generateContent`` requests become
:class:`~gemserve.service.turn_input.TurnInput` (``turns``), turn events become its responses
and stream chunks (``translate``)."""

from gemserve.service.classic.service import GenerateContentService

__all__ = ["GenerateContentService"]
