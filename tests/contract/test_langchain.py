"""A framework built on the Gemini SDK, unchanged but for its base URL: LangChain's
``ChatGoogleGenerativeAI`` (langchain-google-genai, which drives google-genai's classic
surface): invoke, stream, tool binding and structured output."""

from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_google_genai import ChatGoogleGenerativeAI
from pydantic import BaseModel

from tests.support.contract import API_KEY, MODEL
from tests.support.server import LiveServer

pytestmark = pytest.mark.contract


@tool
def get_weather(city: str) -> str:
    """Get the current weather for a city."""
    return f"sunny in {city}"


class Person(BaseModel):
    name: str
    age: int


@pytest.fixture(scope="module")
def llm(live_server: LiveServer) -> ChatGoogleGenerativeAI:
    return ChatGoogleGenerativeAI(
        model=MODEL,
        google_api_key=API_KEY,
        base_url=live_server.base_url,
        temperature=0,
        max_tokens=48,
    )


def test_invoke_answers_with_usage(llm: ChatGoogleGenerativeAI) -> None:
    message = llm.invoke("What is the capital of France? Answer briefly.")
    assert "paris" in message.text.lower()
    assert message.usage_metadata is not None
    assert message.usage_metadata["output_tokens"] > 0


def test_stream_yields_the_answer_in_pieces(llm: ChatGoogleGenerativeAI) -> None:
    chunks = list(llm.stream("Say hello to the world."))
    assert len(chunks) > 1
    assert "".join(c.text for c in chunks).strip()


def test_bound_tools_give_a_tool_call_and_take_its_result(llm: ChatGoogleGenerativeAI) -> None:
    bound = llm.bind_tools([get_weather], tool_choice="any")
    question = HumanMessage("What is the weather in Paris?")
    message = bound.invoke([question])
    assert isinstance(message, AIMessage)
    (call,) = message.tool_calls
    assert call["name"] == "get_weather"
    assert isinstance(call["args"]["city"], str)
    result = ToolMessage(get_weather.invoke(call["args"]), tool_call_id=call["id"])
    answer = llm.bind_tools([get_weather]).invoke([question, message, result])
    assert answer.text.strip()


def test_structured_output_is_the_pydantic_model(llm: ChatGoogleGenerativeAI) -> None:
    person = llm.with_structured_output(Person).invoke("Invent a person.")
    assert isinstance(person, Person)
