"""`gemserve models pull` against a fake Hugging Face Hub on loopback (tests/support/fake_hub.py):
download with progress, the SHA-256 check, the printed or written `[[models]]` entry, the
offline cache, and resuming a partial download. Never the internet."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from gemserve.config import ModelRegistry
from tests.support.fake_hub import COMMIT, FakeHub, write_tiny_gguf

REPO = "acme/Tiny-GGUF"
FILE = "Tiny-Q4_1.gguf"
REF = f"{REPO}/{FILE}"


@pytest.fixture
def gguf_bytes(tmp_path: Path) -> bytes:
    return write_tiny_gguf(tmp_path / "made.gguf").read_bytes()


@pytest.fixture
def hub(gguf_bytes: bytes) -> Iterator[FakeHub]:
    fake = FakeHub(REPO, {FILE: gguf_bytes}).start()
    yield fake
    fake.stop()


def pull(
    hub_url: str, tmp: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environment = {
        **{k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"},
        "HF_ENDPOINT": hub_url,
        "HF_HOME": str(tmp / "hf-home"),  # no token of the machine's
        "HF_HUB_DISABLE_TELEMETRY": "1",
        **(env or {}),
    }
    cmd = [sys.executable, "-m", "gemserve", "models", "pull", *args]
    cmd += ["--data-dir", str(tmp / "data")]
    return subprocess.run(cmd, env=environment, capture_output=True, text=True, timeout=60)


def cached_blob(tmp: Path, sha: str) -> Path:
    return tmp / "data/cache/huggingface/models--acme--Tiny-GGUF/blobs" / sha


def test_pull_downloads_checks_and_prints_an_entry(hub: FakeHub, tmp_path: Path) -> None:
    result = pull(hub.url, tmp_path, REF)
    assert result.returncode == 0, result.stderr
    sha = hub.sha256(FILE)
    assert f"sha256 {sha} OK" in result.stderr
    assert f"downloaded 3.1 KiB of {FILE}" in result.stderr  # the non-TTY progress line
    assert "Q4_1, which llama.cpp's CPU backend does not repack" in result.stderr
    (entry,) = tomllib.loads(result.stdout)["models"]
    assert entry["id"] == "tiny-q4_1"
    assert entry["display_name"] == "Tiny Test (Q4_1)"
    assert entry["context_length"] == 8192  # trained 32768, capped
    path = Path(entry["source"])
    assert path.read_bytes() == hub.files[FILE]
    assert path.parent.name == COMMIT
    assert path.resolve() == cached_blob(tmp_path, sha)
    # `serve` accepts it as it is.
    registry = ModelRegistry.from_config([entry], {}, "smollm2-135m-instruct")
    assert registry.resolve("tiny-q4_1").spec.gguf_path() == path
    methods = [(r.method, r.path.split("/")[-1]) for r in hub.requests]
    assert ("POST", "main") in methods  # paths-info: the hub's LFS sha256
    assert methods.count(("GET", FILE)) == 1


def test_write_appends_to_the_config_and_refuses_a_second_time(
    hub: FakeHub, tmp_path: Path
) -> None:
    config = tmp_path / "gemserve.toml"
    config.write_text('[server]\nport = 8080\n\n[aliases]\n"x" = "smollm2-135m-instruct"\n')
    result = pull(hub.url, tmp_path, REF, "--write", str(config))
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert f"added model 'tiny-q4_1' to {config}" in result.stderr
    written = tomllib.loads(config.read_text())
    assert written["server"] == {"port": 8080}
    assert [m["id"] for m in written["models"]] == ["tiny-q4_1"]
    listed = subprocess.run(
        [sys.executable, "-m", "gemserve", "models", "list", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "tiny-q4_1" in listed.stdout
    before = config.read_text()
    again = pull(hub.url, tmp_path, REF, "--write", str(config))
    assert again.returncode == 1
    assert "already has a model with id 'tiny-q4_1'" in again.stderr
    assert config.read_text() == before


def test_thinking_template_gets_native_thinking(tmp_path: Path) -> None:
    data = write_tiny_gguf(tmp_path / "think.gguf", quant="Q4_0", think=True).read_bytes()
    fake = FakeHub(REPO, {"Think-Q4_0.gguf": data}).start()
    try:
        result = pull(fake.url, tmp_path, f"{REPO}/Think-Q4_0.gguf")
    finally:
        fake.stop()
    assert result.returncode == 0, result.stderr
    (entry,) = tomllib.loads(result.stdout)["models"]
    assert entry["thinking"] == {"mode": "native"}
    assert "does not repack" not in result.stderr  # Q4_0 batches well


def test_a_sha_mismatch_fails_deletes_the_file_and_writes_nothing(
    gguf_bytes: bytes, tmp_path: Path
) -> None:
    fake = FakeHub(REPO, {FILE: gguf_bytes}, lie_about_sha=True).start()
    config = tmp_path / "gemserve.toml"
    try:
        result = pull(fake.url, tmp_path, REF, "--write", str(config))
    finally:
        fake.stop()
    assert result.returncode == 1
    assert f"SHA-256 mismatch for {REF}: the hub says {'f' * 64}" in result.stderr
    assert "no configuration was written" in result.stderr
    assert not config.exists()
    assert result.stdout == ""
    assert not cached_blob(tmp_path, fake.sha256(FILE)).exists()


def test_offline_runs_use_the_cache(hub: FakeHub, tmp_path: Path) -> None:
    first = pull(hub.url, tmp_path, REF)
    assert first.returncode == 0, first.stderr
    hub.requests.clear()
    offline = pull(hub.url, tmp_path, REF, env={"HF_HUB_OFFLINE": "1"})
    assert offline.returncode == 0, offline.stderr
    assert offline.stdout == first.stdout
    assert f"sha256 {hub.sha256(FILE)} OK" in offline.stderr  # checked against the blob's name
    assert hub.requests == []
    # The hub gone: the same, after a note.
    hub.stop()
    unreachable = pull(hub.url, tmp_path, REF)
    assert unreachable.returncode == 0, unreachable.stderr
    assert "the hub is unreachable" in unreachable.stderr
    assert unreachable.stdout == first.stdout


def test_offline_without_the_file_is_a_clear_error(hub: FakeHub, tmp_path: Path) -> None:
    result = pull(hub.url, tmp_path, REF, env={"HF_HUB_OFFLINE": "1"})
    assert result.returncode == 1
    assert f"{REF} is not in the cache" in result.stderr


def test_an_unknown_file_is_named(hub: FakeHub, tmp_path: Path) -> None:
    result = pull(hub.url, tmp_path, f"{REPO}/Nope.gguf")
    assert result.returncode == 1
    assert f"{REPO}/Nope.gguf is not on the hub" in result.stderr
    bad = pull(hub.url, tmp_path, "just-a-name.gguf")
    assert bad.returncode == 1
    assert "is not OWNER/REPO/FILE.gguf" in bad.stderr


def test_a_partial_download_is_resumed_with_a_range(hub: FakeHub, tmp_path: Path) -> None:
    """An earlier run stopped half-way (its bytes in blobs/<sha>.incomplete): the next one asks
    for the rest only."""
    sha = hub.sha256(FILE)
    data = hub.files[FILE]
    half = len(data) // 2
    partial = cached_blob(tmp_path, sha).with_name(f"{sha}.incomplete")
    partial.parent.mkdir(parents=True)
    partial.write_bytes(data[:half])
    result = pull(hub.url, tmp_path, REF)
    assert result.returncode == 0, result.stderr
    assert f"resuming {FILE} at {half} of {len(data)} bytes" in result.stderr
    assert [g.range for g in hub.gets()] == [f"bytes={half}-"]
    assert cached_blob(tmp_path, sha).read_bytes() == data
    assert not partial.exists()


def test_a_dropped_connection_is_retried_within_the_run(hub: FakeHub, tmp_path: Path) -> None:
    """huggingface_hub retries a broken body itself, with a Range from the bytes it wrote (none
    here: it writes in 10 MB chunks, and this file is smaller)."""
    hub.drop_after = 1000
    result = pull(hub.url, tmp_path, REF)
    assert result.returncode == 0, result.stderr
    assert len(hub.gets()) == 2
    assert cached_blob(tmp_path, hub.sha256(FILE)).read_bytes() == hub.files[FILE]


def test_a_progress_bar_on_a_terminal(hub: FakeHub, tmp_path: Path) -> None:
    pexpect = pytest.importorskip("pexpect")
    env = {
        **os.environ,
        "HF_ENDPOINT": hub.url,
        "HF_HOME": str(tmp_path / "hf-home"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }
    env.pop("HF_HUB_OFFLINE", None)
    child = pexpect.spawn(
        sys.executable,
        ["-m", "gemserve", "models", "pull", REF, "--data-dir", str(tmp_path / "data")],
        env=env,
        encoding="utf-8",
        timeout=60,
    )
    child.expect(r"Tiny-Q4_1\.gguf: 100%")
    child.expect(r"\[\[models\]\]")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_ctrl_c_keeps_the_bytes_and_the_next_run_resumes(tmp_path: Path) -> None:
    """A real interruption: the hub stalls after 11 MiB, the pull gets SIGINT, keeps what it
    wrote (huggingface_hub writes in 10 MiB chunks), and the next run asks for the rest."""
    import signal
    import time

    data = write_tiny_gguf(tmp_path / "big.gguf", padding=12 * 1024 * 1024).read_bytes()
    fake = FakeHub(REPO, {FILE: data}, stall_after=11 * 1024 * 1024).start()
    partial = cached_blob(tmp_path, fake.sha256(FILE)).with_name(f"{fake.sha256(FILE)}.incomplete")
    env = {
        **{k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"},
        "HF_ENDPOINT": fake.url,
        "HF_HOME": str(tmp_path / "hf-home"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "gemserve", "models", "pull", REF,
             "--data-dir", str(tmp_path / "data")],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while not (partial.exists() and partial.stat().st_size >= 10 * 1024 * 1024):
            assert time.monotonic() < deadline, "the first 10 MiB never reached the disk"
            assert process.poll() is None, process.communicate()
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
        assert process.returncode == 130, stderr
        kept = partial.stat().st_size
        assert f"interrupted: {kept} bytes kept in {partial}; run again to resume" in stderr
        fake.release.set()
        fake.requests.clear()
        result = pull(fake.url, tmp_path, REF)
    finally:
        fake.stop()
    assert result.returncode == 0, result.stderr
    assert f"resuming {FILE} at {kept} of {len(data)} bytes" in result.stderr
    assert [g.range for g in fake.gets()] == [f"bytes={kept}-"]
    assert cached_blob(tmp_path, fake.sha256(FILE)).read_bytes() == data
