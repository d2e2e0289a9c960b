"""``LlamaEngine``: the Engine interface over the scheduler thread."""

from __future__ import annotations

import asyncio
from collections import abc
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import llguidance
import numpy as np

from gemserve.engine.base import (
    MEDIA_PLACEHOLDER,
    Constraint,
    EmbeddingInput,
    Embeddings,
    EngineEvent,
    EngineStats,
    Finished,
    FinishReason,
    GenerationRequest,
    ModelCapabilities,
    PromptCount,
    ReasoningControl,
    ToolUse,
)
from gemserve.engine.chat_template import CHATML_TEMPLATE, ChatTemplate, ChatTemplateError
from gemserve.engine.llama.embedding import EmbeddingScheduler, EmbedJob, Pooling
from gemserve.engine.llama.grammar import GrammarPlan, GrammarPlans, first_line
from gemserve.engine.llama.native import LoadedModel
from gemserve.engine.llama.native_thread import NativeThread
from gemserve.engine.llama.projector import MultimodalPrompt, Projector, ProjectorError
from gemserve.engine.llama.sampling import Grammar
from gemserve.engine.llama.scheduler import Scheduler, Sequence
from gemserve.engine.llama.selfcheck import SelfCheckResult, decode_one_batch, injected_fault
from gemserve.engine.llama.specials import NOTHING_SHOWN, ShownTokens, special_tokens
from gemserve.engine.output import SequenceOutput
from gemserve.engine.reasoning import Phase
from gemserve.engine.tools.base import ToolCallStage
from gemserve.engine.tools.formats import FORMATS, JSON_ARRAY, ToolFormat
from gemserve.engine.tools.formats import detect as detect_tool_format
from gemserve.engine.tools.grammar import tool_constraint
from gemserve.engine.tools.lark import Markers
from gemserve.errors import (
    InvalidArgument,
    InvalidConstraint,
    InvalidEmbeddingInput,
    Unavailable,
)


class LlamaStream:
    """Events of one request, fed by the engine thread through ``loop.call_soon_threadsafe``."""

    def __init__(
        self,
        scheduler: Scheduler,
        prompt: list[int],
        request: GenerationRequest,
        output: SequenceOutput,
        media: MultimodalPrompt | None = None,
        grammars: GrammarPlan | None = None,
        close_token: int | None = None,
        shown: ShownTokens = NOTHING_SHOWN,
    ):
        self.prompt_tokens = len(prompt)
        self._queue: asyncio.Queue[list[EngineEvent]] = asyncio.Queue()
        self._scheduler = scheduler
        self._done = False
        self._seq = Sequence(
            prompt=prompt,
            sampling=request.sampling,
            loop=asyncio.get_running_loop(),
            sink=self._queue.put_nowait,
            output=output,
            media=media,
            grammars=grammars,
            thought_floor=request.reasoning.floor if request.reasoning is not None else 0,
            close_token=close_token,
            shown=shown,
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
        mmproj_path: Path | None = None,
        native: NativeThread | None = None,
        tool_format: str | None = None,
        embedding_pooling: Pooling = "mean",
        load_progress: Callable[[float], None] | None = None,
    ) -> None:
        # Every engine of a process should share one NativeThread (see native_thread.py);
        # an engine built alone gets its own.
        self._native = native if native is not None else NativeThread()
        self._owns_native = native is None
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
        self._mmproj_path = mmproj_path
        # The configured tool-call format; by default, the one the chat template speaks.
        self._tool_format_name = tool_format
        self._tool_format: ToolFormat = JSON_ARRAY
        self._projector: Projector | None = None
        self._embedding_pooling: Pooling = embedding_pooling
        # Hears the weights' load (gemserve/progress.py: a bar or log lines at start).
        self._load_progress = load_progress
        self._embedder: EmbeddingScheduler | None = None
        # What the configuration promises until the projector is loaded and says.
        self._modalities = frozenset({"text", "image"} if mmproj_path else {"text"})
        self._grammars = GrammarPlans(self._grammar_error)
        # A thought's closing tag, by its text: its token when it is one (budget forcing).
        self._close_token: dict[str, int | None] = {}
        # The tool format's markers and the thought tags that are special tokens of the
        # vocabulary: the grammar names them by id, the output reads them as text.
        self._tool_markers: dict[str, int] = {}
        self._tag_tokens: dict[str, int] = {}
        self._model: LoadedModel | None = None
        self._scheduler: Scheduler | None = None
        self._template: ChatTemplate | None = None
        self.self_check_result: SelfCheckResult | None = None
        self._steps_before_ready = 0

    @property
    def ready(self) -> bool:
        """Loaded and through its start-up decode: only then does it take requests."""
        return self._scheduler is not None and self.self_check_result is not None

    def capabilities(self) -> ModelCapabilities:
        return ModelCapabilities(
            model_id=self._model_id,
            context_length=self._context_length,
            output_token_limit=self._output_token_limit,
            input_modalities=self._modalities,
            instruction_tuned=self._instruction_tuned,
            embedding_dimensions=self._embedder.n_embd if self._embedder is not None else None,
        )

    async def start(self) -> None:
        """Load the model on the native thread (off the event loop) and attach its scheduler
        (a projector's warm-up computes, and must not start an OpenMP pool elsewhere), then
        decode one small batch: a build that cannot run here fails now, not at a user."""
        await self._native.run(self._load)
        fault = injected_fault()
        if fault is not None:
            await self._native.run(fault)
        result = await decode_one_batch(self._generate, min(self._slots, 4))
        scheduler = self._scheduler
        if scheduler is not None:
            await self._native.run(scheduler.forget_traffic)
            self._steps_before_ready = scheduler.decode_steps
        self.self_check_result = result

    def _load(self) -> None:
        model = LoadedModel(self._path, progress=self._load_progress)
        if self._context_length > model.n_ctx_train:
            self._context_length = model.n_ctx_train
        bos, eos = model.bos_eos_text()
        source = self._template_override or model.chat_template() or CHATML_TEMPLATE
        self._template = ChatTemplate(source, bos_token=bos, eos_token=eos)
        name = self._tool_format_name
        self._tool_format = FORMATS[name] if name is not None else detect_tool_format(source)
        self._tool_markers = special_tokens(model, self._tool_format.markers())
        projector = None
        if self._mmproj_path is not None:
            projector = Projector(self._mmproj_path, model, threads=self._threads)
        scheduler = Scheduler(
            model,
            slots=self._slots,
            context_length=self._context_length,
            batch_tokens=self._batch_tokens,
            threads=self._threads,
            max_queued=self._max_queued,
            native=self._native,
            projector=projector,
        )
        scheduler.start()
        # A second context on the same weights, for embeddings (created on first use).
        embedder = EmbeddingScheduler(
            model,
            capacity=self._context_length,
            batch_tokens=self._batch_tokens,
            threads=self._threads,
            max_queued=self._max_queued,
            native=self._native,
            pooling=self._embedding_pooling,
        )
        embedder.start()
        self._embedder = embedder
        self._model = model
        self._projector = projector
        if projector is not None:
            self._modalities = frozenset(
                {"text"}
                | ({"image"} if projector.vision else set())
                | ({"audio"} if projector.audio else set())
            )
        self._scheduler = scheduler

    async def close(self) -> None:
        scheduler, model, embedder = self._scheduler, self._model, self._embedder
        self._scheduler = None
        self._embedder = None
        self.self_check_result = None
        if embedder is not None:
            await asyncio.to_thread(embedder.stop)
        if scheduler is not None:
            await asyncio.to_thread(scheduler.stop)
        if self._projector is not None:
            self._projector.close()
            self._projector = None
        if model is not None:
            model.free()
            self._model = None
        if self._owns_native:
            await asyncio.to_thread(self._native.close)

    def _require(self) -> tuple[LoadedModel, Scheduler, ChatTemplate]:
        if self._model is None or self._scheduler is None or self._template is None:
            raise Unavailable(f"Model {self._model_id!r} is still loading; retry shortly.")
        return self._model, self._scheduler, self._template

    async def tokenize(self, text: str) -> list[int]:
        model, _, _ = self._require()
        return await asyncio.to_thread(model.tokenize, text, add_special=False)

    def _render(self, request: GenerationRequest) -> tuple[str, Phase]:
        """The prompt text, and where a reasoning model's output starts (before, inside or
        after its thought)."""
        _, _, template = self._require()
        control = request.reasoning
        messages, variables = self._tool_format.render(request.messages, request.tools)
        if control is not None:
            variables["enable_thinking"] = control.budget > 0
        try:
            rendered = template.render(messages, **variables)
        except ChatTemplateError as exc:
            raise InvalidArgument(
                f"The conversation does not fit this model's chat template: {exc}"
            ) from None
        if control is None:
            return rendered, Phase.ANSWER
        tail = rendered.rstrip()
        if control.budget > 0:
            # Some templates open the thought in the generation prompt (DeepSeek-R1 style).
            return rendered, Phase.THOUGHT if tail.endswith(control.open_tag) else Phase.BEFORE
        if not tail.endswith(control.close_tag):
            # Thinking off: an empty thought in the prompt, where the template did not add one.
            opening = "" if tail.endswith(control.open_tag) else control.open_tag
            rendered = f"{rendered}{opening}\n\n{control.close_tag}\n\n"
        return rendered, Phase.ANSWER

    def _prompt_tokens(self, request: GenerationRequest, rendered: str) -> MultimodalPrompt:
        model, _, _ = self._require()
        media = [item for message in request.messages for item in message.media]
        if not media:
            return MultimodalPrompt(tokens=model.tokenize(rendered))
        if self._projector is None:
            raise InvalidArgument(f"Model {self._model_id!r} takes text only.")
        if rendered.count(MEDIA_PLACEHOLDER) != len(media):
            raise InvalidArgument("The chat template dropped or repeated a media part.")
        text = rendered.replace(MEDIA_PLACEHOLDER, self._projector.marker)
        try:
            prompt = self._projector.tokenize(text, media)
        except ProjectorError as exc:
            raise InvalidArgument(f"Model {self._model_id!r}: {exc}.") from None
        too_big = [
            s.n_tokens for s in prompt.spans if s.non_causal and s.n_tokens > self._batch_tokens
        ]
        if too_big:
            self._projector.free(prompt)
            raise InvalidArgument(
                f"A media part of model {self._model_id!r} needs {too_big[0]} tokens in one batch; "
                f"the server's batch is {self._batch_tokens} (raise GEMSERVE_BATCH_TOKENS)."
            )
        return prompt

    def _grammar_error(self, grammar: Grammar) -> str | None:
        model, _, _ = self._require()
        return model.grammar_error(grammar)

    def _prepare(
        self, request: GenerationRequest
    ) -> tuple[MultimodalPrompt, SequenceOutput, GrammarPlan | None, ShownTokens]:
        """In a worker thread: the prompt's tokens, the output's processing, the
        constraint's grammars (validated; an invalid grammar is refused here), and the
        special tokens the output reads as text."""
        control = request.reasoning
        model, _, _ = self._require()
        tags = self._thought_tags(model, control) if control is not None else {}
        constraint, stage = self._output_rules(request)
        grammars = None
        if constraint is not None:
            open_token = tags.get(control.open_tag) if control is not None else None
            grammars = self._plan(constraint, control, request.tools, open_token)
        rendered, phase = self._render(request)
        prompt = self._prompt_tokens(request, rendered)
        close: tuple[int, ...] = ()
        shown = dict(self._tool_markers) if stage is not None else {}
        if control is not None:
            close = tuple(model.tokenize(control.close_tag + "\n\n", add_special=False))
            if control.close_tag not in self._close_token:
                tag = model.tokenize(control.close_tag, add_special=False)
                self._close_token[control.close_tag] = tag[0] if len(tag) == 1 else None
            shown.update(tags)
        output = SequenceOutput(
            stop_sequences=request.sampling.stop_sequences,
            reasoning=control,
            phase=phase,
            close_tokens=close,
            constraint=constraint,
            stage=stage,
        )
        return prompt, output, grammars, ShownTokens.of(shown)

    def _thought_tags(self, model: LoadedModel, control: ReasoningControl) -> dict[str, int]:
        """The thought's tags that are special tokens (Qwen3's, DeepSeek's ``<think>``): the
        thinking parser must read them (a control token renders as nothing)."""
        tags = (control.open_tag, control.close_tag)
        unknown = tuple(tag for tag in tags if tag not in self._tag_tokens)
        if unknown:
            found = special_tokens(model, unknown)
            for tag in unknown:
                self._tag_tokens[tag] = found.get(tag, -1)
        return {tag: self._tag_tokens[tag] for tag in tags if self._tag_tokens[tag] >= 0}

    def _output_rules(
        self, request: GenerationRequest
    ) -> tuple[Constraint | None, ToolCallStage | None]:
        """The request's constraint with its tools folded in, and the parser of its calls."""
        constraint, tools = request.constraint, request.tools
        # The answer to function results must not echo the markup they came wrapped in.
        after_results = bool(request.messages) and request.messages[-1].role == "tool"
        if tools is None and after_results and constraint is None:
            tools = ToolUse((), "none")  # results sent without their declarations
        if tools is None:
            return constraint, None
        if constraint is not None and constraint.syntax != "json_schema":
            raise InvalidArgument(
                f"Model {self._model_id!r} has a grammar of its own (its configuration), so "
                "its output cannot be held to tool calls as well."
            )
        fmt = self._tool_format
        json_answer = constraint.grammar if constraint is not None else None
        combined = tool_constraint(
            fmt,
            tools,
            json_answer,
            after_results=after_results,
            mark=Markers(self._tool_markers),
        )
        if combined is None:
            combined = constraint
        callable_tools = tools.callable()
        stage = fmt.parser(callable_tools) if callable_tools else None
        return combined, stage

    def _plan(
        self,
        constraint: Constraint,
        control: ReasoningControl | None,
        tools: ToolUse | None,
        open_token: int | None = None,
    ) -> GrammarPlan:
        try:
            return self._grammars.get(constraint, control, open_token)
        except InvalidConstraint as exc:
            if tools is None or constraint.syntax != "lark":
                raise
            # Name the tool: compile each one alone.
            for tool in tools.callable():
                grammar = Grammar(
                    llguidance.LLMatcher.grammar_from_lark(self._tool_format.tool_grammar(tool)),
                    syntax="llguidance",
                )
                error = self._grammar_error(grammar)
                if error is not None:
                    raise InvalidConstraint(
                        f"The parameters schema cannot be enforced: {first_line(error)}",
                        tool=tool.name,
                    ) from None
            raise exc from None

    async def count_prompt(self, request: GenerationRequest) -> PromptCount:
        if not self.ready:
            raise Unavailable(f"Model {self._model_id!r} is still loading; retry shortly.")
        return await asyncio.to_thread(self._count, request)

    def _count(self, request: GenerationRequest) -> PromptCount:
        """In a worker thread: the prompt as ``_prepare`` renders and tokenizes it."""
        rendered, _ = self._render(request)
        prompt = self._prompt_tokens(request, rendered)
        if prompt.spans and self._projector is not None:
            self._projector.free(prompt)
        return PromptCount(len(prompt.tokens), prompt.media_tokens)

    async def embed(self, inputs: abc.Sequence[EmbeddingInput]) -> Embeddings:
        embedder = self._embedder
        if not self.ready or embedder is None:
            raise Unavailable(f"Model {self._model_id!r} is still loading; retry shortly.")
        if _inline_tokenizable(inputs):
            texts = self._embedding_tokens(inputs)
        else:
            texts = await asyncio.to_thread(self._embedding_tokens, inputs)
        loop = asyncio.get_running_loop()
        job = EmbedJob(
            texts=texts,
            loop=loop,
            future=loop.create_future(),
            vectors=np.zeros((len(texts), embedder.n_embd), dtype=np.float32),
            remaining=len(texts),
        )
        if texts:
            embedder.submit(job)
        else:
            job.future.set_result(job.vectors)
        try:
            vectors = await job.future
        except asyncio.CancelledError:
            embedder.cancel(job)
            raise
        return Embeddings(vectors, tuple(len(t) for t in texts))

    def _embedding_tokens(self, inputs: abc.Sequence[EmbeddingInput]) -> list[list[int]]:
        """In a worker thread: each input's tokens (the vocabulary's BOS/EOS as it asks),
        checked against the context and the vocabulary."""
        model, _, _ = self._require()
        out: list[list[int]] = []
        for index, item in enumerate(inputs):
            if isinstance(item, str):
                tokens = model.tokenize(item, add_special=True, parse_special=False)
            else:
                tokens = list(item)
                bad = next((t for t in tokens if not 0 <= t < model.n_vocab), None)
                if bad is not None:
                    raise InvalidEmbeddingInput(
                        f"token {bad} is not in the vocabulary of model {self._model_id!r} "
                        f"(0 to {model.n_vocab - 1}).",
                        index=index,
                    )
            if not tokens:
                raise InvalidEmbeddingInput("there is nothing to embed.", index=index)
            if len(tokens) > self._context_length:
                raise InvalidEmbeddingInput(
                    f"the input is {len(tokens)} tokens long, but model {self._model_id!r} "
                    f"embeds at most {self._context_length} tokens per input (its context).",
                    index=index,
                )
            out.append(tokens)
        return out

    async def generate(self, request: GenerationRequest) -> LlamaStream:
        if not self.ready:
            raise Unavailable(f"Model {self._model_id!r} is still loading; retry shortly.")
        return await self._generate(request)

    async def _generate(self, request: GenerationRequest) -> LlamaStream:
        _, scheduler, _ = self._require()
        prompt, output, grammars, shown = await asyncio.to_thread(self._prepare, request)
        media = prompt if prompt.spans else None
        try:
            if len(prompt.tokens) >= self._context_length:
                raise InvalidArgument(
                    f"The input is {len(prompt.tokens)} tokens long, but model "
                    f"{self._model_id!r} has a context of {self._context_length} tokens (prompt "
                    "and output together)."
                )
            control = request.reasoning
            close_token = None if control is None else self._close_token.get(control.close_tag)
            stream = LlamaStream(
                scheduler, prompt.tokens, request, output, media, grammars, close_token, shown
            )
            stream.submit()
        except BaseException:
            if media is not None and self._projector is not None:
                self._projector.free(media)
            raise
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
            decode_steps=scheduler.decode_steps - self._steps_before_ready,
            tokens_generated=scheduler.tokens_generated,
            requests_finished=scheduler.requests_finished,
            requests_cancelled=scheduler.requests_cancelled,
            images_encoded=scheduler.images_encoded,
            peak_active=scheduler.peak_active,
            extra={
                "decode_threads": float(scheduler.threads_now),
                "grammars_cached": float(len(self._grammars)),
                "prompts_shared": float(scheduler.prompts_shared),
                "prefix_hit_tokens": float(scheduler.prefix_hit_tokens),
                "kv_cells_used": float(scheduler.kv_cells_used()),
                "step_seconds": scheduler.step_seconds,
                "steps_timed": float(scheduler.steps_timed),
                **self._embedding_stats(),
            },
        )

    def _embedding_stats(self) -> dict[str, float]:
        embedder = self._embedder
        if embedder is None:
            return {}
        active, queued = embedder.counts()
        return {
            "embedding_texts": float(embedder.texts_embedded),
            "embedding_tokens": float(embedder.tokens_embedded),
            "embedding_decode_steps": float(embedder.decode_steps),
            "embedding_sequences_decoded": float(embedder.sequences_decoded),
            "embedding_threads": float(embedder.threads_now),
            "embedding_skips_output_head": float(embedder.skips_output_head),
            "embedding_output_heads_skipped": float(embedder.output_heads_skipped),
            "embedding_active": float(active),
            "embedding_queued": float(queued),
        }


# Embedding inputs up to this many characters (or token ids), all together, are tokenized on
# the event loop: tens of microseconds, less than the round trip to a worker thread, which on
# two cores busy with the last decode's threads measurably slowed one-text requests.
INLINE_TOKENIZE_CHARS = 4096


def _inline_tokenizable(inputs: abc.Sequence[EmbeddingInput]) -> bool:
    return sum(len(item) for item in inputs) <= INLINE_TOKENIZE_CHARS


__all__ = ["FinishReason", "LlamaEngine", "LlamaStream"]
