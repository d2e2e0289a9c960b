"""Resuming streams and background runs through both official SDKs."""

from __future__ import annotations

import shutil
from typing import Any

import pytest
from google import genai

from tests.support.contract import API_KEY, run_js_example
from tests.support.server import LiveServer

pytestmark = pytest.mark.contract


def text_of(events: list[Any]) -> str:
    return "".join(e.delta.text for e in events if e.event_type == "step.delta")


def test_python_sdk_resume_and_background(live_server: LiveServer) -> None:
    client = genai.Client(api_key=API_KEY, http_options={"base_url": live_server.base_url})
    stream = client.interactions.create(
        model="gemini-3-flash-preview",
        input="Count from one to ten.",
        stream=True,
        generation_config={"max_output_tokens": 16},
    )
    seen = list(stream)
    iid = seen[0].interaction.id
    resumed = list(client.interactions.get(iid, stream=True, last_event_id=seen[3].event_id))
    assert resumed[0].event_type == "step.delta"  # seen[4] is the second delta
    assert text_of(resumed) == text_of(seen[4:])
    assert resumed[-1].event_id == seen[-1].event_id
    assert resumed[-1].event_type == "interaction.completed"

    background = client.interactions.create(
        model="gemini-3-flash-preview",
        input="Write a poem.",
        background=True,
        generation_config={"max_output_tokens": 24},
    )
    assert background.status in ("in_progress", "queued")
    followed = list(client.interactions.get(background.id, stream=True))
    assert followed[0].event_type == "interaction.created"
    assert followed[-1].event_type == "interaction.completed"
    text = "".join(e.delta.text for e in followed if e.event_type == "step.delta")
    polled = client.interactions.get(background.id)
    assert polled.status in ("completed", "incomplete")
    assert polled.steps[-1].content[0].text == text
    assert polled.steps[0].type == "user_input"


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_js_sdk_resume_and_background(live_server: LiveServer) -> None:
    out = run_js_example(live_server.base_url, "resume.mjs")
    seen, resumed = out["seen"], out["resumed"]
    assert resumed[-1]["event_id"] == seen[-1]["event_id"]
    deltas = [e["delta"]["text"] for e in seen[4:] if e["event_type"] == "step.delta"]
    assert "".join(
        e["delta"]["text"] for e in resumed if e["event_type"] == "step.delta"
    ) == "".join(deltas)
    assert out["backgroundStatus"] in ("in_progress", "queued")
    followed = out["followed"]
    assert followed[0]["event_type"] == "interaction.created"
    assert followed[-1]["event_type"] == "interaction.completed"
    text = "".join(e["delta"]["text"] for e in followed if e["event_type"] == "step.delta")
    assert out["polled"]["steps"][-1]["content"][0]["text"] == text
