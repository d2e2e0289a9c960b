"""Function calling through every client: the Python SDK (Interactions, classic
``generate_content`` with its automatic function calling, chats), the ``openai`` SDK, the JS SDK
and curl (wire-protocol.md §10.1, §10.3, §10.5).

Every call the server produces must name a declared function, carry an id that its result can
answer, and have arguments that validate against the schema declared for it. The bundled model
seldom chooses a call by itself, so the calls here are forced (``any``, ``required``,
``allowed_tools``, a named function); ``auto`` and ``validated`` are only checked to be
well-formed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from typing import Any

import jsonschema
import openai
import pytest
from google import genai
from google.genai import _interactions, types

from tests.support.contract import API_KEY, MODEL, run_js_example
from tests.support.server import LiveServer
from tests.support.sse import check_usage, parse_sse

pytestmark = pytest.mark.contract

ASK = "What is the weather in Paris?"
# Two questions. Alone, the bundled model answers them with one call or two (a near tie); after
# an earlier turn of two parallel calls (PARALLEL_SHOT) it makes two calls, even at temperature 1.
ASK_TWO = "What is the weather in Paris, and what time is it in Tokyo?"
CITY = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
WEATHER: dict[str, Any] = {
    "type": "function",
    "name": "get_weather",
    "description": "Get the current weather in a city.",
    "parameters": CITY,
}
TIME: dict[str, Any] = {
    "type": "function",
    "name": "get_time",
    "description": "Get the current time in a city.",
    "parameters": CITY,
}
# A schema with keywords a free-running model would break: bounds, a length, no extra keys.
STRICT_TIME: dict[str, Any] = {
    **TIME,
    "parameters": {
        "type": "object",
        "properties": {
            "city": {"type": "string", "maxLength": 32},
            "utc_offset_hours": {"type": "integer", "minimum": -12, "maximum": 14},
        },
        "required": ["city", "utc_offset_hours"],
        "additionalProperties": False,
    },
}
# What get_weather "returns".
RESULT = {"temperature_c": 21, "sky": "sunny"}
# No call marker ever leaks into answer text (the parser takes it, or the grammar bans it).
MARKUP = ("<tool_call>", "</tool_call>")
SMALL = {"temperature": 0, "max_output_tokens": 64}
# A stateless history: a turn of two parallel calls, both results, the answer, a new question.
PARALLEL_SHOT: list[dict[str, Any]] = [
    {
        "type": "user_input",
        "content": [{"type": "text", "text": "What is the weather in Rome, and the time in Oslo?"}],
    },
    {"type": "function_call", "id": "c1", "name": "get_weather", "arguments": {"city": "Rome"}},
    {"type": "function_call", "id": "c2", "name": "get_time", "arguments": {"city": "Oslo"}},
    {
        "type": "function_result",
        "call_id": "c1",
        "name": "get_weather",
        "result": {"temperature_c": 25, "sky": "clear"},
    },
    {"type": "function_result", "call_id": "c2", "result": "14:05", "is_error": False},
    {
        "type": "model_output",
        "content": [{"type": "text", "text": "It is clear and 25 °C in Rome, and 14:05 in Oslo."}],
    },
    {"type": "user_input", "content": [{"type": "text", "text": ASK_TWO}]},
]


@pytest.fixture(scope="module")
def client(live_server: LiveServer) -> genai.Client:
    return genai.Client(
        api_key=API_KEY, http_options=types.HttpOptions(base_url=live_server.base_url)
    )


@pytest.fixture(scope="module")
def oai(live_server: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(api_key=API_KEY, base_url=f"{live_server.base_url}/v1beta/openai/")


# ----- checks shared by every client ------------------------------------------------------------


def check_call(
    call: Mapping[str, Any], tools: Sequence[Mapping[str, Any]], args_key: str = "arguments"
) -> dict[str, Any]:
    """A produced call names a declared function, has an id, and its arguments validate."""
    declared = {t["name"]: t["parameters"] for t in tools}
    assert call["name"] in declared, call
    assert isinstance(call["id"], str)
    assert call["id"]
    arguments = call[args_key]
    assert isinstance(arguments, dict), call
    jsonschema.validate(arguments, declared[call["name"]])
    return arguments


def function_calls(steps: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [s for s in steps if s["type"] == "function_call"]


def check_requires_action(
    interaction: Mapping[str, Any], tools: Sequence[Mapping[str, Any]]
) -> list[Mapping[str, Any]]:
    """A turn that ends in calls: function_call steps with distinct ids and valid arguments."""
    assert interaction["status"] == "requires_action", interaction
    steps = interaction["steps"]
    calls = function_calls(steps)
    assert calls, steps
    # Only calls, after the thought step of a thinking turn.
    only_calls = ["function_call"] * len(calls)
    assert [s["type"] for s in steps] in (only_calls, ["thought", *only_calls]), steps
    for call in calls:
        check_call(call, tools)
    assert len({c["id"] for c in calls}) == len(calls), calls
    check_usage(interaction["usage"])
    return calls


def answer_text(interaction: Mapping[str, Any]) -> str:
    """The plain-text answer of a finished turn: one model_output, no calls, no markup."""
    assert interaction["status"] in ("completed", "incomplete"), interaction
    steps = interaction["steps"]
    assert not function_calls(steps), steps
    assert steps[-1]["type"] == "model_output", steps
    text = steps[-1]["content"][0]["text"]
    assert isinstance(text, str)
    assert text.strip()
    for marker in MARKUP:
        assert marker not in text, text
    return text


def check_call_stream(
    events: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """A streamed turn of calls (§10.1): per call ``step.start`` (function_call, id, name,
    empty arguments), ``arguments_delta``s that join to valid JSON, ``step.stop``; then
    ``interaction.completed`` with ``requires_action``. Returns the calls as joined."""
    kinds = [e["event_type"] for e in events]
    assert kinds[:2] == ["interaction.created", "interaction.status_update"], kinds
    assert kinds[-1] == "interaction.completed", kinds
    calls: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    for event in events[2:-1]:
        kind = event["event_type"]
        if kind == "step.start":
            assert current is None, kinds
            step = event["step"]
            assert step["type"] == "function_call", event
            assert step["arguments"] == {}, event
            current = {"index": event["index"], "id": step["id"], "name": step["name"]}
            current["pieces"] = []
        elif kind == "step.delta":
            assert current is not None, kinds
            assert event["index"] == current["index"], event
            assert event["delta"]["type"] == "arguments_delta", event
            assert isinstance(event["delta"]["arguments"], str), event
            current["pieces"].append(event["delta"]["arguments"])
        else:
            assert kind == "step.stop", kinds
            assert current is not None, kinds
            assert event["index"] == current["index"], event
            assert current["pieces"], f"no arguments_delta for {current}"
            joined = "".join(current.pop("pieces"))
            current["arguments"] = json.loads(joined)
            check_call(current, tools)
            calls.append(current)
            current = None
    assert current is None, kinds
    assert calls, kinds
    first = calls[0]["index"]
    assert [c["index"] for c in calls] == list(range(first, first + len(calls))), calls
    assert len({c["id"] for c in calls}) == len(calls), calls
    completed = events[-1]["interaction"]
    assert completed["id"] == events[0]["interaction"]["id"]
    assert completed["status"] == "requires_action", completed
    check_usage(completed["usage"])
    return calls


def results_for(calls: Sequence[Mapping[str, Any]], result: Any = None) -> list[dict[str, Any]]:
    return [
        {"type": "function_result", "call_id": c["id"], "name": c["name"], "result": result}
        for c in calls
    ]


def dump(model: Any) -> dict[str, Any]:
    """An SDK object as the JSON it came from."""
    out: dict[str, Any] = model.model_dump(mode="json", exclude_none=True)
    return out


# ----- Interactions through the Python SDK -------------------------------------------------------


def test_forced_call_then_result_through_previous_interaction_id(client: genai.Client) -> None:
    called = client.interactions.create(
        model=MODEL,
        input=ASK,
        tools=[WEATHER],
        generation_config={**SMALL, "tool_choice": "any"},
    )
    (call,) = check_requires_action(dump(called), [WEATHER])
    assert call["name"] == "get_weather"
    # The stored turn holds the user's input and the very same call.
    stored = dump(client.interactions.get(called.id))
    assert stored["status"] == "requires_action"
    assert [s["type"] for s in stored["steps"]] == ["user_input", "function_call"]
    assert stored["steps"][1] == call

    answered = client.interactions.create(
        model=MODEL,
        previous_interaction_id=called.id,
        tools=[WEATHER],
        input=results_for([call], RESULT),
        generation_config=SMALL,
    )
    assert answered.previous_interaction_id == called.id
    answer_text(dump(answered))
    # The call was answered: the same result cannot be sent for it a second time.
    with pytest.raises(_interactions.BadRequestError) as info:
        client.interactions.create(
            model=MODEL,
            previous_interaction_id=answered.id,
            tools=[WEATHER],
            input=results_for([call], RESULT),
        )
    assert "call_id" in info.value.body["error"]["message"]


def test_the_same_round_trip_statelessly(client: genai.Client) -> None:
    called = client.interactions.create(
        model=MODEL,
        input=ASK,
        tools=[WEATHER],
        store=False,
        generation_config={**SMALL, "tool_choice": "any"},
    )
    (call,) = check_requires_action(dump(called), [WEATHER])
    history = [
        {"type": "user_input", "content": [{"type": "text", "text": ASK}]},
        call,
        *results_for([call], RESULT),
    ]
    stateless = client.interactions.create(
        model=MODEL, input=history, tools=[WEATHER], store=False, generation_config=SMALL
    )
    answer_text(dump(stateless))
    assert stateless.previous_interaction_id is None

    # The stored path renders the very same prompt from the same history.
    stored = client.interactions.create(
        model=MODEL,
        input=ASK,
        tools=[WEATHER],
        generation_config={**SMALL, "tool_choice": "any"},
    )
    (again,) = check_requires_action(dump(stored), [WEATHER])
    assert again["arguments"] == call["arguments"]
    answered = client.interactions.create(
        model=MODEL,
        previous_interaction_id=stored.id,
        tools=[WEATHER],
        input=results_for([again], RESULT),
        generation_config=SMALL,
    )
    answer_text(dump(answered))
    assert answered.usage.total_input_tokens == stateless.usage.total_input_tokens


def test_streamed_call_arguments_deltas_join_to_valid_json(client: genai.Client) -> None:
    stream = client.interactions.create(
        model=MODEL,
        input=ASK,
        tools=[WEATHER],
        stream=True,
        generation_config={**SMALL, "tool_choice": "any"},
    )
    events = [dump(event) for event in stream]
    (call,) = check_call_stream(events, [WEATHER])
    assert call["name"] == "get_weather"

    # The stored interaction holds the streamed call under the id that step.start announced.
    iid = events[0]["interaction"]["id"]
    stored = dump(client.interactions.get(iid))
    assert stored["status"] == "requires_action"
    (step,) = function_calls(stored["steps"])
    assert step == {k: call[k] for k in ("id", "name", "arguments")} | {"type": "function_call"}
    # The same request unary produces the same arguments (temperature 0).
    unary = client.interactions.create(
        model=MODEL,
        input=ASK,
        tools=[WEATHER],
        generation_config={**SMALL, "tool_choice": "any"},
    )
    (unary_call,) = check_requires_action(dump(unary), [WEATHER])
    assert unary_call["arguments"] == call["arguments"]

    answered = client.interactions.create(
        model=MODEL,
        previous_interaction_id=iid,
        tools=[WEATHER],
        input=results_for([call], RESULT),
        generation_config=SMALL,
    )
    answer_text(dump(answered))


def test_tool_choice_none_answers_in_text(client: genai.Client) -> None:
    interaction = client.interactions.create(
        model=MODEL,
        input=ASK,
        tools=[WEATHER],
        generation_config={"temperature": 0, "max_output_tokens": 32, "tool_choice": "none"},
    )
    answer_text(dump(interaction))


@pytest.mark.parametrize("choice", ["auto", "validated"])
def test_auto_and_validated_are_well_formed(client: genai.Client, choice: str) -> None:
    interaction = dump(
        client.interactions.create(
            model=MODEL,
            input=ASK,
            tools=[WEATHER, TIME],
            generation_config={"temperature": 0, "max_output_tokens": 64, "tool_choice": choice},
        )
    )
    if function_calls(interaction["steps"]):
        check_requires_action(interaction, [WEATHER, TIME])
    else:
        answer_text(interaction)


def test_allowed_tools_restricts_the_call(client: genai.Client) -> None:
    # The question is about the weather, yet only get_time may be called.
    interaction = client.interactions.create(
        model=MODEL,
        input=ASK,
        tools=[WEATHER, STRICT_TIME],
        generation_config={
            **SMALL,
            "tool_choice": {"allowed_tools": {"mode": "any", "tools": ["get_time"]}},
        },
    )
    calls = check_requires_action(dump(interaction), [WEATHER, STRICT_TIME])
    assert [c["name"] for c in calls] == ["get_time"] * len(calls)


def test_parallel_calls_are_several_steps_and_all_need_results(client: genai.Client) -> None:
    called = client.interactions.create(
        model=MODEL,
        input=PARALLEL_SHOT,  # stored: the calls are answered through previous_interaction_id
        tools=[WEATHER, TIME],
        generation_config={"temperature": 0, "max_output_tokens": 128, "tool_choice": "any"},
    )
    calls = check_requires_action(dump(called), [WEATHER, TIME])
    assert [c["name"] for c in calls] == ["get_weather", "get_time"]
    # Fresh ids: none of the history's ids is reused.
    assert not {c["id"] for c in calls} & {"c1", "c2"}

    # Results for only some of the calls: a 400 naming the call left unanswered.
    with pytest.raises(_interactions.BadRequestError) as info:
        client.interactions.create(
            model=MODEL,
            previous_interaction_id=called.id,
            tools=[WEATHER, TIME],
            input=results_for(calls[:1], RESULT),
        )
    assert calls[1]["id"] in info.value.body["error"]["message"]

    results = results_for(calls[:1], RESULT) + results_for(calls[1:], "09:00")
    answered = client.interactions.create(
        model=MODEL,
        previous_interaction_id=called.id,
        tools=[WEATHER, TIME],
        input=results[::-1],  # results may come in any order
        generation_config=SMALL,
    )
    answer_text(dump(answered))


def test_streamed_parallel_calls(client: genai.Client) -> None:
    stream = client.interactions.create(
        model=MODEL,
        input=PARALLEL_SHOT,
        tools=[WEATHER, TIME],
        store=False,
        stream=True,
        generation_config={"temperature": 0, "max_output_tokens": 128, "tool_choice": "any"},
    )
    calls = check_call_stream([dump(event) for event in stream], [WEATHER, TIME])
    assert [c["name"] for c in calls] == ["get_weather", "get_time"]


def test_stateless_history_with_parallel_calls(client: genai.Client) -> None:
    history = PARALLEL_SHOT[:5]
    answered = client.interactions.create(
        model=MODEL, input=history, tools=[WEATHER, TIME], store=False, generation_config=SMALL
    )
    answer_text(dump(answered))
    # A result missing for one of the calls is refused, naming that call ...
    with pytest.raises(_interactions.BadRequestError) as info:
        client.interactions.create(
            model=MODEL, input=history[:4], tools=[WEATHER, TIME], store=False
        )
    assert "'c2'" in info.value.body["error"]["message"]
    # ... and so is a result that answers no call of the turn before it.
    with pytest.raises(_interactions.BadRequestError) as info:
        client.interactions.create(
            model=MODEL,
            input=[*history[:4], {**history[4], "call_id": "c3"}],
            tools=[WEATHER, TIME],
            store=False,
        )
    assert "call_id" in info.value.body["error"]["message"]


def test_thinking_with_calls_and_signatures_round_trip(client: genai.Client) -> None:
    config = {**SMALL, "tool_choice": "any", "thinking_level": "low"}
    called = dump(
        client.interactions.create(
            model=MODEL, input=ASK, tools=[WEATHER], store=False, generation_config=config
        )
    )
    calls = check_requires_action(called, [WEATHER])
    thought = called["steps"][0]
    assert thought["type"] == "thought", called["steps"]
    assert thought["signature"]
    history = [
        {"type": "user_input", "content": [{"type": "text", "text": ASK}]},
        *called["steps"],
        *results_for(calls, RESULT),
    ]
    config = {**SMALL, "thinking_level": "low"}
    answered = client.interactions.create(
        model=MODEL, input=history, tools=[WEATHER], store=False, generation_config=config
    )
    answer_text(dump(answered))
    # Clients drop signatures: a thought step without one is accepted.
    unsigned = [{k: v for k, v in step.items() if k != "signature"} for step in history]
    answered = client.interactions.create(
        model=MODEL, input=unsigned, tools=[WEATHER], store=False, generation_config=config
    )
    answer_text(dump(answered))
    # A signature this server did not issue is refused, naming the step.
    forged = list(history)
    forged[1] = {**thought, "signature": "AAAA" + thought["signature"][4:]}
    with pytest.raises(_interactions.BadRequestError) as info:
        client.interactions.create(model=MODEL, input=forged, tools=[WEATHER], store=False)
    assert "input[1].signature" in info.value.body["error"]["message"]


def test_the_answer_to_a_result_does_not_echo_the_result_markup(client: genai.Client) -> None:
    """The bundled model tends to echo the <tool_response> wrapper its prompt gives results;
    the answer's grammar keeps it out (engine/tools/grammar.py)."""
    history = [
        {"type": "user_input", "content": [{"type": "text", "text": ASK}]},
        {
            "type": "function_call",
            "id": "c1",
            "name": "get_weather",
            "arguments": {"city": "Paris"},
        },
        {
            "type": "function_result",
            "call_id": "c1",
            "name": "get_weather",
            "result": {"sky": "sunny"},
        },
    ]
    answered = client.interactions.create(
        model=MODEL, input=history, tools=[WEATHER], store=False, generation_config=SMALL
    )
    assert "<tool_response>" not in answer_text(dump(answered))


@pytest.mark.parametrize(
    "tool",
    [
        {"type": "google_search"},
        {"type": "url_context"},
        {"type": "code_execution"},
        {"type": "file_search"},
        {"type": "google_maps"},
        {"type": "computer_use"},
    ],
    ids=lambda tool: tool["type"],
)
def test_built_in_tools_are_a_400_naming_the_tool(
    client: genai.Client, tool: dict[str, Any]
) -> None:
    with pytest.raises(_interactions.BadRequestError) as info:
        client.interactions.create(model=MODEL, input=ASK, tools=[WEATHER, tool])
    assert info.value.status_code == 400
    message = info.value.body["error"]["message"]
    assert "tools[1]" in message
    assert f"'{tool['type']}'" in message


@pytest.mark.parametrize(
    ("config", "tools", "field"),
    [
        ({"tool_choice": "sometimes"}, [WEATHER], "generation_config.tool_choice"),
        (
            {"tool_choice": {"allowed_tools": {"mode": "any", "tools": ["get_stock"]}}},
            [WEATHER],
            "generation_config.tool_choice.allowed_tools.tools",
        ),
        (
            {"tool_choice": "any"},
            [{**WEATHER, "parameters": {"type": "object", "not": {"required": ["city"]}}}],
            "tools[0].parameters",
        ),
    ],
    ids=["unknown-tool-choice", "undeclared-allowed-tool", "unenforceable-schema"],
)
def test_bad_tool_input_is_a_400_naming_the_field(
    client: genai.Client, config: dict[str, Any], tools: list[dict[str, Any]], field: str
) -> None:
    with pytest.raises(_interactions.BadRequestError) as info:
        client.interactions.create(model=MODEL, input=ASK, tools=tools, generation_config=config)
    assert field in info.value.body["error"]["message"]


# ----- classic generateContent through the Python SDK --------------------------------------------

CLASSIC_CITY = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
}


def get_weather(city: str) -> dict[str, Any]:
    """Get the current weather in a city.

    Args:
      city: The name of the city.
    """
    return RESULT


def forced(*names: str, **extra: Any) -> types.GenerateContentConfig:
    return types.GenerateContentConfig(
        tools=[get_weather],
        tool_config=types.ToolConfig(
            function_calling_config=types.FunctionCallingConfig(
                mode=types.FunctionCallingConfigMode.ANY, allowed_function_names=list(names) or None
            )
        ),
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
        temperature=0,
        max_output_tokens=64,
        **extra,
    )


def check_classic_calls(calls: Sequence[types.FunctionCall] | None) -> list[dict[str, Any]]:
    assert calls
    dumped = [dump(c) for c in calls]
    for call in dumped:
        check_call(call, [{"name": "get_weather", "parameters": CLASSIC_CITY}], "args")
    return dumped


def test_classic_forced_call_from_a_python_function(client: genai.Client) -> None:
    response = client.models.generate_content(model=MODEL, contents=ASK, config=forced())
    (call,) = check_classic_calls(response.function_calls)
    assert call["name"] == "get_weather"
    candidate = response.candidates[0]
    assert candidate.finish_reason == types.FinishReason.STOP
    assert candidate.content.role == "model"
    assert [p.function_call is not None for p in candidate.content.parts] == [True]
    assert response.usage_metadata.candidates_token_count > 0


def test_classic_allowed_function_names(client: genai.Client) -> None:
    config = forced("get_weather")
    response = client.models.generate_content(model=MODEL, contents=ASK, config=config)
    (call,) = check_classic_calls(response.function_calls)
    assert call["name"] == "get_weather"


def test_classic_mode_any_with_empty_allowed_names_still_calls(client: genai.Client) -> None:
    config = types.GenerateContentConfig(
        tools=[get_weather],
        tool_config=types.ToolConfig(
            function_calling_config=types.FunctionCallingConfig(
                mode=types.FunctionCallingConfigMode.ANY, allowed_function_names=[]
            )
        ),
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
        temperature=0,
        max_output_tokens=64,
    )
    response = client.models.generate_content(model=MODEL, contents=ASK, config=config)
    check_classic_calls(response.function_calls)


def test_classic_stream_carries_the_whole_call_in_one_chunk(client: genai.Client) -> None:
    chunks = list(client.models.generate_content_stream(model=MODEL, contents=ASK, config=forced()))
    with_calls = [c for c in chunks if c.function_calls]
    assert len(with_calls) == 1, [dump(c) for c in chunks]
    (call,) = check_classic_calls(with_calls[0].function_calls)
    assert not "".join(c.text or "" for c in chunks if c.candidates and c.candidates[0].content)
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    unary = client.models.generate_content(model=MODEL, contents=ASK, config=forced())
    assert unary.function_calls[0].args == call["args"]


def test_classic_manual_round_trip(client: genai.Client) -> None:
    response = client.models.generate_content(model=MODEL, contents=ASK, config=forced())
    (call,) = check_classic_calls(response.function_calls)
    contents = [
        types.Content(role="user", parts=[types.Part.from_text(text=ASK)]),
        response.candidates[0].content,
        types.Content(
            role="user",
            parts=[types.Part.from_function_response(name=call["name"], response=RESULT)],
        ),
    ]
    config = types.GenerateContentConfig(
        tools=[get_weather],
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
        temperature=0,
        max_output_tokens=64,
    )
    answer = client.models.generate_content(model=MODEL, contents=contents, config=config)
    assert not answer.function_calls
    assert answer.text
    assert answer.text.strip()
    for marker in MARKUP:
        assert marker not in answer.text
    assert answer.candidates[0].finish_reason in (
        types.FinishReason.STOP,
        types.FinishReason.MAX_TOKENS,
    )


def test_classic_thought_signature_on_the_call_round_trips(client: genai.Client) -> None:
    thinking = types.ThinkingConfig(thinking_level=types.ThinkingLevel.LOW, include_thoughts=True)
    response = client.models.generate_content(
        model=MODEL, contents=ASK, config=forced(thinking_config=thinking)
    )
    check_classic_calls(response.function_calls)
    content = response.candidates[0].content
    call_parts = [p for p in content.parts if p.function_call]
    # Gemini 3 puts the turn's signature on its first function-call part (§10.3).
    assert call_parts[0].thought_signature
    result = types.Part.from_function_response(name="get_weather", response=RESULT)
    config = forced(thinking_config=thinking)
    config.tool_config = None
    for parts in (
        content.parts,
        [p.model_copy(update={"thought_signature": None}) for p in content.parts],
    ):
        contents = [
            types.Content(role="user", parts=[types.Part.from_text(text=ASK)]),
            types.Content(role="model", parts=parts),
            types.Content(role="user", parts=[result] * len(call_parts)),
        ]
        answer = client.models.generate_content(model=MODEL, contents=contents, config=config)
        assert answer.candidates[0].content.parts, answer


def test_classic_automatic_function_calling_in_a_chat(client: genai.Client) -> None:
    seen: list[Any] = []

    def get_weather(city: str) -> dict[str, Any]:
        """Get the current weather in a city.

        Args:
          city: The name of the city.
        """
        seen.append(city)
        return RESULT

    config = types.GenerateContentConfig(
        tools=[get_weather],
        tool_config=types.ToolConfig(
            function_calling_config=types.FunctionCallingConfig(
                mode=types.FunctionCallingConfigMode.ANY
            )
        ),
        automatic_function_calling=types.AutomaticFunctionCallingConfig(maximum_remote_calls=2),
        temperature=0,
        max_output_tokens=64,
    )
    chat = client.chats.create(model=MODEL, config=config)
    response = chat.send_message(ASK)
    # The SDK ran the function with the parsed arguments of the server's call ...
    assert seen
    assert all(isinstance(city, str) and city for city in seen), seen
    # ... and sent its result back: the server took a functionResponse turn.
    history = chat.get_history()
    responses = [p.function_response for c in history for p in c.parts if p.function_response]
    assert responses
    assert responses[0].name == "get_weather"
    assert responses[0].response == {"result": RESULT}
    assert response.candidates is not None


def test_classic_json_schema_declaration_and_allowed_names(client: genai.Client) -> None:
    declarations = [
        types.FunctionDeclaration(
            name=t["name"], description=t["description"], parameters_json_schema=t["parameters"]
        )
        for t in (WEATHER, STRICT_TIME)
    ]
    config = types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=declarations)],
        tool_config=types.ToolConfig(
            function_calling_config=types.FunctionCallingConfig(
                mode=types.FunctionCallingConfigMode.ANY, allowed_function_names=["get_time"]
            )
        ),
        temperature=0,
        max_output_tokens=64,
    )
    response = client.models.generate_content(model=MODEL, contents=ASK, config=config)
    assert response.function_calls
    for call in response.function_calls:
        assert call.name == "get_time"
        check_call(dump(call), [STRICT_TIME], "args")


def test_classic_mode_none_answers_in_text(client: genai.Client) -> None:
    config = types.GenerateContentConfig(
        tools=[get_weather],
        tool_config=types.ToolConfig(
            function_calling_config=types.FunctionCallingConfig(
                mode=types.FunctionCallingConfigMode.NONE
            )
        ),
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
        temperature=0,
        max_output_tokens=32,
    )
    response = client.models.generate_content(model=MODEL, contents=ASK, config=config)
    assert not response.function_calls
    assert response.text
    assert response.text.strip()
    assert "<tool_call>" not in response.text


# ----- the OpenAI-compatible surface ------------------------------------------------------------


def openai_tool(tool: Mapping[str, Any]) -> dict[str, Any]:
    function = {k: tool[k] for k in ("name", "description", "parameters")}
    return {"type": "function", "function": function}


def check_tool_calls(message: Any, tools: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    assert message.tool_calls, message
    calls = []
    for tool_call in message.tool_calls:
        assert tool_call.type == "function"
        arguments = json.loads(tool_call.function.arguments)  # JSON text, as OpenAI sends it
        call = {"id": tool_call.id, "name": tool_call.function.name, "arguments": arguments}
        check_call(call, tools)
        calls.append(call)
    assert len({c["id"] for c in calls}) == len(calls)
    return calls


def test_openai_required_call_and_round_trip(oai: openai.OpenAI) -> None:
    messages: list[Any] = [{"role": "user", "content": ASK}]
    completion = oai.chat.completions.create(
        model=MODEL,
        messages=messages,
        tools=[openai_tool(WEATHER)],
        tool_choice="required",
        temperature=0,
        max_tokens=64,
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = check_tool_calls(choice.message, [WEATHER])
    assert call["name"] == "get_weather"

    messages += [
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call["id"], "content": json.dumps(RESULT)},
    ]
    answer = oai.chat.completions.create(
        model=MODEL,
        messages=messages,
        tools=[openai_tool(WEATHER)],
        temperature=0,
        max_tokens=64,
    )
    choice = answer.choices[0]
    assert choice.finish_reason in ("stop", "length")
    assert not choice.message.tool_calls
    assert choice.message.content
    assert choice.message.content.strip()
    for marker in MARKUP:
        assert marker not in choice.message.content


def test_openai_stream_of_a_named_function(oai: openai.OpenAI) -> None:
    stream = oai.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": ASK}],
        tools=[openai_tool(WEATHER), openai_tool(TIME)],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        parallel_tool_calls=False,
        temperature=0,
        max_tokens=64,
        stream=True,
    )
    pieces: list[str] = []
    ids: list[str] = []
    names: list[str] = []
    finish = []
    for chunk in stream:
        for choice in chunk.choices:
            if choice.finish_reason:
                finish.append(choice.finish_reason)
            for tool_call in choice.delta.tool_calls or ():
                assert tool_call.index == 0  # parallel_tool_calls=False: one call
                if tool_call.id:
                    ids.append(tool_call.id)
                if tool_call.function and tool_call.function.name:
                    names.append(tool_call.function.name)
                if tool_call.function and tool_call.function.arguments:
                    pieces.append(tool_call.function.arguments)
            assert not choice.delta.content, choice.delta
    assert finish == ["tool_calls"]
    assert names == ["get_weather"]
    assert len(ids) == 1
    assert len(pieces) > 1  # streamed in pieces, not in one go
    call = {"id": ids[0], "name": names[0], "arguments": json.loads("".join(pieces))}
    check_call(call, [WEATHER])


def test_openai_parallel_tool_calls_flag(oai: openai.OpenAI) -> None:
    earlier = [
        {
            "id": c["id"],
            "type": "function",
            "function": {"name": c["name"], "arguments": json.dumps(c["arguments"])},
        }
        for c in PARALLEL_SHOT[1:3]
    ]
    messages: list[Any] = [
        {"role": "user", "content": PARALLEL_SHOT[0]["content"][0]["text"]},
        {"role": "assistant", "tool_calls": earlier},
        {"role": "tool", "tool_call_id": "c1", "content": json.dumps(PARALLEL_SHOT[3]["result"])},
        {"role": "tool", "tool_call_id": "c2", "content": PARALLEL_SHOT[4]["result"]},
        {"role": "assistant", "content": PARALLEL_SHOT[5]["content"][0]["text"]},
        {"role": "user", "content": ASK_TWO},
    ]
    params: dict[str, Any] = {
        "model": MODEL,
        "messages": messages,
        "tools": [openai_tool(WEATHER), openai_tool(TIME)],
        "tool_choice": "required",
        "temperature": 0,
        "max_tokens": 128,
    }
    both = oai.chat.completions.create(**params)
    assert both.choices[0].finish_reason == "tool_calls"
    calls = check_tool_calls(both.choices[0].message, [WEATHER, TIME])
    assert [c["name"] for c in calls] == ["get_weather", "get_time"]
    one = oai.chat.completions.create(**params, parallel_tool_calls=False)
    assert one.choices[0].finish_reason == "tool_calls"
    assert len(check_tool_calls(one.choices[0].message, [WEATHER, TIME])) == 1


def test_openai_tool_choice_none_answers_in_text(oai: openai.OpenAI) -> None:
    completion = oai.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": ASK}],
        tools=[openai_tool(WEATHER)],
        tool_choice="none",
        temperature=0,
        max_tokens=32,
    )
    choice = completion.choices[0]
    assert choice.finish_reason in ("stop", "length")
    assert not choice.message.tool_calls
    assert choice.message.content
    assert "<tool_call>" not in choice.message.content


def test_openai_unknown_tool_choice_is_a_400(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        oai.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": ASK}],
            tools=[openai_tool(WEATHER)],
            tool_choice="sometimes",
        )
    assert info.value.status_code == 400
    assert "tool_choice" in str(info.value.message)


# ----- curl ---------------------------------------------------------------------------------------

needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")


def curl(server: LiveServer, path: str, body: Any) -> tuple[int, str]:
    """POST ``body`` as JSON; the status and the raw response body."""
    marker = "\n--status--"
    out = subprocess.run(
        ["curl", "-sS", "-X", "POST", server.base_url + path, "-w", marker + "%{http_code}",
         "-H", f"x-goog-api-key: {API_KEY}", "-H", "Content-Type: application/json",
         "-d", json.dumps(body)],
        capture_output=True, text=True, timeout=300, check=True,
    ).stdout  # fmt: skip
    payload, _, status = out.rpartition(marker)
    return int(status), payload


@needs_curl
def test_curl_forced_call_then_function_result(live_server: LiveServer) -> None:
    status, body = curl(
        live_server,
        "/v1beta/interactions",
        {
            "model": MODEL,
            "input": ASK,
            "tools": [WEATHER],
            "generation_config": {**SMALL, "tool_choice": "any"},
        },
    )
    assert status == 200, body
    called = json.loads(body)
    (call,) = check_requires_action(called, [WEATHER])
    status, body = curl(
        live_server,
        "/v1beta/interactions",
        {
            "model": MODEL,
            "previous_interaction_id": called["id"],
            "tools": [WEATHER],
            "input": results_for([call], RESULT),
            "generation_config": SMALL,
        },
    )
    assert status == 200, body
    answered = json.loads(body)
    assert answered["previous_interaction_id"] == called["id"]
    answer_text(answered)


@needs_curl
def test_curl_streamed_call(live_server: LiveServer) -> None:
    status, body = curl(
        live_server,
        "/v1beta/interactions?alt=sse",
        {
            "model": MODEL,
            "input": ASK,
            "tools": [WEATHER],
            "generation_config": {**SMALL, "tool_choice": "any"},
        },
    )
    assert status == 200, body
    (call,) = check_call_stream([e.data for e in parse_sse(body)], [WEATHER])
    assert call["name"] == "get_weather"


@needs_curl
def test_curl_classic_function_call_and_response(live_server: LiveServer) -> None:
    path = f"/v1beta/models/{MODEL}:generateContent"
    user = {"role": "user", "parts": [{"text": ASK}]}
    declaration = {
        "name": "get_weather",
        "description": "Get the current weather in a city.",
        "parameters": {
            "type": "OBJECT",
            "properties": {"city": {"type": "STRING"}},
            "required": ["city"],
        },
    }
    tools = [{"functionDeclarations": [declaration]}]
    status, body = curl(
        live_server,
        path,
        {
            "contents": [user],
            "tools": tools,
            "toolConfig": {"functionCallingConfig": {"mode": "ANY"}},
            "generationConfig": {"temperature": 0, "maxOutputTokens": 64},
        },
    )
    assert status == 200, body
    candidate = json.loads(body)["candidates"][0]
    assert candidate["finishReason"] == "STOP"
    (part,) = candidate["content"]["parts"]
    call = part["functionCall"]  # camelCase on the wire
    check_call(call, [{"name": "get_weather", "parameters": CLASSIC_CITY}], "args")

    response = {"functionResponse": {"id": call["id"], "name": call["name"], "response": RESULT}}
    status, body = curl(
        live_server,
        path,
        {
            "contents": [user, candidate["content"], {"role": "user", "parts": [response]}],
            "tools": tools,
            "generationConfig": {"temperature": 0, "maxOutputTokens": 64},
        },
    )
    assert status == 200, body
    parts = json.loads(body)["candidates"][0]["content"]["parts"]
    assert [set(p) for p in parts] == [{"text"}] * len(parts), parts
    assert "".join(p["text"] for p in parts).strip()


@needs_curl
def test_curl_unknown_tool_choice_is_a_400_envelope(live_server: LiveServer) -> None:
    status, body = curl(
        live_server,
        "/v1beta/interactions",
        {
            "model": MODEL,
            "input": ASK,
            "tools": [WEATHER],
            "generation_config": {"tool_choice": "sometimes"},
        },
    )
    assert status == 400, body
    error = json.loads(body)
    assert set(error) == {"error"}
    assert error["error"]["code"] == 400
    assert error["error"]["status"] == "INVALID_ARGUMENT"
    assert "generation_config.tool_choice" in error["error"]["message"]


# ----- the JS SDK ---------------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_js_sdk_function_calling(live_server: LiveServer) -> None:
    seen = run_js_example(
        live_server.base_url,
        "function_calling.mjs",
        json.dumps({"weather": CITY, "result": RESULT}),
    )

    # Interactions: requires_action, then the answer to the function_result.
    assert seen["call"]["status"] == "requires_action"
    (call,) = function_calls(seen["call"]["steps"])
    check_call(call, [WEATHER])
    assert seen["answer"]["previousInteractionId"] == seen["call"]["id"]
    answer_text(seen["answer"])

    # Classic: functionCalls with mode ANY, then a text answer to the functionResponse.
    assert seen["classic"]["finishReason"] == "STOP"
    (classic,) = seen["classic"]["functionCalls"]
    check_call(classic, [{"name": "get_weather", "parameters": CLASSIC_CITY}], "args")
    assert seen["classicAnswer"]["functionCalls"] is None
    assert seen["classicAnswer"]["text"].strip()

    # Stream: the arguments_delta pieces join to the unary call's arguments.
    (streamed,) = check_call_stream(seen["events"], [WEATHER])
    assert streamed["name"] == call["name"]
    assert streamed["arguments"] == call["arguments"]
