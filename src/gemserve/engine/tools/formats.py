"""The tool-call formats by name, and which one a chat template speaks.

One :class:`ToolFormat` per family (``base.py``) holds the rendering, the grammar and the
parser, so what the model reads in its history is what it is held to write:

- ``hermes``, ``json_array`` (``json_calls.py``): Hermes/Qwen 2.5/Qwen 3, and SmolLM2's JSON
  array, the fallback for templates without a tool section.
- ``llama3`` (``llama3.py``): Llama 3.1/3.2/3.3 JSON calls with ``parameters``.
- ``mistral_json``, ``mistral_args``, ``mistral_call_id`` (``mistral.py``): ``[TOOL_CALLS]``.
- ``qwen3_coder`` (``qwen3_coder.py``): XML calls with raw parameter values.
"""

from __future__ import annotations

from gemserve.engine.tools.base import ToolFormat
from gemserve.engine.tools.json_calls import HERMES, JSON_ARRAY
from gemserve.engine.tools.llama3 import IPYTHON_HEADER, LLAMA3
from gemserve.engine.tools.mistral import (
    ARGS,
    CALL_ID,
    MISTRAL_ARGS,
    MISTRAL_CALL_ID,
    MISTRAL_JSON,
    TOOL_CALLS,
)
from gemserve.engine.tools.qwen3_coder import QWEN3_CODER

__all__ = ["FORMATS", "HERMES", "JSON_ARRAY", "ToolFormat", "detect"]

FORMATS: dict[str, ToolFormat] = {
    f.name: f
    for f in (
        HERMES,
        JSON_ARRAY,
        LLAMA3,
        MISTRAL_JSON,
        MISTRAL_ARGS,
        MISTRAL_CALL_ID,
        QWEN3_CODER,
    )
}


def detect(template: str) -> ToolFormat:
    """The format a chat template speaks, from the markers it writes. Qwen3-Coder's XML comes
    before Hermes (its template writes ``<tool_call>`` and renders ``tool_calls`` too); a
    template with none of these markers gets the JSON-array format in its prompt."""
    if "<tool_call>" in template and "<function=" in template and "<parameter=" in template:
        return QWEN3_CODER
    if "tools" in template and "<tool_call>" in template and "tool_calls" in template:
        return HERMES
    if IPYTHON_HEADER in template:
        return LLAMA3
    if TOOL_CALLS in template:
        if CALL_ID in template:
            return MISTRAL_CALL_ID
        if ARGS in template:
            return MISTRAL_ARGS
        return MISTRAL_JSON
    return JSON_ARRAY
