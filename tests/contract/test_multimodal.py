"""Multimodal input against live gemserve processes, through the official SDKs and curl.

The guide's image example runs verbatim in Python, JS (``js/multimodal.mjs``) and curl; it
uploads ``path/to/organ.jpg`` relative to the working directory (``path/to/organ.jpg`` here and
in ``js/``: a 96x64 JPEG drawn with Pillow). Each run uses an API key of its own, so its tenant
holds only what that example uploaded.

* On the session's default server (SmolLM2 only, text) the example must fail with a 400 that
  names the model, after the upload itself succeeded.
* A second server adds the tiny random SmolVLM (``scripts/make_tiny_vlm.py``) and aliases
  ``gemini-3-flash-preview`` to it: the same examples must answer, the image counted as 32
  input tokens. Its answers are noise; what is asserted is what reached the model. The
  same server decodes audio (Whisper tiny.en), video and PDFs.
"""

from __future__ import annotations

import base64
import io
import json
import os
import secrets
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from google.genai import _interactions
from PIL import Image

from tests.support.contract import DOCS_HOST, JS_DIR, MODEL, AccessLog, client_env, seed_guide
from tests.support.llama import TinyAudioLm, TinyVlm
from tests.support.media import MEDIA, PAGE_TEXTS, SENTENCE
from tests.support.server import LiveServer, start_server, stop_server
from tests.support.tokenizer import Tokenizer
from tests.support.wait import wait_until

pytestmark = pytest.mark.contract

TIMEOUT_S = 300
HERE = Path(__file__).resolve().parent
ORGAN = "path/to/organ.jpg"  # what the examples open, relative to their working directory
VLM = "tiny-vlm"
TEXT_MODEL = "smollm2-135m-instruct"
TOKENS_PER_IMAGE = 32

# ----- the guide's multimodal example, verbatim -----------------------------------------------

PY_EXAMPLE = """\
from google import genai

client = genai.Client()

uploaded_file = client.files.upload(file="path/to/organ.jpg")

interaction = client.interactions.create(
    model="gemini-3-flash-preview",
    input=[
        {"type": "text", "text": "Tell me about this instrument"},
        {
            "type": "image",
            "uri": uploaded_file.uri,
            "mime_type": uploaded_file.mime_type
        }
    ]
)
print(interaction.steps[-1].content[0].text)
"""

# Run with the host replaced by the server's and YOUR_FILE_URI by what the upload returned.
CURL_EXAMPLE = """\
# First upload the file using the Files API, then use the URI:
curl -X POST "https://generativelanguage.googleapis.com/v1beta/interactions" \\
  -H "x-goog-api-key: $GEMINI_API_KEY" \\
  -H 'Content-Type: application/json' \\
  -d '{
    "model": "gemini-3-flash-preview",
    "input": [
      {"type": "text", "text": "Tell me about this instrument"},
      {
        "type": "image",
        "uri": "YOUR_FILE_URI",
        "mime_type": "image/jpeg"
      }
    ]
  }'
"""

# The REST docs' resumable upload: the start request's headers carry the upload URL.
CURL_UPLOAD = """\
NUM_BYTES=$(wc -c < "${IMG_PATH}")
curl "${BASE_URL}/upload/v1beta/files" \\
  -H "x-goog-api-key: $GEMINI_API_KEY" \\
  -D upload-header.tmp \\
  -H "X-Goog-Upload-Protocol: resumable" \\
  -H "X-Goog-Upload-Command: start" \\
  -H "X-Goog-Upload-Header-Content-Length: ${NUM_BYTES}" \\
  -H "X-Goog-Upload-Header-Content-Type: image/jpeg" \\
  -H "Content-Type: application/json" \\
  -d '{"file": {"display_name": "organ"}}' 2> /dev/null
upload_url=$(grep -i "x-goog-upload-url: " upload-header.tmp | cut -d" " -f2 | tr -d "\\r")
rm upload-header.tmp
curl "${upload_url}" \\
  -H "Content-Length: ${NUM_BYTES}" \\
  -H "X-Goog-Upload-Offset: 0" \\
  -H "X-Goog-Upload-Command: upload, finalize" \\
  --data-binary "@${IMG_PATH}" 2> /dev/null > file_info.json
"""


def fresh_key() -> str:
    return "multimodal-" + secrets.token_hex(8)


def organ_bytes() -> bytes:
    return (HERE / ORGAN).read_bytes()


@pytest.fixture(scope="module", autouse=True)
def _tools_present() -> None:
    if shutil.which("node") is None or shutil.which("curl") is None:
        pytest.fail("node and curl are needed by the multimodal contract tests")
    if not (JS_DIR / "node_modules" / "@google" / "genai" / "package.json").is_file():
        pytest.fail("@google/genai is not installed: run `npm ci` in tests/contract/js")


# ----- running the examples -------------------------------------------------------------------


def run_python(server: LiveServer, key: str) -> dict[str, Any]:
    """Execute the example in ``tests/contract`` with only the client environment set.

    Returns its globals (``uploaded_file``, ``interaction``), what it printed under
    ``printed``, and the exception it raised, if any, under ``raised``.
    """
    out = io.StringIO()

    def captured_print(*args: object, sep: str | None = " ", end: str | None = "\n") -> None:
        out.write((" " if sep is None else sep).join(map(str, args)))
        out.write("\n" if end is None else end)

    namespace: dict[str, Any] = {"__name__": "__main__", "print": captured_print}
    env = {**client_env(server.base_url), "GEMINI_API_KEY": key}
    with pytest.MonkeyPatch.context() as mp:
        for name in set(os.environ) - set(env):
            mp.delenv(name)
        for name, value in env.items():
            mp.setenv(name, value)
        mp.chdir(HERE)
        try:
            exec(compile(PY_EXAMPLE, "<guide example>", "exec"), namespace)
        except Exception as exc:  # the assertions look at it
            namespace["raised"] = exc
    namespace["printed"] = out.getvalue()
    return namespace


def run_js(server: LiveServer, key: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["node", "multimodal.mjs"],
        cwd=JS_DIR,
        env={**client_env(server.base_url), "GEMINI_API_KEY": key},
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )


def run_curl(server: LiveServer, key: str, tmp: Path) -> dict[str, Any]:
    """Upload with curl, then the guide's request with the uri the upload returned."""
    env = {
        **client_env(server.base_url),
        "GEMINI_API_KEY": key,
        "BASE_URL": server.base_url,
        "IMG_PATH": str(HERE / ORGAN),
    }

    def bash(script: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=tmp,
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            check=False,
        )

    uploaded = bash(CURL_UPLOAD)
    assert uploaded.returncode == 0, uploaded.stderr
    file = json.loads((tmp / "file_info.json").read_text())["file"]
    script = CURL_EXAMPLE.replace(DOCS_HOST, server.base_url).replace("YOUR_FILE_URI", file["uri"])
    proc = bash(script)
    assert proc.returncode == 0, proc.stderr
    return {"file": file, "response": json.loads(proc.stdout)}


def files_of(server: LiveServer, key: str) -> list[dict[str, Any]]:
    response = httpx.get(
        f"{server.base_url}/v1beta/files", headers={"x-goog-api-key": key}, timeout=30
    )
    assert response.status_code == 200, response.text
    listed: list[dict[str, Any]] = response.json().get("files", [])
    return listed


def assert_only_the_organ(server: LiveServer, key: str) -> None:
    """The example's upload worked: its tenant holds exactly the JPEG."""
    [file] = files_of(server, key)
    assert file["mimeType"] == "image/jpeg"
    assert file["sizeBytes"] == str(len(organ_bytes()))
    assert file["state"] == "ACTIVE"


def by_modality(usage: dict[str, Any]) -> dict[str, int]:
    counts = {item["modality"]: item["tokens"] for item in usage["input_tokens_by_modality"]}
    assert len(counts) == len(usage["input_tokens_by_modality"]), "a modality listed twice"
    assert sum(counts.values()) == usage["total_input_tokens"], usage
    assert usage["total_tokens"] == usage["total_input_tokens"] + usage["total_output_tokens"]
    return counts


def api_requests(log: AccessLog, expect: int) -> list[tuple[str, str, int]]:
    """The access log since the mark, without the /statsz probes the tests make themselves
    (whose lines may land just after a mark)."""
    deadline = time.monotonic() + 10
    while True:
        found = [line for line in log.lines() if line[1] != "/statsz"]
        if len(found) >= expect or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def stats(server: LiveServer, model_id: str = VLM) -> dict[str, Any]:
    snapshot: dict[str, Any] = httpx.get(f"{server.base_url}/statsz", timeout=30).json()[model_id]
    return snapshot


def test_examples_are_the_guides_own_code() -> None:
    guide = seed_guide()
    if guide is None:
        pytest.skip("../shared/seed/text-generation.zh.txt is not present")
    assert PY_EXAMPLE.strip() in guide
    assert CURL_EXAMPLE.strip() in guide
    assert (JS_DIR / "multimodal.mjs").read_text(encoding="utf-8").strip() in guide


def test_the_example_image_is_a_real_jpeg_in_both_working_directories() -> None:
    data = organ_bytes()
    assert (JS_DIR / ORGAN).read_bytes() == data
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "JPEG"
        assert image.size == (96, 64)
        pixels = np.asarray(image.convert("RGB")).reshape(-1, 3)
        assert len(np.unique(pixels, axis=0)) > 100  # a picture, not a flat fill


# ----- (a) the default server: text only ------------------------------------------------------

REFUSAL = (
    "Invalid value at 'input[0].content[1]': model 'smollm2-135m-instruct' cannot take image "
    "input; no model served here can"
)


@pytest.fixture(scope="module")
def text_only_runs(live_server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The three examples one after another, each with its own key and access-log slice."""
    runs: dict[str, Any] = {}
    for name in ("python", "js", "curl"):
        key = fresh_key()
        log = AccessLog(live_server)
        if name == "python":
            result: Any = run_python(live_server, key)
        elif name == "js":
            result = run_js(live_server, key)
        else:
            result = run_curl(live_server, key, tmp_path_factory.mktemp("curl-text"))
        runs[name] = {"key": key, "result": result, "requests": api_requests(log, expect=3)}
    return runs


def test_python_example_on_a_text_model_is_a_clear_400(
    text_only_runs: dict[str, Any], live_server: LiveServer
) -> None:
    run = text_only_runs["python"]
    raised = run["result"].get("raised")
    assert isinstance(raised, _interactions.BadRequestError), repr(raised)
    assert raised.status_code == 400
    assert isinstance(raised.body, dict)
    error = raised.body["error"]
    assert error["status"] == "INVALID_ARGUMENT"
    assert error["message"].startswith(REFUSAL)
    assert run["result"]["printed"] == ""
    assert run["result"]["uploaded_file"].mime_type == "image/jpeg"
    assert run["requests"] == [
        ("POST", "/upload/v1/files", 200),
        ("POST", "/upload/v1/files", 200),
        ("POST", "/v1/interactions", 400),  # 400 is not retried
    ]
    assert_only_the_organ(live_server, run["key"])


def test_js_example_on_a_text_model_is_a_clear_400(
    text_only_runs: dict[str, Any], live_server: LiveServer
) -> None:
    run = text_only_runs["js"]
    proc = run["result"]
    assert proc.returncode != 0
    assert proc.stdout == ""
    assert f"BadRequestError: 400 {REFUSAL}" in proc.stderr
    assert run["requests"] == [
        ("POST", "/upload/v1/files", 200),
        ("POST", "/upload/v1/files", 200),
        ("POST", "/v1/interactions", 400),
    ]
    assert_only_the_organ(live_server, run["key"])


def test_curl_example_on_a_text_model_is_a_clear_400(
    text_only_runs: dict[str, Any], live_server: LiveServer
) -> None:
    run = text_only_runs["curl"]
    body = run["result"]["response"]
    assert set(body) == {"error"}
    assert body["error"]["code"] == 400
    assert body["error"]["status"] == "INVALID_ARGUMENT"
    assert body["error"]["message"].startswith(REFUSAL)
    assert run["result"]["file"]["uri"].startswith(live_server.base_url + "/v1beta/files/")
    assert run["requests"] == [
        ("POST", "/upload/v1beta/files", 200),
        ("POST", "/upload/v1beta/files", 200),
        ("POST", "/v1beta/interactions", 400),
    ]
    assert_only_the_organ(live_server, run["key"])


# ----- (b) a server with a vision model -------------------------------------------------------


@pytest.fixture(scope="module")
def vlm_server(
    tmp_path_factory: pytest.TempPathFactory, tiny_vlm: TinyVlm, tiny_audio_lm: TinyAudioLm
) -> Iterator[LiveServer]:
    """SmolLM2 (default) plus the tiny VLM as gemini-3-flash-preview and a tiny model that
    hears; debug logs show the transcripts. One thread per model: tiny models run fastest
    alone."""
    tmp = tmp_path_factory.mktemp("vlm")
    config = tmp / "gemserve.toml"
    config.write_text(
        f"""
[server]
threads = 1

[[models]]
id = "{VLM}"
source = "{tiny_vlm.gguf}"
mmproj = "{tiny_vlm.mmproj}"
context_length = 2048
output_token_limit = 512
[models.sampling]
temperature = 0.0
max_output_tokens = 16

[[models]]
id = "tiny-audio"
source = "{tiny_audio_lm.gguf}"
mmproj = "{tiny_audio_lm.mmproj}"
context_length = 1024
output_token_limit = 256

[aliases]
"{MODEL}" = "{VLM}"
"""
    )
    server = start_server(tmp, "--config", str(config), "--log-level", "debug")
    yield server
    stop_server(server)


def whisper_loaded(server: LiveServer) -> bool:
    log = server.log()
    assert "speech recognition failed to load" not in log, log
    return "speech recognition is loaded" in log


class Client:
    """Plain HTTP to the vision server with a key of its own."""

    def __init__(self, server: LiveServer) -> None:
        self.server = server
        self.key = fresh_key()
        self.http = httpx.Client(
            base_url=server.base_url, headers={"x-goog-api-key": self.key}, timeout=TIMEOUT_S
        )

    def create(self, model: str, parts: list[dict[str, Any]], **extra: Any) -> httpx.Response:
        body = {
            "model": model,
            "input": parts,
            "generation_config": {"temperature": 0, "max_output_tokens": 16},
            **extra,
        }
        return self.http.post("/v1beta/interactions", json=body)

    def ok(self, model: str, parts: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        response = self.create(model, parts, **extra)
        if response.status_code == 503:
            # Whisper loads after /readyz turns 200; until then audio is a 503 (which the SDKs
            # retry). Ask again once the server's log says it has loaded.
            wait_until(lambda: whisper_loaded(self.server), seconds=60, what="speech recognition")
            response = self.create(model, parts, **extra)
        assert response.status_code == 200, response.text
        interaction: dict[str, Any] = response.json()
        assert interaction["status"] in ("completed", "incomplete")
        return interaction

    def upload(self, data: bytes, mime: str, display_name: str) -> dict[str, Any]:
        start = self.http.post(
            "/upload/v1beta/files",
            headers={
                "X-Goog-Upload-Protocol": "resumable",
                "X-Goog-Upload-Command": "start",
                "X-Goog-Upload-Header-Content-Length": str(len(data)),
                "X-Goog-Upload-Header-Content-Type": mime,
            },
            json={"file": {"display_name": display_name}},
        )
        assert start.status_code == 200, start.text
        done = httpx.post(
            start.headers["x-goog-upload-url"],
            headers={"X-Goog-Upload-Command": "upload, finalize", "X-Goog-Upload-Offset": "0"},
            content=data,
            timeout=TIMEOUT_S,
        )
        assert done.status_code == 200, done.text
        file: dict[str, Any] = done.json()["file"]
        return file


@pytest.fixture
def client(vlm_server: LiveServer) -> Iterator[Client]:
    c = Client(vlm_server)
    yield c
    c.http.close()


def inline(kind: str, data: bytes, mime: str) -> dict[str, Any]:
    return {"type": kind, "data": base64.b64encode(data).decode(), "mime_type": mime}


def noise_png(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def log_after(server: LiveServer, mark: int) -> str:
    return server.log()[mark:]


def transcripts_after(server: LiveServer, mark: int) -> str:
    """The log since ``mark``, lower-cased: Whisper on CPU capitalises a sentence's first
    word in some runs and not in others (seen with the MP3 fixture)."""
    return log_after(server, mark).lower()


def test_two_concurrent_image_requests_are_decoded_together(vlm_server: LiveServer) -> None:
    """First on this server: nothing before it ran two sequences at once."""
    before = stats(vlm_server)
    assert before["peak_active"] <= 1, "an earlier test already ran requests concurrently"
    clients = [Client(vlm_server), Client(vlm_server)]
    results: list[dict[str, Any]] = [{}, {}]
    barrier = threading.Barrier(2)

    def send(i: int) -> None:
        barrier.wait()
        parts = [inline("image", noise_png(100 + i), "image/png"), {"type": "text", "text": "?"}]
        results[i] = clients[i].ok(VLM, parts, generation_config={"max_output_tokens": 256})

    threads = [threading.Thread(target=send, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT_S)
    for interaction in results:
        assert interaction, "a request did not finish"
        assert by_modality(interaction["usage"])["image"] == TOKENS_PER_IMAGE
    after = stats(vlm_server)
    assert after["peak_active"] >= 2
    assert after["images_encoded"] - before["images_encoded"] == 4
    for c in clients:
        c.http.close()


@pytest.fixture(scope="module")
def vision_runs(vlm_server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The three examples against the vision server, one after another."""
    runs: dict[str, Any] = {}
    for name in ("python", "js", "curl"):
        key = fresh_key()
        encoded = stats(vlm_server)["images_encoded"]
        log = AccessLog(vlm_server)
        if name == "python":
            result: Any = run_python(vlm_server, key)
        elif name == "js":
            result = run_js(vlm_server, key)
        else:
            result = run_curl(vlm_server, key, tmp_path_factory.mktemp("curl-vision"))
        runs[name] = {
            "key": key,
            "result": result,
            "requests": api_requests(log, expect=3),
            "images_encoded": stats(vlm_server)["images_encoded"] - encoded,
        }
    return runs


def test_python_example_answers_with_a_vision_model(
    vision_runs: dict[str, Any], vlm_server: LiveServer
) -> None:
    run = vision_runs["python"]
    result = run["result"]
    assert "raised" not in result, repr(result.get("raised"))
    printed = result["printed"]
    interaction = result["interaction"]
    assert printed == interaction.steps[-1].content[0].text + "\n"
    assert printed.strip()
    assert interaction.model == MODEL
    assert interaction.status in ("completed", "incomplete")
    usage = interaction.usage.model_dump()
    counts = by_modality(usage)
    assert set(counts) == {"text", "image"}
    assert counts["image"] == TOKENS_PER_IMAGE
    assert counts["text"] > 0
    assert run["images_encoded"] == 2
    assert run["requests"] == [
        ("POST", "/upload/v1/files", 200),
        ("POST", "/upload/v1/files", 200),
        ("POST", "/v1/interactions", 200),
    ]
    # Stored with the same usage, under the example's own key.
    stored = httpx.get(
        f"{vlm_server.base_url}/v1beta/interactions/{interaction.id}",
        headers={"x-goog-api-key": run["key"]},
        timeout=30,
    )
    assert stored.status_code == 200
    assert stored.json()["usage"]["input_tokens_by_modality"] == usage["input_tokens_by_modality"]
    assert_only_the_organ(vlm_server, run["key"])


def test_js_example_answers_with_a_vision_model(
    vision_runs: dict[str, Any], vlm_server: LiveServer
) -> None:
    run = vision_runs["js"]
    proc = run["result"]
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert proc.stdout.strip()
    assert proc.stdout.endswith("\n")
    # The same prompt as Python's (the same pixels under another file uri): the same greedy
    # answer, its image taken from the prefix cache rather than encoded again.
    assert proc.stdout == vision_runs["python"]["result"]["printed"]
    assert run["images_encoded"] == 0
    assert run["requests"] == [
        ("POST", "/upload/v1/files", 200),
        ("POST", "/upload/v1/files", 200),
        ("POST", "/v1/interactions", 200),
    ]
    assert_only_the_organ(vlm_server, run["key"])


def test_curl_example_answers_with_a_vision_model(
    vision_runs: dict[str, Any], vlm_server: LiveServer
) -> None:
    run = vision_runs["curl"]
    interaction = run["result"]["response"]
    assert interaction["model"] == MODEL
    assert interaction["status"] in ("completed", "incomplete")
    step = interaction["steps"][-1]
    assert step["type"] == "model_output"
    assert step["content"][0]["text"]
    assert step["content"][0]["text"] + "\n" == vision_runs["python"]["result"]["printed"]
    counts = by_modality(interaction["usage"])
    assert counts["image"] == TOKENS_PER_IMAGE
    assert run["images_encoded"] == 0  # cached, as for JS
    assert run["requests"][-1] == ("POST", "/v1beta/interactions", 200)
    assert_only_the_organ(vlm_server, run["key"])


def test_an_inline_image_is_32_input_tokens(client: Client) -> None:
    question = {"type": "text", "text": "Tell me about this instrument"}
    with_image = client.ok(MODEL, [question, inline("image", organ_bytes(), "image/jpeg")])
    text_only = client.ok(MODEL, [question])
    counts = by_modality(with_image["usage"])
    assert counts["image"] == TOKENS_PER_IMAGE
    assert by_modality(text_only["usage"]) == {"text": text_only["usage"]["total_input_tokens"]}
    grew = with_image["usage"]["total_input_tokens"] - text_only["usage"]["total_input_tokens"]
    assert TOKENS_PER_IMAGE <= grew <= TOKENS_PER_IMAGE + 16  # plus the image's layout tokens


def test_a_follow_up_turn_reuses_the_image_from_the_cache(
    client: Client, vlm_server: LiveServer
) -> None:
    first = client.ok(
        VLM, [inline("image", noise_png(7), "image/png"), {"type": "text", "text": "?"}]
    )
    encoded = stats(vlm_server)["images_encoded"]
    second = client.ok(
        VLM, [{"type": "text", "text": "And then?"}], previous_interaction_id=first["id"]
    )
    assert by_modality(second["usage"])["image"] == TOKENS_PER_IMAGE  # the history's image
    assert second["usage"]["total_cached_tokens"] >= first["usage"]["total_input_tokens"]
    assert stats(vlm_server)["images_encoded"] == encoded


def test_an_image_for_the_text_model_names_the_vision_model(client: Client) -> None:
    response = client.create(TEXT_MODEL, [inline("image", organ_bytes(), "image/jpeg")])
    assert response.status_code == 400
    assert response.json()["error"]["message"] == (
        "Invalid value at 'input[0].content[0]': model 'smollm2-135m-instruct' cannot take "
        "image input; models that can: tiny-vlm."
    )


def test_inline_audio_is_transcribed_into_the_prompt(
    client: Client, vlm_server: LiveServer, tokenizer: Tokenizer
) -> None:
    mark = len(vlm_server.log())
    interaction = client.ok(
        TEXT_MODEL,
        [
            {"type": "text", "text": "Where should the package go?"},
            inline("audio", (MEDIA / "speech.wav").read_bytes(), "audio/wav"),
        ],
    )
    assert "input[0].content[1] transcript: please send the blue package" in transcripts_after(
        vlm_server, mark
    )
    counts = by_modality(interaction["usage"])
    assert set(counts) == {"text", "audio"}
    assert counts["audio"] > tokenizer.count(SENTENCE)


def test_a_model_with_an_audio_projector_hears_the_sound_itself(
    client: Client, vlm_server: LiveServer, tiny_audio_lm: TinyAudioLm
) -> None:
    mark = len(vlm_server.log())
    interaction = client.ok(
        "tiny-audio",
        [
            {"type": "text", "text": "What was said?"},
            inline("audio", (MEDIA / "speech.wav").read_bytes(), "audio/wav"),
        ],
    )
    counts = by_modality(interaction["usage"])
    assert counts["audio"] == tiny_audio_lm.tokens_per_window  # one 30 s window of sound
    assert "transcript:" not in log_after(vlm_server, mark)  # no Whisper on this path
    refused = client.create("tiny-audio", [inline("image", noise_png(1), "image/png")])
    assert refused.status_code == 400
    assert "model 'tiny-audio' cannot take image input" in refused.json()["error"]["message"]


def test_uploaded_audio_is_transcribed_into_the_prompt(
    client: Client, vlm_server: LiveServer
) -> None:
    file = client.upload((MEDIA / "speech.mp3").read_bytes(), "audio/mpeg", "Voicemail")
    mark = len(vlm_server.log())
    interaction = client.ok(
        TEXT_MODEL,
        [{"type": "text", "text": "Summarise."}, {"type": "audio", "uri": file["uri"]}],
    )
    assert "input[0].content[1] transcript: please send the blue package" in transcripts_after(
        vlm_server, mark
    )
    assert by_modality(interaction["usage"])["audio"] > 10


def test_video_is_frames_and_transcript_for_the_vision_model(
    client: Client, vlm_server: LiveServer
) -> None:
    clip = inline("video", (MEDIA / "clip.mp4").read_bytes(), "video/mp4")
    question = {"type": "text", "text": "What is said?"}
    encoded = stats(vlm_server)["images_encoded"]
    mark = len(vlm_server.log())
    seen = client.ok(VLM, [question, clip])
    assert stats(vlm_server)["images_encoded"] - encoded == 4 * 2  # 4 frames, 2 chunks each
    assert "transcript: please send the blue package" in transcripts_after(vlm_server, mark)
    heard = client.ok(TEXT_MODEL, [question, clip])
    seen_video = by_modality(seen["usage"])["video"]
    heard_video = by_modality(heard["usage"])["video"]
    assert seen_video > 4 * TOKENS_PER_IMAGE
    assert 10 < heard_video < seen_video
    assert stats(vlm_server, TEXT_MODEL)["images_encoded"] == 0


def test_a_pdf_reaches_the_text_model_as_its_text(client: Client, tokenizer: Tokenizer) -> None:
    question = "What is the secret ingredient?"
    interaction = client.ok(
        TEXT_MODEL,
        [
            {"type": "text", "text": question},
            inline("document", (MEDIA / "recipe.pdf").read_bytes(), "application/pdf"),
        ],
        generation_config={"temperature": 0, "max_output_tokens": 24},
    )
    counts = by_modality(interaction["usage"])
    assert set(counts) == {"text", "document"}
    assert counts["document"] == sum(tokenizer.count(text) for text in PAGE_TEXTS)
    assert interaction["usage"]["total_input_tokens"] > (
        tokenizer.prompt_tokens(question) + counts["document"]
    )
    answer = interaction["steps"][-1]["content"][0]["text"]
    assert "cardamom" in answer.lower(), answer


def test_every_modality_in_one_request_sums_to_the_input(
    client: Client, vlm_server: LiveServer
) -> None:
    encoded = stats(vlm_server)["images_encoded"]
    interaction = client.ok(
        MODEL,
        [
            {"type": "text", "text": "Compare all of these."},
            inline("image", noise_png(3), "image/png"),
            inline("audio", (MEDIA / "speech.ogg").read_bytes(), "audio/ogg"),
            inline("video", (MEDIA / "clip.mp4").read_bytes(), "video/mp4"),
            inline("document", (MEDIA / "recipe.pdf").read_bytes(), "application/pdf"),
        ],
    )
    counts = by_modality(interaction["usage"])
    assert set(counts) == {"text", "image", "audio", "video", "document"}
    assert counts["image"] == TOKENS_PER_IMAGE
    assert counts["video"] > 4 * TOKENS_PER_IMAGE
    assert counts["document"] > 2 * TOKENS_PER_IMAGE  # two page images and their text
    assert all(n > 0 for n in counts.values())
    # One image, four frames, two pages: seven images of two chunks each.
    assert stats(vlm_server)["images_encoded"] - encoded == 7 * 2
