"""The Google error envelope, asserted the same way by every test that expects an error."""

from __future__ import annotations

from typing import Any

import httpx


def assert_error_body(body: Any, code: int, status: str, *fragments: str) -> str:
    """An envelope as a client parsed it (an SDK error's body): code, status, and fragments
    its message must contain. Returns the message."""
    assert isinstance(body, dict), body
    error = body["error"]
    assert error["code"] == code
    assert error["status"] == status
    for fragment in fragments:
        assert fragment in error["message"], (fragment, error["message"])
    return str(error["message"])


def assert_envelope(response: httpx.Response, code: int, status: str, *fragments: str) -> str:
    """An HTTP error answer: the status code, JSON, and exactly ``{"error": {code, message,
    status}}``. Returns the message."""
    assert response.status_code == code, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "status"}
    return assert_error_body(body, code, status, *fragments)


def assert_openai_error(response: httpx.Response, code: int, kind: str, *fragments: str) -> str:
    """An error of the OpenAI-compatible surface, in OpenAI's envelope: ``{"error": {message,
    type, param, code}}``, ``code`` being the Google status. Returns the message."""
    assert response.status_code == code, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == kind
    for fragment in fragments:
        assert fragment in error["message"], (fragment, error["message"])
    return str(error["message"])
