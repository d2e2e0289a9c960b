"""Which format a chat template speaks, read off its markers, on minimal templates of each
family (tests/engine/tools/templates.py)."""

from __future__ import annotations

from typing import get_args

import pytest

from gemserve.config.models import ModelSpec
from gemserve.engine.tools.formats import FORMATS, detect
from tests.engine.tools.templates import TEMPLATES


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_each_family_is_detected_from_its_template(name: str) -> None:
    assert detect(TEMPLATES[name]).name == name


def test_qwen3_coder_is_not_taken_for_hermes() -> None:
    # Both write <tool_call> and render tool_calls; only the XML one writes <function=.
    assert "<tool_call>" in TEMPLATES["qwen3_coder"]
    assert detect(TEMPLATES["qwen3_coder"]).name == "qwen3_coder"
    assert detect(TEMPLATES["hermes"]).name == "hermes"


def test_hermes_with_json_calls_stays_hermes() -> None:
    qwen_like = "{% for t in tools %}{% endfor %}<tool_call>{{ m.tool_calls }}"
    assert detect(qwen_like).name == "hermes"
    # A JSON call in a function element is still Hermes without <parameter=.
    assert detect(qwen_like + "<function=x>").name == "hermes"


def test_mistral_variants_by_their_markers() -> None:
    assert detect("[TOOL_CALLS][{{ calls }}]").name == "mistral_json"
    assert detect("[TOOL_CALLS]{{ n }}[ARGS]{{ a }}").name == "mistral_args"
    assert detect("[TOOL_CALLS]{{ n }}[CALL_ID]{{ i }}[ARGS]{{ a }}").name == "mistral_call_id"


def test_templates_without_tool_markers_get_the_json_array() -> None:
    assert detect("{{ messages }}").name == "json_array"
    assert detect("<|start_header_id|>user<|end_header_id|>").name == "json_array"


def test_every_format_can_be_configured() -> None:
    field = ModelSpec.model_fields["tool_format"].annotation
    literal = next(arg for arg in get_args(field) if get_args(arg))
    assert set(get_args(literal)) == set(FORMATS)
