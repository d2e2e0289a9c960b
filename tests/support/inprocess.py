"""The whole app in the test process: ``create_app`` over scripted engines, an SQLite store in
a temporary data directory, the lifespan entered, and an httpx client on ASGITransport.

No server process, no model: the fast tier's API tests run through every layer the live
server has (routing, auth, body limits, the services, the store, the error envelope) in
milliseconds per request. ASGITransport hands back a response once the app has finished it,
so a stream is read whole, and a client never hangs up.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from unittest import mock

import httpx
import numpy as np
import numpy.typing as npt
from starlette.applications import Starlette

from gemserve.app import create_app
from gemserve.config import Limits, ModelSpec, Settings
from gemserve.config.models import DEFAULT_MODEL_ID
from gemserve.engine import Engine
from tests.support.scripted import ScriptedEngine
from tests.support.sse import parse_sse

MODEL = "gemini-3-flash-preview"  # an alias of the default model
KEY = "inprocess-test-key"
BASE_URL = "http://gemserve.test"


class ScriptedTranscriber:
    """Stands in for Whisper: ``loaded`` says whether it is ready, ``text`` is every
    transcript. ``start`` loads nothing (the app calls it once the engines are up)."""

    def __init__(self, text: str = "a scripted transcript", *, loaded: bool = True) -> None:
        self.text = text
        self.loaded = loaded
        self.calls = 0

    @property
    def ready(self) -> bool:
        return self.loaded

    async def start(self) -> None:
        return None

    async def transcribe(self, samples: npt.NDArray[np.float32]) -> str:
        self.calls += 1
        return self.text

    async def close(self) -> None:
        return None


def scripted_settings(data_dir: Path, **values: Any) -> Settings:
    """Settings for an in-process app: data in ``data_dir`` (SQLite, blobs, the signing key),
    no speech recognition, no sweeps during a test, no drain at shutdown; ``limits`` may be a
    dict of overrides."""
    limits = values.pop("limits", {})
    defaults: dict[str, Any] = {
        "data_dir": data_dir,
        "database_url": None,
        "transcription_model": "none",
        "sweep_interval_seconds": 3600.0,
        "drain_seconds": 0.0,  # a test's teardown cancels what still runs, at once
        "require_keys": False,
        "limits": limits if isinstance(limits, Limits) else Limits(**limits),
    }
    return Settings(**{**defaults, **values})


@dataclass
class InProcessApi:
    """One app and a client for it; ``engines`` holds the scripted engine of every model."""

    app: Starlette
    client: httpx.AsyncClient
    settings: Settings
    engines: dict[str, ScriptedEngine]
    transcriber: ScriptedTranscriber | None = None
    headers: dict[str, str] = field(default_factory=lambda: {"x-goog-api-key": KEY})

    @property
    def engine(self) -> ScriptedEngine:
        """The default model's engine (every Gemini alias resolves to it)."""
        return self.engines[DEFAULT_MODEL_ID]

    async def create(
        self,
        headers: Mapping[str, str] | None = None,
        path: str = "/v1beta/interactions",
        **body: Any,
    ) -> httpx.Response:
        """``POST /v1beta/interactions`` with ``body`` over a minimal valid request."""
        payload = {"model": MODEL, "input": "Hi", **body}
        return await self.client.post(path, json=payload, headers=self._headers(headers))

    async def get(
        self, iid: str, headers: Mapping[str, str] | None = None, **params: str
    ) -> httpx.Response:
        return await self.client.get(
            f"/v1beta/interactions/{iid}", params=params, headers=self._headers(headers)
        )

    async def cancel(self, iid: str, headers: Mapping[str, str] | None = None) -> httpx.Response:
        return await self.client.post(
            f"/v1beta/interactions/{iid}/cancel", headers=self._headers(headers)
        )

    async def delete(self, iid: str, headers: Mapping[str, str] | None = None) -> httpx.Response:
        return await self.client.delete(
            f"/v1beta/interactions/{iid}", headers=self._headers(headers)
        )

    async def start_upload(
        self,
        meta: dict[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        *,
        size: int | None = None,
        mime: str | None = None,
        protocol: str = "resumable",
        command: str = "start",
    ) -> httpx.Response:
        """Start a resumable upload as the SDKs do: ``{"file": meta}`` and X-Goog-Upload-*."""
        sent = {
            **self._headers(headers),
            "X-Goog-Upload-Protocol": protocol,
            "X-Goog-Upload-Command": command,
        }
        if size is not None:
            sent["X-Goog-Upload-Header-Content-Length"] = str(size)
        if mime is not None:
            sent["X-Goog-Upload-Header-Content-Type"] = mime
        body = {} if meta is None else {"file": meta}
        return await self.client.post("/upload/v1beta/files", json=body, headers=sent)

    async def upload_url(self, data_size: int | None, mime: str = "text/plain", **meta: Any) -> str:
        response = await self.start_upload({"mime_type": mime, **meta}, size=data_size, mime=mime)
        assert response.status_code == 200, response.text
        assert response.headers["x-goog-upload-status"] == "active"
        return response.headers["x-goog-upload-url"]

    async def send(
        self, url: str, data: bytes, offset: int, command: str = "upload, finalize"
    ) -> httpx.Response:
        """One chunk request: a binary body labelled application/json, and no API key."""
        headers = {
            "X-Goog-Upload-Command": command,
            "X-Goog-Upload-Offset": str(offset),
            "Content-Type": "application/json",
        }
        return await self.client.post(url, content=data, headers=headers)

    async def upload(self, data: bytes, mime: str = "text/plain", **meta: Any) -> dict[str, Any]:
        """A whole upload in one chunk; the File resource."""
        url = await self.upload_url(len(data), mime, size_bytes=len(data), **meta)
        response = await self.send(url, data, 0)
        assert response.status_code == 200, response.text
        assert response.headers["x-goog-upload-status"] == "final"
        file: dict[str, Any] = response.json()["file"]
        return file

    def _headers(self, headers: Mapping[str, str] | None) -> dict[str, str]:
        return dict(self.headers if headers is None else headers)


class MakeApi(Protocol):
    """The ``make_api`` fixture: an app for settings of a test's own, torn down after it."""

    def __call__(
        self,
        *,
        engines: Mapping[str, ScriptedEngine] | None = None,
        transcriber: ScriptedTranscriber | None = None,
        data_dir: Path | None = None,
        **settings: Any,
    ) -> Awaitable[InProcessApi]: ...


def sse_data(response: httpx.Response) -> list[dict[str, Any]]:
    """The events of an interaction stream; each frame's ``event:`` and ``id:`` lines must
    agree with its data's ``event_type`` and ``event_id``."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(response.text)
    for event in events:
        assert event.event == event.data["event_type"], event
        assert event.id == event.data["event_id"], event
    return [event.data for event in events]


@contextlib.asynccontextmanager
async def serve_in_process(
    settings: Settings,
    engines: Mapping[str, ScriptedEngine] | None = None,
    *,
    transcriber: ScriptedTranscriber | None = None,
    tracer_provider: Any = None,
) -> AsyncIterator[InProcessApi]:
    """The app for ``settings`` with a scripted engine per model (``engines`` by model id,
    the others made here), its lifespan entered, and a client with an API key;
    ``tracer_provider``: an OpenTelemetry provider for its spans (tests/api/inprocess/
    test_tracing.py)."""
    scripted: dict[str, ScriptedEngine] = dict(engines or {})

    def factory(spec: ModelSpec, _settings: Settings) -> Engine:
        engine = scripted.get(spec.id)
        if engine is None:
            engine = scripted[spec.id] = ScriptedEngine(
                model_id=spec.id, context_length=spec.context_length
            )
        return engine

    with mock.patch("gemserve.app.make_transcriber", return_value=transcriber):
        app = create_app(settings, engine_factory=factory, tracer_provider=tracer_provider)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL) as client,
    ):
        yield InProcessApi(app, client, settings, scripted, transcriber)
