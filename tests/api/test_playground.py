"""The playground in a real browser: Debian's Chromium driven by Playwright against a real
``gemserve serve`` with the bundled model. No browser is downloaded: Playwright launches
/usr/bin/chromium (scripts/setup --dev installs it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, expect, sync_playwright

from tests.support.generation import LONG_ANSWER_SCHEMA
from tests.support.server import LiveServer, start_server, stop_server

pytestmark = pytest.mark.live

CHROMIUM = Path("/usr/bin/chromium")
JS_MODULES = Path(__file__).resolve().parents[1] / "contract" / "js" / "node_modules"
TIMEOUT_MS = 60_000
FINISHED = ("completed", "incomplete")  # incomplete: max_output_tokens cut the answer
# A 1×1 PNG.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8cfc0f01f0005000201a9f3c4"
    "1e0000000049454e44ae426082"
)


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    if not CHROMIUM.exists():
        pytest.fail("/usr/bin/chromium is missing: run ./scripts/setup --dev")
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
    yield browser
    browser.close()


class Playground:
    """One browser context (its own localStorage, so its own open-mode key and tenant) on the
    page; ``requests`` holds every interaction request body the page sent."""

    def __init__(self, context: BrowserContext, server: LiveServer) -> None:
        self.context = context
        self.server = server
        self.page: Page = context.new_page()
        self.page.set_default_timeout(TIMEOUT_MS)
        self.requests: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        # The page must run under its own CSP: a refused script, style or fetch is a bug.
        self.page.on(
            "console",
            lambda message: (
                "Content Security Policy" in message.text and self.errors.append(message.text)
            ),
        )
        self.page.on("request", self._record)
        self.page.goto(server.base_url + "/")
        self.page.wait_for_selector("body[data-ready=true]")

    def _record(self, request: Any) -> None:
        if request.method == "POST" and request.url.endswith("/v1beta/interactions"):
            self.requests.append(json.loads(request.post_data))

    def key(self) -> str:
        key: str = self.page.evaluate("localStorage.getItem('gemserve.playground.key')")
        return key

    def send(self, prompt: str) -> None:
        self.page.fill("#prompt", prompt)
        self.page.click("#send")

    def answers(self) -> Any:
        return self.page.locator("article.turn.model")

    def wait_done(self, index: int = -1) -> Any:
        answer = self.answers().nth(index)
        expect(answer).to_have_attribute("aria-busy", "false", timeout=TIMEOUT_MS)
        return answer

    def stored(self, interaction_id: str) -> dict[str, Any]:
        response = httpx.get(
            f"{self.server.base_url}/v1beta/interactions/{interaction_id}",
            headers={"x-goog-api-key": self.key()},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


@pytest.fixture
def playground(browser: Browser, live_server: LiveServer) -> Iterator[Playground]:
    context = browser.new_context()
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.base_url)
    playground = Playground(context, live_server)
    yield playground
    context.close()
    assert not playground.errors, playground.errors


def test_a_prompt_streams_into_the_page(playground: Playground) -> None:
    page = playground.page
    # Count how often the answer's text changes while it streams.
    page.evaluate(
        """() => {
            window.__updates = 0;
            new MutationObserver(() => { window.__updates += 1; }).observe(
                document.getElementById('transcript'),
                {childList: true, subtree: true, characterData: true});
        }"""
    )
    page.fill("#max-tokens", "40")
    playground.send("Name three colours.")
    expect(page.locator("#cancel")).to_be_enabled()
    answer = playground.wait_done()
    assert answer.get_attribute("data-status") in FINISHED
    text = answer.locator(".answer").get_attribute("data-raw")
    assert text.strip()
    assert page.evaluate("window.__updates") > 3  # many deltas, not one final render
    usage = answer.locator(".usage").inner_text()
    for figure in ("input", "output", "thought", "cached", "first token", "tok/s"):
        assert figure in usage, usage
    (request,) = playground.requests
    assert request["stream"] is True
    assert request["generation_config"] == {"max_output_tokens": 40}
    assert request["input"] == "Name three colours."
    assert "previous_interaction_id" not in request
    stored = playground.stored(answer.get_attribute("data-id"))
    assert stored["status"] == answer.get_attribute("data-status")
    assert stored["steps"][-1]["content"][0]["text"].strip() == text.strip()


def test_markdown_is_rendered_escape_first(playground: Playground) -> None:
    html = playground.page.evaluate(
        """async () => {
            const {renderMarkdown} = await import('/playground/markdown.js');
            const box = document.createElement('div');
            box.append(renderMarkdown(
                '# Title\\n\\nSome **bold** and `code` <script>alert(1)</script>' +
                ' [bad](javascript:alert(1)) [good](https://example.com/x)\\n\\n' +
                '- one\\n- two\\n\\n```python\\ndef f():\\n    return "<b>"  # note\\n```'));
            return box.innerHTML;
        }"""
    )
    assert "<script>" not in html
    assert "&lt;script&gt;" in html
    assert 'href="javascript' not in html
    assert '<a href="https://example.com/x"' in html
    assert "<strong>bold</strong>" in html
    assert '<code class="inline">code</code>' in html
    assert "<li>one</li><li>two</li>" in html
    assert '<span class="tok-keyword">def</span>' in html
    assert '<span class="tok-string">"&lt;b&gt;"</span>' in html
    assert '<span class="tok-comment"># note</span>' in html


def test_an_uploaded_file_is_attached_to_the_request(playground: Playground) -> None:
    page = playground.page
    page.set_input_files(
        "#file-input",
        files=[
            {"name": "note.txt", "mimeType": "text/plain", "buffer": b"The secret word is lemon.\n"}
        ],
    )
    chip = page.locator("#attachments li")
    expect(chip).to_have_attribute("data-state", "ready")
    uri = chip.get_attribute("data-uri")
    assert uri
    assert "/v1beta/files/" in uri
    # An image dropped on the composer goes through the same upload, and is previewed.
    page.evaluate(
        """async (bytes) => {
            const data = new DataTransfer();
            data.items.add(new File([new Uint8Array(bytes)], 'dot.png', {type: 'image/png'}));
            const zone = document.getElementById('composer');
            zone.dispatchEvent(new DragEvent('dragover', {dataTransfer: data, bubbles: true}));
            zone.dispatchEvent(new DragEvent('drop', {dataTransfer: data, bubbles: true}));
        }""",
        list(PNG),
    )
    image = page.locator("#attachments li").nth(1)
    expect(image).to_have_attribute("data-state", "ready")
    assert image.locator("img").get_attribute("src").startswith("blob:")
    # The bundled model reads no images: remove it before sending.
    image.get_by_role("button", name="Remove dot.png").click()
    page.fill("#max-tokens", "30")
    playground.send("What is the secret word?")
    answer = playground.wait_done()
    assert answer.get_attribute("data-status") in FINISHED
    (request,) = playground.requests
    assert request["input"] == [
        {"type": "text", "text": "What is the secret word?"},
        {"type": "document", "uri": uri, "mime_type": "text/plain"},
    ]
    assert page.locator("#attachments li").count() == 0
    # The file's own bytes made it through: the prompt counts its tokens.
    stored = playground.stored(answer.get_attribute("data-id"))
    assert stored["usage"]["total_input_tokens"] > 20


def test_a_conversation_continues_and_comes_back(playground: Playground) -> None:
    page = playground.page
    page.fill("#max-tokens", "20")
    playground.send("My name is Ada.")
    first = playground.wait_done().get_attribute("data-id")
    playground.send("What is my name?")
    second = playground.wait_done().get_attribute("data-id")
    assert "previous_interaction_id" not in playground.requests[0]
    assert playground.requests[1]["previous_interaction_id"] == first
    assert playground.stored(second)["previous_interaction_id"] == first
    # The list keeps it; a reload opens it again from the server.
    entries = page.locator("#conversations li")
    expect(entries).to_have_count(1)
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    page.locator("#conversations li button.open").click()
    expect(page.locator("article.turn.model")).to_have_count(2)
    expect(page.locator(".turn.user").nth(1)).to_contain_text("What is my name?")
    # A third turn continues from the last one.
    playground.send("And again?")
    third = playground.wait_done().get_attribute("data-id")
    assert playground.requests[-1]["previous_interaction_id"] == second
    # The list (GET /v1beta/interactions) names the conversation by its last turn.
    expect(entries).to_have_count(1)
    expect(entries.first).to_have_attribute("data-id", third)
    # Delete removes every interaction of it, on the server too.
    page.get_by_role("button", name="Delete conversation “And again?”").click()
    expect(entries).to_have_count(0)
    expect(page.locator("#transcript > *")).to_have_count(0)
    for interaction_id in (first, second, third):
        response = httpx.get(
            f"{playground.server.base_url}/v1beta/interactions/{interaction_id}",
            headers={"x-goog-api-key": playground.key()},
        )
        assert response.status_code == 404


def test_a_running_answer_can_be_cancelled(playground: Playground) -> None:
    page = playground.page
    page.fill("#max-tokens", "1500")
    page.check("#json-mode")
    page.fill("#schema", json.dumps(LONG_ANSWER_SCHEMA))
    playground.send("Count from 1 to 1000.")
    answer = playground.answers().last
    expect(answer.locator(".answer")).not_to_be_empty()
    page.click("#cancel")
    playground.wait_done()
    assert answer.get_attribute("data-status") == "cancelled"
    stored = playground.stored(answer.get_attribute("data-id"))
    assert stored["status"] == "cancelled"
    assert stored["usage"]["total_output_tokens"] < 1500
    assert playground.requests[0]["response_format"]["schema"] == LONG_ANSWER_SCHEMA
    expect(page.locator("#send")).to_be_enabled()


def test_get_code_runs_unchanged(playground: Playground, tmp_path: Path) -> None:
    page = playground.page
    page.fill("#system", "Answer in one short sentence.")
    page.fill("#temperature", "0.2")
    page.fill("#max-tokens", "24")
    page.fill("#stop", "\n\n\n")
    page.fill("#prompt", "Say hello to Ada.")
    page.click("#get-code")
    dialog = page.locator("#code-dialog")
    expect(dialog).to_be_visible()
    page.click("#copy-code")
    expect(page.locator("#copy-status")).to_have_text("Copied")
    code = page.evaluate("navigator.clipboard.readText()")
    base = playground.server.base_url
    assert "from google import genai" in code
    assert f'genai.Client(http_options={{"base_url": "{base}"}})' in code
    assert 'input="Say hello to Ada."' in code
    script = tmp_path / "copied.py"
    script.write_text(code)
    env = {**os.environ, "GEMINI_API_KEY": playground.key()}
    env.pop("GOOGLE_GEMINI_BASE_URL", None)
    run = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, env=env
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip()
    # The other languages: the JS SDK and curl, with the same request.
    page.get_by_role("tab", name="JavaScript").click()
    js = page.locator("#panel-js").get_attribute("data-code")
    assert 'import { GoogleGenAI } from "@google/genai";' in js
    assert f'httpOptions: {{ baseUrl: "{base}" }}' in js
    # Run by Node with the JS SDK the contract tests install (scripts/setup --dev).
    js_dir = tmp_path / "js"
    js_dir.mkdir()
    (js_dir / "node_modules").symlink_to(JS_MODULES)
    (js_dir / "copied.mjs").write_text(js)
    node = subprocess.run(
        ["node", "copied.mjs"], cwd=js_dir, capture_output=True, text=True, timeout=120, env=env
    )
    assert node.returncode == 0, node.stderr
    assert node.stdout.strip()
    page.get_by_role("tab", name="curl").press("ArrowRight")  # keyboard: wraps to Python
    expect(page.get_by_role("tab", name="Python")).to_have_attribute("aria-selected", "true")
    page.get_by_role("tab", name="Python").press("ArrowLeft")
    curl = page.locator("#panel-curl").get_attribute("data-code")
    expect(page.locator("#panel-curl")).to_be_visible()
    shell = subprocess.run(
        ["bash", "-c", curl], capture_output=True, text=True, timeout=120, env=env
    )
    assert shell.returncode == 0, shell.stderr
    assert json.loads(shell.stdout)["status"] in FINISHED
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()


def test_function_calls_are_shown_and_answered(playground: Playground) -> None:
    page = playground.page
    tools = [
        {
            "name": "get_weather",
            "description": "The weather in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        }
    ]
    page.fill("#tools", json.dumps(tools))
    page.select_option("#tool-choice", "any")
    page.fill("#max-tokens", "200")
    playground.send("What is the weather in Paris?")
    answer = playground.wait_done()
    assert answer.get_attribute("data-status") == "requires_action"
    called = answer.get_attribute("data-id")
    expect(answer.locator(".function-call")).to_contain_text("get_weather")
    assert playground.requests[0]["tools"] == [{"type": "function", **tools[0]}]
    page.select_option("#tool-choice", "none")
    page.get_by_label("Result of get_weather").fill('{"temperature": 21}')
    page.get_by_role("button", name="Send result").click()
    final = playground.wait_done()
    assert final.get_attribute("data-status") in FINISHED
    result = playground.requests[1]
    assert result["previous_interaction_id"] == called
    (sent,) = result["input"]
    assert sent["type"] == "function_result"
    assert sent["name"] == "get_weather"
    assert sent["result"] == {"temperature": 21}


def test_json_mode_sends_the_schema(playground: Playground) -> None:
    page = playground.page
    page.check("#json-mode")
    page.fill("#max-tokens", "60")
    playground.send("Answer: what is 2 + 2?")
    answer = playground.wait_done()
    request = playground.requests[0]
    assert request["response_format"]["mime_type"] == "application/json"
    assert request["response_format"]["schema"]["required"] == ["answer"]
    if answer.get_attribute("data-status") == "completed":
        assert "answer" in json.loads(answer.locator(".answer").get_attribute("data-raw"))


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, str]]:
    """A server in keys-required mode, and one managed key."""
    tmp = tmp_path_factory.mktemp("playground-keys")
    made = subprocess.run(
        [sys.executable, "-m", "gemserve", "keys", "create", "--name", "browser",
         "--data-dir", str(tmp / "data")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    server = start_server(tmp, "--require-keys")
    yield server, made.stdout.strip()
    stop_server(server)


def test_keys_required_mode_asks_for_a_key_and_keeps_it_in_the_tab(
    browser: Browser, keyed_server: tuple[LiveServer, str]
) -> None:
    server, key = keyed_server
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(server.base_url + "/")
    dialog = page.get_by_role("dialog", name="API key")
    expect(dialog).to_be_visible()
    page.get_by_role("textbox", name="API key").fill("not-a-key")
    page.get_by_role("button", name="Use key").click()
    expect(page.locator("#key-error")).to_contain_text("API key not valid")
    page.get_by_role("textbox", name="API key").fill(key)
    page.keyboard.press("Enter")
    page.wait_for_selector("body[data-ready=true]")
    expect(dialog).to_be_hidden()
    stored = page.evaluate(
        "[sessionStorage.getItem('gemserve.playground.key'),"
        " localStorage.getItem('gemserve.playground.key')]"
    )
    assert stored == [key, None]
    page.fill("#max-tokens", "8")
    page.fill("#prompt", "Hi")
    page.click("#send")
    answer = page.locator("article.turn.model")
    expect(answer).to_have_attribute("aria-busy", "false")
    assert answer.get_attribute("data-status") in FINISHED
    context.close()


def test_a_refused_request_is_shown_and_the_prompt_kept(playground: Playground) -> None:
    page = playground.page
    page.fill("#tools", "[{not json")
    playground.send("Hello?")
    expect(page.get_by_role("alert")).to_contain_text("Function declarations: not valid JSON")
    assert playground.requests == []
    page.fill("#tools", "")
    page.fill("#temperature", "5")  # out of range: the server's 400, shown as it says
    playground.send("Hello?")
    expect(page.get_by_role("alert").last).to_contain_text("temperature")
    assert playground.requests[0]["generation_config"] == {"temperature": 5}
    expect(page.locator("#prompt")).to_have_value("Hello?")
    expect(page.locator("#conversations li")).to_have_count(0)
