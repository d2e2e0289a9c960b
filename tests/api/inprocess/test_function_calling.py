"""Function calling on the three surfaces, in-process over a scripted engine: declarations
and tool choices become the engine's ``ToolUse``, the engine's call events become each
surface's wire shapes (steps, parts, tool_calls), calls and results in the history become
chat messages, and every malformed request is a 400 naming its field. (Whether the engine
writes valid calls: tests/engine/llama/test_tool_calls.py; the real SDKs:
tests/contract/test_function_calling.py.)"""

from __future__ import annotations

import json
from typing import Any

import pytest

from gemserve.engine import ToolUse
from tests.support.envelope import assert_envelope, assert_openai_error
from tests.support.inprocess import InProcessApi, MakeApi, sse_data

WEATHER_PARAMS = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
}
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": WEATHER_PARAMS,
}
TIME = {"type": "function", "name": "get_time", "parameters": {"type": "object"}}
CALL = ("get_weather", '{"city": "Paris"}')
BEARER = {"Authorization": "Bearer k"}


def tool_use(api: InProcessApi) -> ToolUse:
    tools = api.engine.requests[-1].tools
    assert tools is not None
    return tools


# ----- Interactions ----------------------------------------------------------------------


async def test_a_call_is_a_function_call_step_and_requires_action(api: InProcessApi) -> None:
    api.engine.pieces = []
    api.engine.calls = [CALL]
    response = await api.create(tools=[WEATHER], generation_config={"tool_choice": "any"})
    body = response.json()
    assert response.status_code == 200, body
    assert body["status"] == "requires_action"
    (step,) = body["steps"]
    assert step["type"] == "function_call"
    assert step["name"] == "get_weather"
    assert step["arguments"] == {"city": "Paris"}
    assert step["id"].startswith("call_")
    used = tool_use(api)
    assert used.mode == "any"
    assert [t.name for t in used.tools] == ["get_weather"]
    # A declared object schema takes only its declared properties.
    assert json.loads(used.tools[0].parameters) == {**WEATHER_PARAMS, "additionalProperties": False}


async def test_text_then_parallel_calls_are_separate_steps(api: InProcessApi) -> None:
    api.engine.pieces = ["Let me check."]
    api.engine.calls = [CALL, ("get_time", "{}")]
    body = (await api.create(tools=[WEATHER, TIME])).json()
    assert [s["type"] for s in body["steps"]] == ["model_output", "function_call", "function_call"]
    assert body["steps"][0]["content"] == [{"type": "text", "text": "Let me check."}]
    assert [s["name"] for s in body["steps"][1:]] == ["get_weather", "get_time"]
    assert body["steps"][1]["id"] != body["steps"][2]["id"]


async def test_a_streamed_call_has_arguments_deltas_that_join(api: InProcessApi) -> None:
    api.engine.pieces = []
    api.engine.calls = [CALL]
    response = await api.create(tools=[WEATHER], stream=True)
    events = sse_data(response)
    starts = [e for e in events if e["event_type"] == "step.start"]
    assert starts[0]["step"]["type"] == "function_call"
    assert starts[0]["step"]["arguments"] == {}
    pieces = [
        e["delta"]["arguments"]
        for e in events
        if e["event_type"] == "step.delta" and e["delta"]["type"] == "arguments_delta"
    ]
    assert pieces  # a follower that keeps up gets each piece; a late one, them merged
    assert json.loads("".join(pieces)) == {"city": "Paris"}
    assert events[-1]["interaction"]["status"] == "requires_action"
    stored = (await api.get(events[-1]["interaction"]["id"])).json()
    assert stored["steps"][-1]["arguments"] == {"city": "Paris"}


async def test_results_through_previous_interaction_become_tool_messages(
    api: InProcessApi,
) -> None:
    api.engine.pieces = []
    api.engine.calls = [CALL]
    first = (await api.create(tools=[WEATHER])).json()
    call = first["steps"][0]
    api.engine.calls = None
    api.engine.pieces = ["Sunny."]
    result = {"type": "function_result", "call_id": call["id"], "result": {"sky": "sunny"}}
    response = await api.create(
        tools=[WEATHER], previous_interaction_id=first["id"], input=[result]
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "completed"
    messages = api.engine.requests[-1].messages
    assert [m.role for m in messages] == ["user", "assistant", "tool"]
    assert messages[1].tool_calls[0].name == "get_weather"
    assert json.loads(messages[1].tool_calls[0].arguments) == {"city": "Paris"}
    assert messages[2].tool_call_id == call["id"]
    assert messages[2].tool_name == "get_weather"  # filled in from the call
    assert json.loads(messages[2].text) == {"sky": "sunny"}


async def test_a_stateless_history_with_calls_and_results(api: InProcessApi) -> None:
    history = [
        {"type": "user_input", "content": [{"type": "text", "text": "Weather?"}]},
        {"type": "function_call", "id": "c1", "name": "get_weather", "arguments": {"city": "A"}},
        {"type": "function_call", "id": "c2", "name": "get_weather", "arguments": {"city": "B"}},
        {"type": "function_result", "call_id": "c2", "result": "rain"},
        {
            "type": "function_result",
            "call_id": "c1",
            "result": [{"type": "text", "text": "sun"}],
        },
    ]
    response = await api.create(tools=[WEATHER], input=history, store=False)
    assert response.status_code == 200, response.text
    messages = api.engine.requests[-1].messages
    assert [m.role for m in messages] == ["user", "assistant", "tool", "tool"]
    assert [c.id for c in messages[1].tool_calls] == ["c1", "c2"]
    assert [(m.tool_call_id, m.text) for m in messages[2:]] == [("c2", "rain"), ("c1", "sun")]


@pytest.mark.parametrize(
    ("choice", "mode", "allowed"),
    [
        ("auto", "auto", None),
        ("validated", "validated", None),
        ("none", "none", None),
        ({"allowed_tools": {"mode": "any", "tools": ["get_time"]}}, "any", ("get_time",)),
    ],
)
async def test_tool_choices(api: InProcessApi, choice: Any, mode: str, allowed: Any) -> None:
    response = await api.create(tools=[WEATHER, TIME], generation_config={"tool_choice": choice})
    assert response.status_code == 200, response.text
    used = tool_use(api)
    assert (used.mode, used.allowed) == (mode, allowed)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"generation_config": {"tool_choice": "sometimes"}}, "generation_config.tool_choice"),
        (
            {"generation_config": {"tool_choice": {"allowed_tools": {"tools": ["nope"]}}}},
            "generation_config.tool_choice.allowed_tools.tools",
        ),
        ({"tools": [{"type": "google_search"}]}, "google_search"),
        ({"tools": [{"type": "mcp_server", "name": "x", "url": "http://x"}]}, "mcp_server"),
        ({"tools": [{"type": "function", "name": "bad name"}]}, "tools[0].name"),
        ({"tools": [WEATHER, WEATHER]}, "declared twice"),
        ({"tools": [{**WEATHER, "parameters": "no"}]}, "tools[0].parameters"),
        ({"tools": [{**WEATHER, "extra": 1}]}, "'extra'"),
    ],
)
async def test_bad_tools_are_400(api: InProcessApi, body: dict[str, Any], fragment: str) -> None:
    body.setdefault("tools", [WEATHER])
    response = await api.create(**body)
    assert_envelope(response, 400, "INVALID_ARGUMENT", fragment)
    assert api.engine.requests == []


async def test_too_many_tools_is_400(make_api: MakeApi) -> None:
    api = await make_api(limits={"max_tools": 2})
    tools = [{**WEATHER, "name": f"f{i}"} for i in range(3)]
    assert_envelope(await api.create(tools=tools), 400, "INVALID_ARGUMENT", "limit is 2")


@pytest.mark.parametrize(
    ("history", "fragment"),
    [
        (
            [{"type": "function_result", "call_id": "nope", "result": "x"}],
            "input[1].call_id",
        ),
        (
            [
                {"type": "function_call", "id": "c1", "name": "get_weather", "arguments": {}},
                {"type": "function_call", "id": "c2", "name": "get_weather", "arguments": {}},
                {"type": "function_result", "call_id": "c1", "result": "x"},
            ],
            "input[2]",  # c2 has no result
        ),
    ],
)
async def test_results_must_pair_with_calls(
    api: InProcessApi, history: list[dict[str, Any]], fragment: str
) -> None:
    user = {"type": "user_input", "content": [{"type": "text", "text": "Hi"}]}
    response = await api.create(tools=[WEATHER], input=[user, *history], store=False)
    assert_envelope(response, 400, "INVALID_ARGUMENT", fragment)
    assert api.engine.requests == []


# ----- generateContent -------------------------------------------------------------------


async def classic(api: InProcessApi, body: dict[str, Any], stream: bool = False) -> Any:
    method = "streamGenerateContent?alt=sse" if stream else "generateContent"
    payload = {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}], **body}
    return await api.client.post(
        f"/v1beta/models/gemini-2.5-flash:{method}", json=payload, headers=api.headers
    )


CLASSIC_TOOLS = [
    {
        "functionDeclarations": [
            {
                "name": "get_weather",
                "parameters": {
                    "type": "OBJECT",
                    "properties": {"city": {"type": "STRING"}},
                    "required": ["city"],
                },
            },
            {"name": "get_time", "parameters_json_schema": {"type": "object"}},
        ]
    }
]


async def test_classic_call_is_a_function_call_part(api: InProcessApi) -> None:
    api.engine.pieces = []
    api.engine.calls = [CALL]
    config = {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}}
    response = await classic(api, {"tools": CLASSIC_TOOLS, "toolConfig": config})
    body = response.json()
    assert response.status_code == 200, body
    candidate = body["candidates"][0]
    assert candidate["finishReason"] == "STOP"
    (part,) = candidate["content"]["parts"]
    assert part["functionCall"]["name"] == "get_weather"
    assert part["functionCall"]["args"] == {"city": "Paris"}
    used = tool_use(api)
    assert (used.mode, used.allowed) == ("any", ("get_weather",))
    weather = json.loads(used.tools[0].parameters)
    assert weather["properties"] == {"city": {"type": "string"}}


async def test_classic_stream_carries_the_whole_call_in_one_chunk(api: InProcessApi) -> None:
    api.engine.pieces = []
    api.engine.calls = [CALL]
    response = await classic(api, {"tools": CLASSIC_TOOLS}, stream=True)
    chunks = [
        json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: ")
    ]
    calls = [
        p["functionCall"]
        for c in chunks
        for p in c["candidates"][0].get("content", {}).get("parts", [])
        if "functionCall" in p
    ]
    assert [c["args"] for c in calls] == [{"city": "Paris"}]


async def test_classic_history_pairs_responses_by_id_or_name(api: InProcessApi) -> None:
    contents = [
        {"role": "user", "parts": [{"text": "Weather?"}]},
        {
            "role": "model",
            "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "A"}}}],
        },
        {
            "role": "user",
            "parts": [{"function_response": {"name": "get_weather", "response": {"t": 3}}}],
        },
    ]
    response = await classic(api, {"tools": CLASSIC_TOOLS, "contents": contents})
    assert response.status_code == 200, response.text
    messages = api.engine.requests[-1].messages
    assert [m.role for m in messages] == ["user", "assistant", "tool"]
    assert messages[2].tool_name == "get_weather"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"tools": [{"googleSearch": {}}]}, "google_search"),
        ({"tools": [{"codeExecution": {}}]}, "code_execution"),
        (
            {"tools": CLASSIC_TOOLS, "toolConfig": {"functionCallingConfig": {"mode": "SOME"}}},
            "tool_config.function_calling_config.mode",
        ),
        (
            {
                "tools": CLASSIC_TOOLS,
                "toolConfig": {
                    "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["x"]}
                },
            },
            "allowed_function_names",
        ),
        (
            {
                "contents": [
                    {"role": "user", "parts": [{"text": "Hi"}]},
                    {"role": "user", "parts": [{"functionResponse": {"name": "get_weather"}}]},
                ]
            },
            "contents[1].parts[0].function_response.response",
        ),
    ],
)
async def test_classic_bad_tools_are_400(
    api: InProcessApi, body: dict[str, Any], fragment: str
) -> None:
    assert_envelope(await classic(api, body), 400, "INVALID_ARGUMENT", fragment)


# ----- OpenAI ----------------------------------------------------------------------------

OPENAI_TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "parameters": WEATHER_PARAMS}}
]


async def chat(api: InProcessApi, **body: Any) -> Any:
    payload = {"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "Hi"}]}
    return await api.client.post(
        "/v1beta/openai/chat/completions", json={**payload, **body}, headers=BEARER
    )


async def test_openai_tool_calls(api: InProcessApi) -> None:
    api.engine.pieces = []
    api.engine.calls = [CALL]
    response = await chat(api, tools=OPENAI_TOOLS, tool_choice="required")
    choice = response.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    (call,) = choice["message"]["tool_calls"]
    assert call["type"] == "function"
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}
    assert tool_use(api).mode == "any"


async def test_openai_stream_tool_call_deltas(api: InProcessApi) -> None:
    api.engine.pieces = []
    api.engine.calls = [CALL]
    response = await chat(api, tools=OPENAI_TOOLS, stream=True, parallel_tool_calls=False)
    chunks = [
        json.loads(line[6:])
        for line in response.text.splitlines()
        if line.startswith("data: ") and line != "data: [DONE]"
    ]
    pieces = [tc for c in chunks for tc in c["choices"][0]["delta"].get("tool_calls", [])]
    assert pieces[0]["id"].startswith("call_")
    assert pieces[0]["function"]["name"] == "get_weather"
    arguments = "".join(p["function"]["arguments"] for p in pieces)
    assert json.loads(arguments) == {"city": "Paris"}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    assert tool_use(api).parallel is False


async def test_openai_history_with_tool_messages(api: InProcessApi) -> None:
    messages = [
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "A"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
    ]
    response = await chat(api, tools=OPENAI_TOOLS, messages=messages)
    assert response.status_code == 200, response.text
    sent = api.engine.requests[-1].messages
    assert [(m.role, m.tool_call_id) for m in sent] == [
        ("user", None),
        ("assistant", None),
        ("tool", "c1"),
    ]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"tools": OPENAI_TOOLS, "tool_choice": "maybe"}, "tool_choice"),
        (
            {"tools": OPENAI_TOOLS, "tool_choice": {"type": "function", "function": {"name": "x"}}},
            "tool_choice.function.name",
        ),
        ({"tools": [{"type": "code_interpreter"}]}, "tools[0].type"),
        (
            {"messages": [{"role": "tool", "content": "x"}]},
            "messages[0].tool_call_id",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": "Hi"},
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {"id": "c", "function": {"name": "f", "arguments": "not json"}}
                        ],
                    },
                ]
            },
            "messages[1].tool_calls[0].function.arguments",
        ),
    ],
)
async def test_openai_bad_tools_are_400(
    api: InProcessApi, body: dict[str, Any], fragment: str
) -> None:
    assert_openai_error(await chat(api, **body), 400, "invalid_request_error", fragment)


@pytest.mark.parametrize(
    "signature",
    ["skip_thought_signature_validator", "c2tpcF90aG91Z2h0X3NpZ25hdHVyZV92YWxpZGF0b3I="],
)
async def test_gemini_placeholder_signatures_are_accepted(
    api: InProcessApi, signature: str
) -> None:
    """Frameworks (LangChain) send Gemini's documented placeholder on calls whose signature
    was lost; there is no thought behind it to restore."""
    call = {"functionCall": {"name": "get_weather", "args": {"city": "A"}}}
    contents = [
        {"role": "user", "parts": [{"text": "Weather?"}]},
        {"role": "model", "parts": [{**call, "thoughtSignature": signature}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {}}}]},
    ]
    response = await classic(api, {"tools": CLASSIC_TOOLS, "contents": contents})
    assert response.status_code == 200, response.text
