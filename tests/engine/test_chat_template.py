from __future__ import annotations

import pytest

from gemserve.engine.base import ChatMessage
from gemserve.engine.chat_template import CHATML_TEMPLATE, ChatTemplate, ChatTemplateError


def test_chatml_renders_roles_and_generation_prompt() -> None:
    template = ChatTemplate(CHATML_TEMPLATE)
    text = template.render([ChatMessage("system", "Be brief."), ChatMessage("user", "Hi")])
    assert text == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_template_errors_become_chat_template_errors() -> None:
    template = ChatTemplate("{{ raise_exception('System role not supported') }}")
    with pytest.raises(ChatTemplateError, match="System role not supported"):
        template.render([ChatMessage("user", "Hi")])


def test_template_is_sandboxed() -> None:
    template = ChatTemplate("{{ messages.__class__.__mro__ }}")
    with pytest.raises(ChatTemplateError):
        template.render([ChatMessage("user", "Hi")])
