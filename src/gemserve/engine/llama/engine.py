"""``LlamaEngine``: the Engine interface over the scheduler thread."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

from gemserve.engine.base import (
    EngineEvent,
    EngineStats,
    Finished,
    FinishReason,
    GenerationRequest,
    ModelCapabilities,
)
from gemserve.engine.chat_template import CHATML_TEMPLATE, ChatTemplate, ChatTemplateError
from gemserve.engine.llama.native import LoadedModel
from gemserve.engine.llama.scheduler import Scheduler, Sequence
from gemserve.errors import InvalidArgument, Unavailable


class LlamaStream:
    """Events of one request, fed by the engine thread through ``loop.call_soon_threadsafe``."""

    def __init__(self, scheduler: Scheduler, prompt: list[int], request: GenerationRequest):
        self.prompt_tokens = len(prompt)
        self._queue: asyncio.Queue[list[EngineEvent]] = asyncio.Queue()
        self._scheduler = scheduler
        self._done = False
        self._seq = Sequence(
            prompt=prompt,
            sampling=request.sampling,
            loop=asyncio.get_running_loop(),
            sink=self._queue.put_nowait,
        )

    def submit(self) -> None:
        self._scheduler.submit(self._seq)

    def cancel(self) -> None:
        if not self._done:
            self._scheduler.cancel(self._seq)

    async def __aiter__(self) -> AsyncIterator[EngineEvent]:
        try:
            while True:
                for event in await self._queue.get():
                    yield event
                    if isinstance(event, Finished):
                        self._done = True
                        return
        finally:
            # Closing the iterator early (client gone, task cancelled) frees the slot.
            self.cancel()


class LlamaEngine:
    """Serves one GGUF model from an in-process llama.cpp context with continuous batching."""

    def __init__(
        self,
        *,
        model_id: str,
        gguf_path: Path,
        context_length: int,
        output_token_limit: int,
        slots: int,
        batch_tokens: int,
        threads: int,
        max_queued: int,
        chat_template: str | None = None,
        instruction_tuned: bool = True,
    ) -> None:
        self._model_id = model_id
        self._path = gguf_path
        self._context_length = context_length
        self._output_token_limit = output_token_limit
        self._slots = slots
        self._batch_tokens = batch_tokens
        self._threads = threads
        self._max_queued = max_queued
        self._template_override = chat_template
        self._instruction_tuned = instruction_tuned
        self._model: LoadedModel | None = None
        self._scheduler: Scheduler | None = None
        self._template: ChatTemplate | None = None

    @property
    def ready(self) -> bool:
        return self._scheduler is not None

    def capabilities(self) -> ModelCapabilities:
        return ModelCapabilities(
            model_id=self._model_id,
            context_length=self._context_length,
            output_token_limit=self._output_token_limit,
            instruction_tuned=self._instruction_tuned,
        )

    async def start(self) -> None:
        """Load the model and start the engine thread, off the event loop."""
        await asyncio.to_thread(self._load)

    def _load(self) -> None:
        model = LoadedModel(self._path)
        if self._context_length > model.n_ctx_train:
            self._context_length = model.n_ctx_train
        bos, eos = model.bos_eos_text()
        source = self._template_override or model.chat_template() or CHATML_TEMPLATE
        self._template = ChatTemplate(source, bos_token=bos, eos_token=eos)
        scheduler = Scheduler(
            model,
            slots=self._slots,
            context_length=self._context_length,
            batch_tokens=self._batch_tokens,
            threads=self._threads,
            max_queued=self._max_queued,
        )
        scheduler.start()
        self._model = model
        self._scheduler = scheduler

    async def close(self) -> None:
        scheduler, model = self._scheduler, self._model
        self._scheduler = None
        if scheduler is not None:
            await asyncio.to_thread(scheduler.stop)
        if model is not None:
            model.free()
            self._model = None

    def _require(self) -> tuple[LoadedModel, Scheduler, ChatTemplate]:
        if self._model is None or self._scheduler is None or self._template is None:
            raise Unavailable(f"Model {self._model_id!r} is still loading; retry shortly.")
        return self._model, self._scheduler, self._template

    async def tokenize(self, text: str) -> list[int]:
        model, _, _ = self._require()
        return await asyncio.to_thread(model.tokenize, text, add_special=False)

    def _prompt_tokens(self, request: GenerationRequest) -> list[int]:
        model, _, template = self._require()
        try:
            rendered = template.render(request.messages)
        except ChatTemplateError as exc:
            raise InvalidArgument(
                f"The conversation does not fit this model's chat template: {exc}"
            ) from None
        return model.tokenize(rendered)

    async def generate(self, request: GenerationRequest) -> LlamaStream:
        _, scheduler, _ = self._require()
        prompt = await asyncio.to_thread(self._prompt_tokens, request)
        if len(prompt) >= self._context_length:
            raise InvalidArgument(
                f"The input is {len(prompt)} tokens long, but model {self._model_id!r} has a "
                f"context of {self._context_length} tokens (prompt and output together)."
            )
        stream = LlamaStream(scheduler, prompt, request)
        stream.submit()
        return stream

    def stats(self) -> EngineStats:
        scheduler = self._scheduler
        if scheduler is None:
            return EngineStats(self._slots, 0, 0, 0, 0)
        active, queued = scheduler.counts()
        return EngineStats(
            slots=self._slots,
            active=active,
            queued=queued,
            decode_steps=scheduler.decode_steps,
            tokens_generated=scheduler.tokens_generated,
            requests_finished=scheduler.requests_finished,
            requests_cancelled=scheduler.requests_cancelled,
        )


__all__ = ["FinishReason", "LlamaEngine", "LlamaStream"]
