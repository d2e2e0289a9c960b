"""`gemserve chat`: a REPL over the Interactions API, through the official google-genai SDK.

It talks to a running server (``--url``) or to one of its own (``--embedded``): a
`gemserve serve` child process on a free loopback port, in its own session and with its log in
the data dir. A child rather than a thread: a crash in llama.cpp takes the server down, not the
REPL and its history; Ctrl-C in the terminal reaches the REPL only (where it cancels the
answer), never the server; and the REPL speaks to it exactly as to a remote server.

Each turn streams (``interactions.create(stream=True)``) with ``previous_interaction_id`` of
the last finished turn, so the server keeps the conversation (and reuses its KV cache).
"""

from __future__ import annotations

import contextlib
import mimetypes
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import httpx

from gemserve.config import Settings

DEFAULT_URL = "http://127.0.0.1:8080"
# Out of the box every gemserve maps this Gemini name to its default model.
DEFAULT_MODEL = "gemini-flash-latest"
THINKING_LEVELS = ("minimal", "low", "medium", "high")
HISTORY_FILE = "chat_history"
READY_TIMEOUT_SECONDS = 300.0

HELP = """\
commands:
  /file PATH     upload a file (Files API) and attach it to your next message
  /think LEVEL   thinking level: minimal, low, medium or high (/think alone: the server's default)
  /model [NAME]  switch model (/model alone lists the served models)
  /system [TEXT] system instruction for the following turns (/system alone clears it)
  /new           start a new conversation
  /help          this list
  /quit          leave (also Ctrl-D)
Ctrl-C while an answer streams cancels that answer; arrow keys recall earlier lines."""

_DIM, _RESET = "\x1b[2m", "\x1b[0m"


class Screen:
    """Streamed text to the terminal: thoughts dimmed where the output is a terminal."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self.color = out.isatty() and not os.environ.get("NO_COLOR")
        self._at_line_start = True

    def write(self, text: str, *, dim: bool = False) -> None:
        if not text:
            return
        if dim and self.color:
            text = f"{_DIM}{text}{_RESET}"
        self._out.write(text)
        self._out.flush()
        self._at_line_start = text.endswith("\n")

    def end_line(self) -> None:
        if not self._at_line_start:
            self.write("\n")

    def note(self, text: str) -> None:
        self.end_line()
        self.write(text + "\n", dim=True)


@dataclass
class ChatSession:
    client: Any  # google.genai.Client
    screen: Screen
    model: str = DEFAULT_MODEL
    system: str | None = None
    thinking: str | None = None
    previous_id: str | None = None
    attachments: list[dict[str, str]] = field(default_factory=list)

    def handle(self, line: str) -> bool:
        """One line typed by the user; False to leave."""
        line = line.strip()
        if not line:
            return True
        if not line.startswith("/"):
            self.turn(line)
            return True
        command, _, arg = line.partition(" ")
        arg = arg.strip()
        actions: dict[str, Callable[[str], bool | None]] = {
            "/quit": lambda _: False,
            "/exit": lambda _: False,
            "/help": lambda _: self.screen.note(HELP),
            "/new": self._new,
            "/file": self._file,
            "/think": self._think,
            "/model": self._model,
            "/system": self._system,
        }
        action = actions.get(command)
        if action is None:
            self.screen.note(f"unknown command {command}; /help lists them")
            return True
        return action(arg) is not False

    def _new(self, _: str) -> None:
        self.previous_id = None
        self.attachments.clear()
        self.screen.note("new conversation")

    def _think(self, arg: str) -> None:
        if not arg:
            self.thinking = None
            self.screen.note("thinking: the server's default")
        elif arg in THINKING_LEVELS:
            self.thinking = arg
            self.screen.note(f"thinking: {arg}")
        else:
            self.screen.note(f"/think takes one of {', '.join(THINKING_LEVELS)}")

    def _model(self, arg: str) -> None:
        if arg:
            self.model = arg
            self.screen.note(f"model: {arg}")
            return
        try:
            names = [str(m.name).removeprefix("models/") for m in self.client.models.list()]
        except Exception as exc:
            self.screen.note(f"could not list models: {_describe(exc)}")
            return
        shown = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
        self.screen.note(f"model: {self.model}; served: {shown}")

    def _system(self, arg: str) -> None:
        self.system = arg or None
        self.screen.note(f"system instruction: {arg}" if arg else "system instruction cleared")

    def _file(self, arg: str) -> None:
        if not arg:
            self.screen.note("/file takes a path")
            return
        path = Path(arg).expanduser()
        if not path.is_file():
            self.screen.note(f"no such file: {path}")
            return
        mime = _mime_type(path)
        try:
            uploaded = self.client.files.upload(file=str(path), config={"mime_type": mime})
        except KeyboardInterrupt:
            self.screen.note("upload cancelled")
            return
        except Exception as exc:
            self.screen.note(f"upload failed: {_describe(exc)}")
            return
        kind = next((k for k in ("image", "audio", "video") if mime.startswith(k + "/")), None)
        self.attachments.append(
            {"type": kind or "document", "uri": str(uploaded.uri), "mime_type": mime}
        )
        self.screen.note(
            f"attached {path.name} ({mime}, {path.stat().st_size} bytes) to your next message"
        )

    def turn(self, text: str) -> None:
        request: dict[str, Any] = {"model": self.model, "stream": True}
        if self.attachments:
            request["input"] = [{"type": "text", "text": text}, *self.attachments]
        else:
            request["input"] = text
        if self.previous_id is not None:
            request["previous_interaction_id"] = self.previous_id
        if self.system is not None:
            request["system_instruction"] = self.system
        if self.thinking is not None:
            request["generation_config"] = {"thinking_level": self.thinking}
        started = time.monotonic()
        turn = _Turn(self.screen)
        try:
            stream = self.client.interactions.create(**request)
            self.attachments.clear()  # sent: the next turn starts without them
            with stream:
                for event in stream:
                    turn.on(event.model_dump(mode="json", exclude_none=True))
        except KeyboardInterrupt:
            # Closing the stream disconnects: the server cancels the interaction.
            self.screen.note("[cancelled]")
            return
        except Exception as exc:
            self.screen.note(f"error: {_describe(exc)}")
            return
        self.screen.end_line()
        if turn.finished_id is not None:
            self.previous_id = turn.finished_id
        if turn.footer:
            self.screen.note(f"({turn.footer}, {time.monotonic() - started:.1f} s)")


class _Turn:
    """The events of one streamed interaction, written as they come."""

    def __init__(self, screen: Screen) -> None:
        self._screen = screen
        self._step: str | None = None
        self.finished_id: str | None = None
        self.footer = ""

    def on(self, event: dict[str, Any]) -> None:
        kind = event.get("event_type")
        if kind == "step.start":
            self._step = event.get("step", {}).get("type")
            if self._step == "thought":
                self._screen.write("thinking: ", dim=True)
        elif kind == "step.delta":
            delta = event.get("delta", {})
            if delta.get("type") == "text":
                self._screen.write(delta.get("text", ""))
            elif delta.get("type") == "thought_summary":
                self._screen.write(delta.get("content", {}).get("text", ""), dim=True)
        elif kind == "step.stop" and self._step == "thought":
            self._screen.end_line()
            self._step = None
        elif kind == "interaction.completed":
            interaction = event.get("interaction", {})
            status = interaction.get("status")
            if status not in ("failed", "cancelled"):
                self.finished_id = interaction.get("id")
            if status not in (None, "completed"):
                self._screen.note(f"[{status}]")
            usage = interaction.get("usage", {})
            if usage:
                parts = [
                    f"{usage.get('total_input_tokens', 0)} in",
                    f"{usage.get('total_output_tokens', 0)} out",
                ]
                if usage.get("total_thought_tokens"):
                    parts.append(f"{usage['total_thought_tokens']} thinking")
                self.footer = ", ".join(parts)
        elif kind == "error":
            error = event.get("error", {})
            self._screen.note(f"error: {error.get('message', error)}")


def _mime_type(path: Path) -> str:
    guessed, _ = mimetypes.guess_type(path.name)
    if guessed:
        return guessed
    try:
        path.read_bytes()[:65536].decode("utf-8")
    except UnicodeDecodeError:
        return "application/octet-stream"
    return "text/plain"


def _describe(exc: BaseException) -> str:
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return str(message).strip().splitlines()[0]


# ----- the server ---------------------------------------------------------------------------


def wait_ready(url: str, screen: Screen, process: subprocess.Popen[bytes] | None = None) -> None:
    """Until ``/readyz`` answers 200 (every model loaded); a note with the elapsed time while
    models load. Raises RuntimeError when the server is not there or its process ended."""
    started = time.monotonic()
    noted = False
    while True:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the embedded server exited with status {process.returncode}")
        try:
            status = httpx.get(f"{url}/readyz", timeout=2).status_code
        except httpx.HTTPError:
            status = None
            if process is None:
                raise RuntimeError(
                    f"no gemserve answers at {url}: start one (`gemserve serve`) or use "
                    "`gemserve chat --embedded`"
                ) from None
        if status == 200:
            if noted:
                screen.note(f"ready after {time.monotonic() - started:.1f} s")
            return
        elapsed = time.monotonic() - started
        if elapsed > READY_TIMEOUT_SECONDS:
            raise RuntimeError(f"{url} was not ready after {READY_TIMEOUT_SECONDS:.0f} s")
        if not noted and elapsed > 1.0:
            screen.note("waiting for the server to load its models…")
            noted = True
        time.sleep(0.2)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def embedded_server(settings: Settings, data_dir: Path | None, screen: Screen) -> Iterator[str]:
    """A `gemserve serve` child on loopback for this session; its data dir is ``data_dir`` or
    a temporary one (deleted at the end). Yields its URL once every model is ready."""
    temp = None if data_dir is not None else tempfile.mkdtemp(prefix="gemserve-chat-")
    root = data_dir if data_dir is not None else Path(str(temp))
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    log_path = root / "chat-server.log"
    port = _free_port()
    cmd = [sys.executable, "-m", "gemserve", "serve", "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--data-dir", str(root), "--log-level", "warning"]
    if settings.config is not None:
        cmd += ["--config", str(settings.config)]
    if settings.database_url is not None:
        cmd += ["--database-url", settings.database_url]
    screen.note(f"starting an embedded server (log: {log_path})")
    with log_path.open("ab") as log:
        # Its own session: the terminal's Ctrl-C goes to the REPL, not to the server.
        process = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_ready(url, screen, process)
        except RuntimeError:
            tail = log_path.read_text(errors="replace").splitlines()[-15:]
            screen.note("\n".join(tail))
            raise
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)


# ----- the loop -----------------------------------------------------------------------------


def _reader(history: Path) -> Callable[[], str]:
    """Lines from the user: prompt_toolkit (history file, arrow keys) on a terminal, plain
    lines from a pipe."""
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        return lambda: input()
    from prompt_toolkit import PromptSession
    from prompt_toolkit.history import FileHistory

    history.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    session: PromptSession[str] = PromptSession(history=FileHistory(str(history)))
    return lambda: session.prompt("> ")


def run_chat(
    settings: Settings,
    *,
    url: str | None,
    api_key: str | None,
    embedded: bool,
    model: str | None,
    data_dir: Path | None = None,
) -> int:
    screen = Screen(sys.stdout)
    if embedded and url:
        print("gemserve: --url and --embedded exclude each other", file=sys.stderr)
        return 2
    key = api_key or os.environ.get("GEMINI_API_KEY") or os.environ.get("GOOGLE_API_KEY")
    with contextlib.ExitStack() as stack:
        try:
            if embedded:
                base = stack.enter_context(embedded_server(settings, data_dir, screen))
            else:
                base = (url or DEFAULT_URL).rstrip("/")
                wait_ready(base, screen)
        except RuntimeError as exc:
            print(f"gemserve: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 130
        from google import genai

        # Open mode (loopback) takes any key; the SDK insists on one.
        client = genai.Client(api_key=key or "gemserve-chat", http_options={"base_url": base})
        session = ChatSession(client, screen, model=model or DEFAULT_MODEL)
        read = _reader(settings.data_dir / HISTORY_FILE)
        screen.note(f"gemserve chat: {session.model} at {base}. /help lists commands.")
        while True:
            try:
                line = read()
            except KeyboardInterrupt:
                continue  # Ctrl-C at the prompt clears the line
            except EOFError:
                screen.end_line()
                return 0
            if not session.handle(line):
                return 0
    return 0
