"""The Interactions surface's adapter onto the turn pipeline: its requests become
:class:`~gemserve.service.turn_input.TurnInput` (``turns``), turn events become its wire events
(``translate``), and runs are stored and followed as event logs (``service``)."""

from gemserve.service.interactions.service import InteractionService

__all__ = ["InteractionService"]
