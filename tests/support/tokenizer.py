"""The bundled model's own vocabulary and chat template, for checking usage counts."""

from __future__ import annotations

from gemserve.engine import ChatMessage
from gemserve.engine.chat_template import ChatTemplate
from gemserve.engine.llama.native import LoadedModel


class Tokenizer:
    """The bundled model's own vocabulary and chat template, loaded in the test process."""

    def __init__(self, model: LoadedModel) -> None:
        self._model = model
        bos, eos = model.bos_eos_text()
        source = model.chat_template()
        assert source, "the bundled GGUF has no chat template"
        self._template = ChatTemplate(source, bos_token=bos, eos_token=eos)

    def count(self, text: str) -> int:
        """Tokens of raw text, without special tokens."""
        return len(self._model.tokenize(text, add_special=False))

    def prompt_tokens(self, user: str, system: str | None = None) -> int:
        """Tokens of a one-turn conversation as the chat template renders it."""
        messages = [ChatMessage("user", user)]
        if system is not None:
            messages.insert(0, ChatMessage("system", system))
        return len(self._model.tokenize(self._template.render(messages)))
