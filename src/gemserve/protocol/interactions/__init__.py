"""The Interactions surface on the wire: requests (``request``), views and usage (``views``),
stream events and their ids (``events``), the fold of events into an Interaction (``fold``),
and the status values (``status``)."""

from gemserve.protocol.interactions.request import (
    STEP_TYPES,
    SUPPORTED_STEP_TYPES,
    Content,
    CreateInteraction,
    FunctionCallStep,
    FunctionResultStep,
    GenerationConfig,
    InputStep,
    MediaContent,
    ModelOutputStep,
    TextContent,
    ThinkingSummaries,
    ThoughtStep,
    UserInputStep,
    parse_input,
)

__all__ = [
    "STEP_TYPES",
    "SUPPORTED_STEP_TYPES",
    "Content",
    "CreateInteraction",
    "FunctionCallStep",
    "FunctionResultStep",
    "GenerationConfig",
    "InputStep",
    "MediaContent",
    "ModelOutputStep",
    "TextContent",
    "ThinkingSummaries",
    "ThoughtStep",
    "UserInputStep",
    "parse_input",
]
