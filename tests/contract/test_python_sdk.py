"""The official Python SDK (google-genai) against a live gemserve.

The guide's text examples run verbatim; only the environment points the SDK at the server.
The other tests use bounded ``max_output_tokens`` and assert on content, usage and events.
"""

from __future__ import annotations

import functools
import io
import os
import re
from collections.abc import Iterator
from typing import Any

import pytest
from google import genai
from google.genai import _interactions
from google.genai import errors as genai_errors

from gemserve.config.models import DEFAULT_MODEL_ID
from tests.support.contract import (
    API_KEY,
    MODEL,
    AccessLog,
    client_env,
    pick_stop_word,
    run_concurrently,
    seed_guide,
)
from tests.support.engines import on_both_engines
from tests.support.envelope import assert_error_body
from tests.support.guide import PYTHON_EXAMPLES as EXAMPLES
from tests.support.llama import default_spec
from tests.support.server import LiveServer
from tests.support.sse import check_stream_events, check_usage
from tests.support.tokenizer import Tokenizer

pytestmark = pytest.mark.contract
live_server = on_both_engines()


def _run_example(code: str) -> str:
    """Execute one example as a script; return what it printed."""
    out = io.StringIO()

    def captured_print(
        *args: object, sep: str | None = " ", end: str | None = "\n", **_: Any
    ) -> None:
        out.write((" " if sep is None else sep).join(map(str, args)))
        out.write("\n" if end is None else end)

    exec(
        compile(code, "<guide example>", "exec"), {"__name__": "__main__", "print": captured_print}
    )
    return out.getvalue()


@pytest.fixture(scope="module")
def example_runs(live_server: LiveServer) -> dict[str, Any]:
    """All examples at once (the server batches them); the environment is all they are given."""
    log = AccessLog(live_server)
    env = client_env(live_server.base_url)
    with pytest.MonkeyPatch.context() as mp:
        for name in set(os.environ) - set(env):
            mp.delenv(name)
        for name, value in env.items():
            mp.setenv(name, value)
        outputs = run_concurrently(
            {name: functools.partial(_run_example, code) for name, code in EXAMPLES.items()}
        )
    return {"outputs": outputs, "requests": log.lines(expect=len(EXAMPLES))}


def test_examples_are_the_guides_own_code() -> None:
    guide = seed_guide()
    if guide is None:
        pytest.skip("../shared/seed/text-generation.zh.txt is not present")
    for name, code in EXAMPLES.items():
        assert code.strip() in guide, f"example {name!r} differs from the guide"


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_guide_example_runs_verbatim(example_runs: dict[str, Any], name: str) -> None:
    output = example_runs["outputs"][name]
    if isinstance(output, BaseException):
        raise AssertionError(f"example {name!r} raised {output!r}") from output
    assert isinstance(output, str)
    assert output.strip(), f"example {name!r} printed nothing"
    assert re.search(r"[A-Za-z]{2,}", output), f"example {name!r} printed no words: {output!r}"
    if name != "streaming":
        # One print() of the text: it ends with exactly the newline print adds.
        assert output.endswith("\n")


def test_guide_examples_call_v1_once_each(example_runs: dict[str, Any]) -> None:
    """The SDK default API version is v1; each example is one request (nothing retried)."""
    assert example_runs["requests"] == [("POST", "/v1/interactions", 200)] * len(EXAMPLES)


# ----- assertions beyond the examples ---------------------------------------------------------


@pytest.fixture(scope="module")
def client(live_server: LiveServer) -> Iterator[genai.Client]:
    with genai.Client(api_key=API_KEY, http_options={"base_url": live_server.base_url}) as c:
        yield c


def _text(interaction: Any) -> str:
    step = interaction.steps[-1]
    assert step.type == "model_output"
    assert step.content[0].type == "text"
    text = step.content[0].text
    assert isinstance(text, str)
    return text


def test_unary_interaction_shape_and_usage(client: genai.Client, tokenizer: Tokenizer) -> None:
    prompt = "How does AI work?"
    interaction = client.interactions.create(
        model=MODEL,
        input=prompt,
        generation_config={"temperature": 0, "max_output_tokens": 24, "seed": 3},
    )
    assert interaction.id
    assert interaction.model == MODEL
    assert interaction.status in ("completed", "incomplete")
    assert [s.type for s in interaction.steps] == ["model_output"]
    text = _text(interaction)
    assert text.strip()
    assert interaction.output_text == text
    usage = interaction.usage
    assert usage is not None
    check_usage(usage.model_dump())
    # The prompt is the chat-templated conversation: more tokens than the raw input text.
    assert usage.total_input_tokens == tokenizer.prompt_tokens(prompt)
    assert usage.total_input_tokens > tokenizer.count(prompt)
    assert 0 < usage.total_output_tokens <= 24
    if interaction.status == "incomplete":
        assert usage.total_output_tokens == 24
    # Re-tokenizing the answer gives (about) the number of tokens generated.
    assert abs(tokenizer.count(text) - usage.total_output_tokens) <= 2


@pytest.mark.parametrize("limit", [1, 9, 20])
def test_max_output_tokens_is_honoured(
    client: genai.Client, tokenizer: Tokenizer, limit: int
) -> None:
    interaction = client.interactions.create(
        model=MODEL,
        input="Write a long story about a dragon who learns to read.",
        generation_config={"temperature": 0, "max_output_tokens": limit},
    )
    assert interaction.status == "incomplete"
    assert interaction.usage is not None
    assert interaction.usage.total_output_tokens == limit
    text = _text(interaction)
    assert text.strip()
    assert abs(tokenizer.count(text) - limit) <= max(1, limit // 8)


def test_stop_sequence_cuts_the_answer(client: genai.Client) -> None:
    config: dict[str, Any] = {"temperature": 0, "seed": 21, "max_output_tokens": 32}
    prompt = "Explain how the sun produces light."
    baseline = client.interactions.create(model=MODEL, input=prompt, generation_config=config)
    full = _text(baseline)
    stop = pick_stop_word(full)
    cut = client.interactions.create(
        model=MODEL,
        input=prompt,
        generation_config={**config, "stop_sequences": ["@@never@@", stop]},
    )
    assert cut.status == "completed"
    assert _text(cut) == full[: full.index(stop)]
    assert stop not in _text(cut)
    assert cut.usage is not None
    assert baseline.usage is not None
    assert cut.usage.total_output_tokens < baseline.usage.total_output_tokens


def test_same_seed_gives_same_text_and_seeds_matter(client: genai.Client) -> None:
    def sample(seed: int) -> str:
        interaction = client.interactions.create(
            model=MODEL,
            input="Write a poem about the sea.",
            generation_config={"temperature": 1.5, "seed": seed, "max_output_tokens": 24},
        )
        return _text(interaction)

    first = sample(1234)
    assert first.strip()
    assert sample(1234) == first
    # At temperature 1.5 the seed must make a difference, or it is not reaching the sampler.
    assert len({first, sample(1), sample(2)}) > 1


def test_stream_events_and_text_match_unary(client: genai.Client) -> None:
    config: dict[str, Any] = {"temperature": 0, "seed": 9, "max_output_tokens": 20}
    prompt = "Explain how AI works"
    events = [
        e.model_dump(mode="json")
        for e in client.interactions.create(
            model=MODEL, input=prompt, generation_config=config, stream=True
        )
    ]
    streamed = check_stream_events(events)
    unary = client.interactions.create(model=MODEL, input=prompt, generation_config=config)
    assert streamed.strip()
    assert streamed == _text(unary)
    completed = events[-1]["interaction"]
    assert unary.usage is not None
    assert completed["status"] == unary.status
    assert completed["usage"]["total_input_tokens"] == unary.usage.total_input_tokens
    assert completed["usage"]["total_output_tokens"] == unary.usage.total_output_tokens


def test_system_instruction_reaches_the_model(client: genai.Client, tokenizer: Tokenizer) -> None:
    system = "You are a cat. Your name is Neko."
    interaction = client.interactions.create(
        model=MODEL,
        system_instruction=system,
        input="What is your name?",
        generation_config={"temperature": 0, "max_output_tokens": 16},
    )
    # The name reaches the answer: "Neko" on the embedded engine; llama-server, on its own
    # kernels, writes "Nekko" at temperature 0 on some CPUs. Either way the model saw it.
    assert "Nek" in _text(interaction)
    assert interaction.usage is not None
    assert interaction.usage.total_input_tokens == tokenizer.prompt_tokens(
        "What is your name?", system
    )


def test_thinking_level_low_is_accepted(client: genai.Client) -> None:
    interaction = client.interactions.create(
        model=MODEL,
        input="How does AI work?",
        generation_config={"thinking_level": "low", "max_output_tokens": 16},
    )
    assert interaction.status in ("completed", "incomplete")
    assert interaction.steps[-1].type == "model_output"
    assert _text(interaction).strip()


def test_api_version_v1beta(live_server: LiveServer) -> None:
    log = AccessLog(live_server)
    with genai.Client(
        api_key=API_KEY,
        http_options={"base_url": live_server.base_url, "api_version": "v1beta"},
    ) as beta:
        interaction = beta.interactions.create(
            model=MODEL, input="Say hello.", generation_config={"max_output_tokens": 8}
        )
    assert _text(interaction).strip()
    assert log.lines(expect=1) == [("POST", "/v1beta/interactions", 200)]


# ----- models ---------------------------------------------------------------------------------


def test_models_list_and_get(client: genai.Client) -> None:
    spec = default_spec()
    models = list(client.models.list())
    by_name = {m.name: m for m in models}
    assert len(by_name) == len(models), "model names are not unique"
    assert f"models/{DEFAULT_MODEL_ID}" in by_name
    assert f"models/{MODEL}" in by_name
    for model in models:
        assert model.name is not None
        assert model.name.startswith("models/")
        assert model.display_name
        assert model.input_token_limit is not None
        assert model.input_token_limit > 0
        assert model.output_token_limit is not None
        assert model.output_token_limit > 0
        assert model.supported_actions

    got = client.models.get(model=MODEL)
    assert got.name == f"models/{MODEL}"
    assert got.input_token_limit == spec.context_length
    assert got.output_token_limit == spec.output_token_limit
    assert got.display_name == by_name[f"models/{MODEL}"].display_name
    assert got.input_token_limit == by_name[f"models/{MODEL}"].input_token_limit
    assert client.models.get(model=f"models/{MODEL}").name == f"models/{MODEL}"


def test_models_get_unknown_is_404(client: genai.Client) -> None:
    with pytest.raises(genai_errors.ClientError) as info:
        client.models.get(model="no-such-model")
    assert info.value.code == 404
    assert info.value.status == "NOT_FOUND"
    assert "no-such-model" in (info.value.message or "")


# ----- errors through the Interactions client -------------------------------------------------


def test_unknown_model_is_404(client: genai.Client, live_server: LiveServer) -> None:
    log = AccessLog(live_server)
    with pytest.raises(_interactions.NotFoundError) as info:
        client.interactions.create(model="no-such-model", input="Hi")
    assert info.value.status_code == 404
    assert_error_body(info.value.body, 404, "NOT_FOUND", "no-such-model")
    assert log.lines(expect=1) == [("POST", "/v1/interactions", 404)]


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"temperature": 5}, "temperature"),
        ({"max_output_tokens": 0}, "max_output_tokens"),
        ({"top_p": 1.5}, "top_p"),
    ],
)
def test_invalid_generation_config_is_400(
    client: genai.Client, live_server: LiveServer, config: dict[str, Any], field: str
) -> None:
    log = AccessLog(live_server)
    with pytest.raises(_interactions.BadRequestError) as info:
        client.interactions.create(model=MODEL, input="Hi", generation_config=config)
    assert info.value.status_code == 400
    body = info.value.body
    assert isinstance(body, dict)
    error = body["error"]
    assert error["code"] == 400
    assert error["status"] == "INVALID_ARGUMENT"
    assert field in error["message"]
    # 400 is not retried: exactly one request reached the server.
    assert log.lines(expect=1) == [("POST", "/v1/interactions", 400)]
