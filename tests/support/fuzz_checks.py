"""Schemathesis hooks (``SCHEMATHESIS_HOOKS=tests.support.fuzz_checks``): every error answer
is in its surface's documented envelope."""

from __future__ import annotations

import json
from typing import Any

import schemathesis


@schemathesis.check
def error_envelope(ctx: Any, response: Any, case: Any) -> bool | None:
    if response.status_code < 400:
        return None
    body = json.loads(response.content or b"null")
    assert isinstance(body, dict), f"error body is not an object: {body!r}"
    error = body.get("error")
    assert isinstance(error, dict), f"no error object: {body!r}"
    if "/openai/" in case.path:
        assert isinstance(error.get("message"), str), body
        assert isinstance(error.get("type"), str), body
    else:
        assert error.get("code") == response.status_code, body
        assert isinstance(error.get("message"), str), body
        assert isinstance(error.get("status"), str), body
    return True
