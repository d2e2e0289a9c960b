"""`gemserve chat` under a pseudo-terminal (pexpect) against a live server with the bundled
model: streamed answers, /think, /file, /new, arrow-key history, Ctrl-C cancelling one answer,
/quit. And the same REPL reading a pipe."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support.server import LiveServer

pytestmark = pytest.mark.live

FOOTER = r"\((\d+) in, (\d+) out(, (\d+) thinking)?, [\d.]+ s\)"
UP = "\x1b[A"
# The prompt as prompt_toolkit draws "> " (it may move the cursor over the space).
PROMPT = r">(?: |\x08\x1b\[2C)"


def spawn_chat(server: LiveServer, data_dir: Path) -> object:
    pexpect = pytest.importorskip("pexpect")
    env = {**os.environ, "TERM": "xterm", "PROMPT_TOOLKIT_NO_CPR": "1"}
    env.pop("NO_COLOR", None)
    return pexpect.spawn(
        sys.executable,
        ["-m", "gemserve", "chat", "--url", server.base_url, "--data-dir", str(data_dir)],
        env=env,
        encoding="utf-8",
        timeout=90,
        dimensions=(40, 200),
    )


def test_a_chat_session_in_a_terminal(live_server: LiveServer, tmp_path: Path) -> None:
    import pexpect

    child = spawn_chat(live_server, tmp_path / "data")
    assert isinstance(child, pexpect.spawn)
    child.logfile_read = (tmp_path / "screen.log").open("w")  # what the terminal showed
    try:
        child.expect("/help lists commands")
        child.expect(PROMPT)
        # A streamed answer, then the usage footer.
        child.sendline("Say hello to me.")
        child.expect(FOOTER)
        assert int(child.match.group(2)) > 0
        child.expect(PROMPT)
        # Thinking: the thought summary is dimmed, the footer counts it.
        child.sendline("/think low")
        child.expect("thinking: low")
        child.expect(PROMPT)
        child.sendline("Why is the sky blue?")
        child.expect("\x1b\\[2mthinking: ")
        child.expect(FOOTER)
        assert int(child.match.group(4) or 0) > 0
        child.expect(PROMPT)
        child.sendline("/think minimal")
        child.expect(PROMPT)
        # A file, uploaded and attached to the next message (its tokens count as input).
        note = tmp_path / "note.txt"
        note.write_text("The secret word is pelican. " * 20 + "\n")
        child.sendline(f"/file {note}")
        child.expect(r"attached note\.txt \(text/plain, \d+ bytes\) to your next message")
        child.expect(PROMPT)
        child.sendline("What is the secret word?")
        child.expect(FOOTER)
        assert int(child.match.group(1)) > 100  # the document's tokens reached the model
        child.expect(PROMPT)
        # A new conversation; the up arrow brings `/new` back.
        child.sendline("/new")
        child.expect("new conversation")
        child.expect(PROMPT)
        child.send(UP)
        child.expect("/new")
        child.send("\r")
        child.expect("new conversation")
        child.expect(PROMPT)
        # Ctrl-C while an answer streams cancels that answer, not the REPL.
        child.sendline("Write a very long story about a dragon who learns to bake bread.")
        child.expect(r"\x1b\[\?2004l")  # the prompt is done with the line
        child.expect(r"\w+ \w+ \w+ \w+")  # words of the answer are arriving
        child.sendcontrol("c")
        child.expect(r"\[cancelled\]")
        child.expect(PROMPT)
        child.sendline("/quit")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0, child.before
    history = (tmp_path / "data" / "chat_history").read_text()
    assert "+/think low" in history
    assert "+What is the secret word?" in history


def test_chat_reads_a_pipe(live_server: LiveServer, tmp_path: Path) -> None:
    lines = "Hello!\n/system Answer in one word.\nAnd again?\n/think bogus\n/nope\n/quit\n"
    result = subprocess.run(
        [sys.executable, "-m", "gemserve", "chat", "--url", live_server.base_url,
         "--data-dir", str(tmp_path)],
        input=lines, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.count(" in, ") == 2  # two answered turns
    assert "system instruction: Answer in one word." in out
    assert "/think takes one of minimal, low, medium, high" in out
    assert "unknown command /nope" in out
    assert "\x1b[" not in out  # no colours into a pipe


def test_chat_without_a_server_says_so(tmp_path: Path) -> None:
    from tests.support.server import free_port

    url = f"http://127.0.0.1:{free_port()}"
    result = subprocess.run(
        [sys.executable, "-m", "gemserve", "chat", "--url", url, "--data-dir", str(tmp_path)],
        input="", capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1
    assert f"no gemserve answers at {url}" in result.stderr
    assert "--embedded" in result.stderr


def test_embedded_starts_and_stops_a_server_of_its_own(tmp_path: Path) -> None:
    data = tmp_path / "data"
    result = subprocess.run(
        [sys.executable, "-m", "gemserve", "chat", "--embedded", "--data-dir", str(data)],
        input="/model\nHi!\n", capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr  # end of input: Ctrl-D
    out = result.stdout
    assert f"starting an embedded server (log: {data / 'chat-server.log'})" in out
    assert "served: smollm2-135m-instruct" in out
    assert out.count(" in, ") == 1
    match = re.search(r" at (http://127\.0\.0\.1:\d+)\. ", out)
    assert match is not None, out
    url = match.group(1)
    # The server went with the REPL, and kept its state in the data dir.
    assert (data / "gemserve.db").exists()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/healthz", timeout=2)
