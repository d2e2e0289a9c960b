"""The Files API through the official SDKs and curl, against the session's live gemserve.

Python (google-genai) and JS (@google/genai, ``js/files.mjs``) upload, get, list, download and
delete; curl does the resumable upload the way the Gemini REST docs do (read
``x-goog-upload-url`` from the dumped headers, then ``--data-binary`` with ``upload, finalize``).
Each test uses an API key of its own, so its tenant holds only what it uploaded.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from google import genai
from google.genai import _api_client, types
from google.genai import errors as genai_errors

from tests.support.contract import JS_DIR, AccessLog, client_env
from tests.support.engines import on_both_engines
from tests.support.server import LiveServer

pytestmark = pytest.mark.contract
live_server = on_both_engines()

TIMEOUT_S = 120
# A few bytes of a real PNG and JPEG header, padded: the SDKs never look inside.
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8
JPEG = b"\xff\xd8\xff\xe0" + bytes(range(255, -1, -1)) * 6


def fresh_key() -> str:
    return "files-sdk-" + secrets.token_hex(8)


def b64_sha256(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def file_id(name: str | None) -> str:
    assert name is not None
    assert name.startswith("files/"), name
    return name.removeprefix("files/")


@pytest.fixture
def client(live_server: LiveServer) -> Iterator[genai.Client]:
    with genai.Client(api_key=fresh_key(), http_options={"base_url": live_server.base_url}) as c:
        yield c


# ----- Python ---------------------------------------------------------------------------------


def test_python_upload_a_path_then_get_list_download_delete(
    client: genai.Client, live_server: LiveServer, tmp_path: Path
) -> None:
    path = tmp_path / "pixel.png"
    path.write_bytes(PNG)
    log = AccessLog(live_server)
    uploaded = client.files.upload(file=str(path))
    fid = file_id(uploaded.name)
    assert uploaded.mime_type == "image/png"  # guessed by the SDK from the extension
    assert uploaded.size_bytes == len(PNG)
    assert uploaded.sha256_hash == b64_sha256(PNG)
    assert uploaded.state == types.FileState.ACTIVE
    assert uploaded.source == types.FileSource.UPLOADED
    assert uploaded.uri == f"{live_server.base_url}/v1/files/{fid}"
    assert uploaded.create_time is not None
    assert uploaded.expiration_time is not None
    lifetime = uploaded.expiration_time - uploaded.create_time
    assert abs(lifetime - timedelta(hours=48)) < timedelta(seconds=1)
    assert client.files.get(name=uploaded.name) == uploaded
    assert [f.name for f in client.files.list()] == [uploaded.name]
    assert client.files.download(file=uploaded.name) == PNG
    client.files.delete(name=uploaded.name)
    with pytest.raises(genai_errors.ClientError) as info:
        client.files.get(name=uploaded.name)
    assert info.value.code == 404
    assert info.value.status == "NOT_FOUND"
    # One request each: nothing was retried (a chunk answer without a status is re-sent).
    assert log.lines(expect=7) == [
        ("POST", "/upload/v1/files", 200),
        ("POST", "/upload/v1/files", 200),
        ("GET", f"/v1/files/{fid}", 200),
        ("GET", "/v1/files", 200),
        ("GET", f"/v1/files/{fid}:download", 200),
        ("DELETE", f"/v1/files/{fid}", 200),
        ("GET", f"/v1/files/{fid}", 404),
    ]


def test_python_upload_in_memory_bytes_with_config(client: genai.Client) -> None:
    uploaded = [
        client.files.upload(
            file=io.BytesIO(PNG[:n]),
            config={"mime_type": "image/png", "display_name": f"In memory {n}"},
        )
        for n in (100, 200)
    ]
    for n, file in zip((100, 200), uploaded, strict=True):
        assert file.display_name == f"In memory {n}"
        assert file.mime_type == "image/png"
        assert file.size_bytes == n
        assert file.sha256_hash == b64_sha256(PNG[:n])
    # One file per page: the pager follows nextPageToken; newest first.
    listed = [f.name for f in client.files.list(config={"page_size": 1})]
    assert listed == [uploaded[1].name, uploaded[0].name]


def test_python_multi_chunk_upload(
    client: genai.Client, live_server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With 1 KiB chunks a 5000-byte file takes five chunk requests after the start."""
    assert _api_client.CHUNK_SIZE == 8 * 1024 * 1024
    monkeypatch.setattr(_api_client, "CHUNK_SIZE", 1024)
    data = (bytes(range(256)) * 20)[:5000]
    log = AccessLog(live_server)
    uploaded = client.files.upload(
        file=io.BytesIO(data), config={"mime_type": "application/octet-stream"}
    )
    assert log.lines(expect=6) == [("POST", "/upload/v1/files", 200)] * 6
    assert uploaded.size_bytes == 5000
    assert uploaded.sha256_hash == b64_sha256(data)
    assert client.files.download(file=uploaded) == data


# A 20 MB file: three chunk requests of at most 8 MiB (8 + 8 + 3.07 MiB), as both SDKs send.
BIG = 20_000_000


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("big") / "big.bin"
    path.write_bytes(secrets.token_bytes(BIG))
    return path


def test_python_uploads_20_mb_in_8_mib_chunks(
    client: genai.Client, live_server: LiveServer, big_file: Path
) -> None:
    data = big_file.read_bytes()
    log = AccessLog(live_server)
    uploaded = client.files.upload(file=big_file, config={"mime_type": "video/mp4"})
    assert log.lines(expect=4) == [("POST", "/upload/v1/files", 200)] * 4  # start + 3 chunks
    assert uploaded.size_bytes == BIG
    assert uploaded.sha256_hash == b64_sha256(data)
    assert client.files.download(file=uploaded) == data
    client.files.delete(name=uploaded.name)


# ----- JS -------------------------------------------------------------------------------------


def run_files_mjs(server: LiveServer, path: Path) -> dict[str, Any]:
    """``node files.mjs <path>`` with a key of its own; what the SDK returned, as JSON."""
    if not (JS_DIR / "node_modules" / "@google" / "genai" / "package.json").is_file():
        pytest.fail("@google/genai is not installed: run `npm ci` in tests/contract/js")
    proc = subprocess.run(
        ["node", "files.mjs", str(path)],
        cwd=JS_DIR,
        env={**client_env(server.base_url), "GEMINI_API_KEY": fresh_key()},
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    assert proc.returncode == 0, f"files.mjs failed:\n{proc.stderr}"
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_js_uploads_20_mb_in_8_mib_chunks(live_server: LiveServer, big_file: Path) -> None:
    log = AccessLog(live_server)
    uploaded = run_files_mjs(live_server, big_file)["uploadedFile"]
    assert uploaded["sizeBytes"] == str(BIG)
    assert uploaded["sha256Hash"] == b64_sha256(big_file.read_bytes())
    # The big file: start + three chunks; then the small Blob: start + one chunk.
    assert log.lines(expect=6).count(("POST", "/upload/v1/files", 200)) == 6


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_js_upload_get_list_delete(live_server: LiveServer, tmp_path: Path) -> None:
    path = tmp_path / "photo.jpg"
    path.write_bytes(JPEG)
    log = AccessLog(live_server)
    result = run_files_mjs(live_server, path)
    uploaded = result["uploadedFile"]
    fid = file_id(uploaded["name"])
    # undefined (null here) if the server had answered in snake_case.
    assert uploaded["mimeType"] == "image/jpeg"
    assert uploaded["sizeBytes"] == str(len(JPEG))
    assert uploaded["sha256Hash"] == b64_sha256(JPEG)
    assert uploaded["uri"] == f"{live_server.base_url}/v1/files/{fid}"
    assert uploaded["downloadUri"] == uploaded["uri"] + ":download?alt=media"
    assert (uploaded["state"], uploaded["source"]) == ("ACTIVE", "UPLOADED")
    blob = result["uploadedBlob"]
    assert (blob["displayName"], blob["mimeType"]) == ("From a Blob", "text/plain")
    assert blob["sizeBytes"] == str(len(b"plain text from a Blob"))
    assert result["got"] == uploaded
    assert result["listed"] == [blob["name"], uploaded["name"]]
    after = result["afterDelete"]
    assert after.get("threw"), after
    assert after["status"] == 404
    requests = log.lines(expect=10)
    assert requests.count(("POST", "/upload/v1/files", 200)) == 4  # start + one chunk, twice
    assert requests.count(("GET", "/v1/files", 200)) == 2  # two pages
    assert ("GET", f"/v1/files/{fid}", 404) in requests


# ----- curl -----------------------------------------------------------------------------------

# The REST docs' upload, with the host replaced: dump the start answer's headers, read the
# upload URL from them, then send the whole file in one "upload, finalize" request. The docs'
# start body is written with single quotes, which Google's parser (and gemserve) accept.
CURL_UPLOAD = """\
NUM_BYTES=$(wc -c < "${IMG_PATH}")
tmp_header_file=upload-header.tmp

curl "${BASE_URL}/upload/v1beta/files" \\
  -H "x-goog-api-key: $GEMINI_API_KEY" \\
  -D "${tmp_header_file}" \\
  -H "X-Goog-Upload-Protocol: resumable" \\
  -H "X-Goog-Upload-Command: start" \\
  -H "X-Goog-Upload-Header-Content-Length: ${NUM_BYTES}" \\
  -H "X-Goog-Upload-Header-Content-Type: ${MIME_TYPE}" \\
  -H "Content-Type: application/json" \\
  -d "{'file': {'display_name': '${DISPLAY_NAME}'}}" 2> /dev/null

upload_url=$(grep -i "x-goog-upload-url: " "${tmp_header_file}" | cut -d" " -f2 | tr -d "\\r")
rm "${tmp_header_file}"

curl "${upload_url}" \\
  -H "Content-Length: ${NUM_BYTES}" \\
  -H "X-Goog-Upload-Offset: 0" \\
  -H "X-Goog-Upload-Command: upload, finalize" \\
  --data-binary "@${IMG_PATH}" 2> /dev/null > file_info.json
"""


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_upload_get_and_download(live_server: LiveServer, tmp_path: Path) -> None:
    path = tmp_path / "image.jpg"
    path.write_bytes(JPEG)
    key = fresh_key()
    env = {
        **client_env(live_server.base_url),
        "GEMINI_API_KEY": key,
        "BASE_URL": live_server.base_url,
        "IMG_PATH": str(path),
        "MIME_TYPE": "image/jpeg",
        "DISPLAY_NAME": "curl upload",
    }
    proc = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", CURL_UPLOAD],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    file = json.loads((tmp_path / "file_info.json").read_text())["file"]
    fid = file_id(file["name"])
    assert file["displayName"] == "curl upload"
    assert file["mimeType"] == "image/jpeg"
    assert file["sizeBytes"] == str(len(JPEG))
    assert file["sha256Hash"] == b64_sha256(JPEG)
    assert file["uri"] == f"{live_server.base_url}/v1beta/files/{fid}"

    def curl(*args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            ["curl", "-sS", "--fail-with-body", "-H", f"x-goog-api-key: {key}", *args],
            cwd=tmp_path,
            capture_output=True,
            timeout=TIMEOUT_S,
            check=False,
        )

    got = curl(f"{live_server.base_url}/v1beta/files/{fid}")
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout) == file
    downloaded = curl("-o", "downloaded.jpg", file["downloadUri"])
    assert downloaded.returncode == 0, downloaded.stderr
    assert (tmp_path / "downloaded.jpg").read_bytes() == JPEG
