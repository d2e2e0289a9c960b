"""The Files API over HTTP with raw httpx, speaking the resumable protocol exactly as the SDKs do.

Start: ``POST /upload/{ver}/files`` with the key and ``X-Goog-Upload-*`` headers, then chunks to
the returned ``X-Goog-Upload-URL`` with ``Content-Type: application/json`` on a binary body and
no API key (wire-protocol.md §6). Each server here runs from a TOML config of its own, so the
data directory (blobs on disk) and the limits are known.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import orjson
import pytest

from tests.support.envelope import assert_envelope
from tests.support.server import LiveServer, start_server, stop_server
from tests.support.wait import wait_until

pytestmark = [pytest.mark.contract, pytest.mark.live]

MAX_FILE = 100_000
MAX_TENANT = 250_000
TIMEOUT = 30
POLL_S = 20  # the most any test waits for the sweeper
FILE_KEYS = {
    "name",
    "displayName",
    "mimeType",
    "sizeBytes",
    "createTime",
    "updateTime",
    "expirationTime",
    "sha256Hash",
    "uri",
    "downloadUri",
    "state",
    "source",
}


@dataclass
class FilesServer:
    live: LiveServer
    data_dir: Path

    @property
    def base_url(self) -> str:
        return self.live.base_url

    def blobs(self) -> set[str]:
        return {p.name for p in (self.data_dir / "files" / "blobs").iterdir()}

    def partials(self) -> set[str]:
        return {p.name for p in (self.data_dir / "files" / "partial").iterdir()}


def serve(tmp: Path, toml: str) -> FilesServer:
    config = tmp / "gemserve.toml"
    config.write_text(toml)
    return FilesServer(start_server(tmp, "--config", str(config)), tmp / "data")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FilesServer]:
    """Small per-file and per-tenant limits; the default 48 h expiry."""
    files_server = serve(
        tmp_path_factory.mktemp("files"),
        f"[limits]\nmax_file_bytes = {MAX_FILE}\nmax_tenant_file_bytes = {MAX_TENANT}\n",
    )
    yield files_server
    stop_server(files_server.live)


@pytest.fixture(scope="module")
def expiring(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FilesServer]:
    """Files live about 1.8 s, idle uploads 1 s, and the sweeper runs twice a second."""
    files_server = serve(
        tmp_path_factory.mktemp("expiring"),
        "[server]\nfile_ttl_hours = 0.0005\nupload_timeout_seconds = 1\n"
        "sweep_interval_seconds = 0.5\n",
    )
    yield files_server
    stop_server(files_server.live)


@pytest.fixture(scope="module")
def unswept(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FilesServer]:
    """Files expire within about a second, but the sweeper runs only at start."""
    files_server = serve(
        tmp_path_factory.mktemp("unswept"),
        "[server]\nfile_ttl_hours = 0.0003\nsweep_interval_seconds = 3600\n",
    )
    yield files_server
    stop_server(files_server.live)


# ----- the protocol, as the SDKs speak it -----------------------------------------------------


def tenant() -> dict[str, str]:
    """A fresh API key: in open mode every key is its own tenant, so tests never interfere."""
    return {"x-goog-api-key": "files-" + secrets.token_hex(8)}


def start(
    server: FilesServer,
    headers: dict[str, str],
    body: Any = None,
    *,
    size: int | None = None,
    mime: str | None = None,
    version: str = "v1beta",
    extra: dict[str, str] | None = None,
) -> httpx.Response:
    sent = {
        **headers,
        "Content-Type": "application/json",
        "X-Goog-Upload-Protocol": "resumable",
        "X-Goog-Upload-Command": "start",
    }
    if size is not None:
        sent["X-Goog-Upload-Header-Content-Length"] = str(size)
    if mime is not None:
        sent["X-Goog-Upload-Header-Content-Type"] = mime
    sent.update(extra or {})
    content = b"" if body is None else orjson.dumps(body)
    return httpx.post(
        f"{server.base_url}/upload/{version}/files", headers=sent, content=content, timeout=TIMEOUT
    )


def upload_url(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    assert response.headers["x-goog-upload-status"] == "active"
    return response.headers["x-goog-upload-url"]


def start_url(
    server: FilesServer, headers: dict[str, str], size: int | None, mime: str = "image/png"
) -> str:
    """Start as Python does: snake_case body, and the size and type in headers too."""
    meta: dict[str, Any] = {"mime_type": mime}
    if size is not None:
        meta["size_bytes"] = size
    return upload_url(start(server, headers, {"file": meta}, size=size, mime=mime))


def send(
    url: str,
    data: bytes | Iterator[bytes],
    offset: int,
    command: str = "upload, finalize",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """One chunk request: binary body labelled application/json, and no API key."""
    sent = {
        "X-Goog-Upload-Command": command,
        "X-Goog-Upload-Offset": str(offset),
        "Content-Type": "application/json",
        **(headers or {}),
    }
    return httpx.post(url, headers=sent, content=data, timeout=TIMEOUT)


def command(url: str, name: str) -> httpx.Response:
    return httpx.post(url, headers={"X-Goog-Upload-Command": name}, timeout=TIMEOUT)


def upload(
    server: FilesServer,
    headers: dict[str, str],
    data: bytes,
    *,
    chunks: int = 1,
    mime: str = "image/png",
    name: str | None = None,
    display_name: str | None = None,
) -> dict[str, Any]:
    """A whole upload in ``chunks`` requests; returns the File resource."""
    meta: dict[str, Any] = {"mime_type": mime, "size_bytes": len(data)}
    if name is not None:
        meta["name"] = name
    if display_name is not None:
        meta["display_name"] = display_name
    url = upload_url(start(server, headers, {"file": meta}, size=len(data), mime=mime))
    step = max(1, -(-len(data) // chunks))
    offsets = list(range(0, len(data), step)) or [0]
    for offset in offsets[:-1]:
        middle = send(url, data[offset : offset + step], offset, "upload")
        assert middle.status_code == 200, middle.text
        assert middle.headers["x-goog-upload-status"] == "active"
    final = send(url, data[offsets[-1] :], offsets[-1])
    assert final.status_code == 200, final.text
    assert final.headers["x-goog-upload-status"] == "final"
    file: dict[str, Any] = final.json()["file"]
    return file


def file_url(server: FilesServer, name: str, version: str = "v1beta") -> str:
    return f"{server.base_url}/{version}/{name}"


def download(server: FilesServer, headers: dict[str, str], name: str) -> httpx.Response:
    return httpx.get(file_url(server, name) + ":download", params={"alt": "media"}, headers=headers)


def b64_sha256(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def stamp(value: str) -> datetime:
    assert value.endswith("Z"), value
    return datetime.fromisoformat(value)


def payload(size: int) -> bytes:
    """Bytes that are not all alike, so that a misplaced chunk changes the hash."""
    return (bytes(range(251)) * (size // 251 + 1))[:size]


def assert_chunk_error(response: httpx.Response, code: int, status: str, *fragments: str) -> None:
    """Without ``X-Goog-Upload-Status`` both SDKs re-send the chunk three times, then fail."""
    assert_envelope(response, code, status, *fragments)
    assert response.headers["x-goog-upload-status"] == "final"


def wait_for(condition: Callable[[], bool], what: str) -> None:
    wait_until(condition, seconds=POLL_S, interval=0.1, what=what)


# ----- uploads --------------------------------------------------------------------------------


def test_multi_chunk_upload_returns_a_camel_case_file_resource(server: FilesServer) -> None:
    headers = tenant()
    data = payload(3000)
    meta = {"mime_type": "image/png", "size_bytes": 3000, "display_name": "Three chunks"}
    started = start(server, headers, {"file": meta}, size=3000, mime="image/png")
    url = upload_url(started)
    assert url.startswith(f"{server.base_url}/upload/v1beta/files?")
    for offset in (0, 1000):
        middle = send(url, data[offset : offset + 1000], offset, "upload")
        assert middle.status_code == 200, middle.text
        assert middle.headers["x-goog-upload-status"] == "active"
        assert middle.headers["x-goog-upload-size-received"] == str(offset + 1000)
    final = send(url, data[2000:], 2000)
    assert final.status_code == 200, final.text
    assert final.headers["x-goog-upload-status"] == "final"
    body = final.json()
    assert set(body) == {"file"}
    file = body["file"]
    assert set(file) == FILE_KEYS
    assert re.fullmatch(r"files/[a-z0-9]{1,40}", file["name"])
    assert file["displayName"] == "Three chunks"
    assert file["mimeType"] == "image/png"
    assert file["sizeBytes"] == "3000"  # int64 as a string (proto JSON)
    assert file["sha256Hash"] == b64_sha256(data)
    assert (file["state"], file["source"]) == ("ACTIVE", "UPLOADED")
    assert file["uri"] == file_url(server, file["name"])
    assert file["downloadUri"] == file["uri"] + ":download?alt=media"
    created = stamp(file["createTime"])
    assert stamp(file["updateTime"]) == created
    assert abs(stamp(file["expirationTime"]) - created - timedelta(hours=48)) < timedelta(seconds=1)
    assert abs(created - datetime.now(created.tzinfo)) < timedelta(minutes=5)
    assert download(server, headers, file["name"]).content == data


def test_uri_follows_the_request_host_and_version(server: FilesServer) -> None:
    """Behind a proxy the caller's host is not ours: URLs are built from the request."""
    headers = tenant()
    host = {"Host": "files.example:8443"}
    started = start(server, {**headers, **host}, size=4, mime="image/png", version="v1alpha")
    url = upload_url(started)
    assert url.startswith("http://files.example:8443/upload/v1alpha/files?upload_id=")
    # JS keeps only the path and query of the upload URL; so do we here.
    parts = urlsplit(url)
    local = f"{server.base_url}{parts.path}?{parts.query}"
    final = send(local, b"\x89PNG", 0, headers=host)
    file = final.json()["file"]
    file_id = file["name"].removeprefix("files/")
    assert file["uri"] == f"http://files.example:8443/v1alpha/files/{file_id}"
    got = httpx.get(file_url(server, file["name"], "v1"), headers=headers).json()
    assert got["uri"] == f"{server.base_url}/v1/files/{file_id}"
    assert got["downloadUri"] == f"{server.base_url}/v1/files/{file_id}:download?alt=media"


def test_upload_url_carries_an_unguessable_token(server: FilesServer) -> None:
    headers = tenant()
    urls = [start_url(server, headers, 10) for _ in range(2)]
    tokens = [parse_qs(urlsplit(url).query)["upload_id"][0] for url in urls]
    assert tokens[0] != tokens[1]
    for token in tokens:
        assert len(token) >= 32
        assert re.fullmatch(r"[A-Za-z0-9_-]+", token)
    # Only a hash of the token is stored: the database does not hold the capability.
    stored = b"".join(p.read_bytes() for p in server.data_dir.glob("gemserve.db*"))
    assert stored
    for token in tokens:
        assert token.encode() not in stored
    forged = urls[0].replace(tokens[0], tokens[0][:-2] + ("AA" if tokens[0][-2:] != "AA" else "BB"))
    assert_chunk_error(send(forged, b"0123456789", 0), 404, "NOT_FOUND")
    assert send(urls[0], b"0123456789", 0).status_code == 200


@pytest.mark.parametrize(
    "meta",
    [
        {"mime_type": "image/webp", "size_bytes": 5, "display_name": "snake"},
        {"mimeType": "image/webp", "sizeBytes": "5", "displayName": "camel"},
    ],
    ids=["python-snake_case", "js-camelCase"],
)
def test_start_body_in_either_casing(server: FilesServer, meta: dict[str, Any]) -> None:
    """Python sends snake_case with a numeric size, JS camelCase with a string size."""
    headers = tenant()
    # No X-Goog-Upload-Header-* headers: everything must come from the body.
    too_long = send(upload_url(start(server, headers, {"file": meta})), b"abcdef", 0)
    assert_chunk_error(too_long, 400, "INVALID_ARGUMENT", "declared 5")
    final = send(upload_url(start(server, headers, {"file": meta})), b"abcde", 0)
    assert final.status_code == 200, final.text
    file = final.json()["file"]
    assert file["mimeType"] == "image/webp"
    assert file["sizeBytes"] == "5"
    assert file["displayName"] == meta.get("display_name", meta.get("displayName"))


def test_query_reports_the_bytes_received(server: FilesServer) -> None:
    """A client resumes from X-Goog-Upload-Size-Received."""
    data = payload(2000)
    url = start_url(server, tenant(), len(data))
    first = command(url, "query")
    assert first.status_code == 200
    assert first.headers["x-goog-upload-status"] == "active"
    assert first.headers["x-goog-upload-size-received"] == "0"
    assert send(url, data[:1200], 0, "upload").status_code == 200
    received = command(url, "query").headers["x-goog-upload-size-received"]
    assert received == "1200"
    final = send(url, data[int(received) :], int(received))
    assert final.json()["file"]["sha256Hash"] == b64_sha256(data)


def test_cancel_ends_the_session_and_deletes_its_bytes(server: FilesServer) -> None:
    url = start_url(server, tenant(), 2000)
    before = server.partials()
    assert send(url, payload(500), 0, "upload").status_code == 200
    (partial,) = server.partials() - before
    cancelled = command(url, "cancel")
    assert cancelled.status_code == 200
    assert cancelled.headers["x-goog-upload-status"] == "cancelled"
    assert partial not in server.partials()
    assert_chunk_error(command(url, "query"), 404, "NOT_FOUND")
    assert_chunk_error(send(url, payload(1500), 500), 404, "NOT_FOUND")


def test_a_chunk_at_the_wrong_offset_is_refused(server: FilesServer) -> None:
    data = payload(2000)
    url = start_url(server, tenant(), len(data))
    assert send(url, data[:1000], 0, "upload").status_code == 200
    for offset in (0, 500, 1500):
        wrong = send(url, data[offset : offset + 500], offset, "upload")
        assert_chunk_error(wrong, 400, "INVALID_ARGUMENT", "X-Goog-Upload-Offset", "1000")
    # The refused bytes were not stored: the upload finishes with the right content.
    final = send(url, data[1000:], 1000)
    assert final.status_code == 200, final.text
    assert final.json()["file"]["sha256Hash"] == b64_sha256(data)


def test_more_bytes_than_declared_are_refused(server: FilesServer) -> None:
    headers = tenant()
    before = server.blobs()
    at_once = send(start_url(server, headers, 1000), payload(1001), 0)
    assert_chunk_error(at_once, 400, "INVALID_ARGUMENT", "declared 1000")
    url = start_url(server, headers, 1000)
    assert send(url, payload(600), 0, "upload").status_code == 200
    assert_chunk_error(send(url, payload(401), 600), 400, "INVALID_ARGUMENT", "declared 1000")
    assert server.blobs() == before
    assert httpx.get(f"{server.base_url}/v1beta/files", headers=headers).json() == {}


def test_finalizing_short_of_the_declared_size_fails_and_ends_the_session(
    server: FilesServer,
) -> None:
    headers = tenant()
    data = payload(2000)
    url = start_url(server, headers, len(data))
    blobs_before, partials_before = server.blobs(), server.partials()
    assert send(url, data[:1000], 0, "upload").status_code == 200
    (partial,) = server.partials() - partials_before
    short = send(url, data[1000:1500], 1000)
    assert_chunk_error(short, 400, "INVALID_ARGUMENT", "1500", "2000")
    assert_chunk_error(command(url, "query"), 404, "NOT_FOUND")
    assert partial not in server.partials()
    assert server.blobs() == blobs_before
    assert httpx.get(f"{server.base_url}/v1beta/files", headers=headers).json() == {}


@pytest.mark.parametrize("name", ["upload, finalize", "upload", "query", "cancel"])
def test_an_unknown_upload_id_is_404(server: FilesServer, name: str) -> None:
    url = (
        f"{server.base_url}/upload/v1beta/files?upload_id={secrets.token_urlsafe(32)}"
        "&upload_protocol=resumable"
    )
    response = send(url, b"data", 0, name) if "upload" in name else command(url, name)
    assert_chunk_error(response, 404, "NOT_FOUND", "upload session")


@pytest.mark.parametrize(
    ("upload_command", "offset", "fragment"),
    [
        ("upload", None, "X-Goog-Upload-Offset"),
        ("upload", "-1", "X-Goog-Upload-Offset"),
        ("upload, finalize", "ten", "X-Goog-Upload-Offset"),
        ("start", "0", "X-Goog-Upload-Command"),
        ("", "0", "X-Goog-Upload-Command"),
        ("upload, delete", "0", "X-Goog-Upload-Command"),
    ],
)
def test_a_malformed_chunk_request_is_refused(
    server: FilesServer, upload_command: str, offset: str | None, fragment: str
) -> None:
    url = start_url(server, tenant(), 4)
    sent = {"X-Goog-Upload-Command": upload_command, "Content-Type": "application/json"}
    if offset is not None:
        sent["X-Goog-Upload-Offset"] = offset
    response = httpx.post(url, headers=sent, content=b"data")
    assert_chunk_error(response, 400, "INVALID_ARGUMENT", fragment)
    assert send(url, b"data", 0).status_code == 200  # the session is still usable


def test_an_empty_file_uploads(server: FilesServer) -> None:
    headers = tenant()
    file = upload(server, headers, b"", mime="text/plain")
    assert file["sizeBytes"] == "0"
    assert file["sha256Hash"] == b64_sha256(b"")
    got = download(server, headers, file["name"])
    assert got.status_code == 200
    assert got.content == b""
    assert got.headers["content-length"] == "0"


# ----- starting an upload: the request is checked ---------------------------------------------


def test_start_without_a_key_is_403(server: FilesServer) -> None:
    response = start(server, {}, {"file": {"mime_type": "image/png"}}, size=4, mime="image/png")
    assert_envelope(response, 403, "PERMISSION_DENIED")
    assert "x-goog-upload-url" not in response.headers


def test_start_without_a_mime_type_is_400(server: FilesServer) -> None:
    response = start(server, tenant(), {"file": {"size_bytes": 4}}, size=4)
    assert_envelope(response, 400, "INVALID_ARGUMENT", "mime_type")


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ({"X-Goog-Upload-Protocol": "multipart"}, "resumable"),
        ({"X-Goog-Upload-Protocol": ""}, "resumable"),
        ({"X-Goog-Upload-Command": "upload"}, "X-Goog-Upload-Command"),
    ],
)
def test_only_the_resumable_protocol_starts(
    server: FilesServer, extra: dict[str, str], fragment: str
) -> None:
    response = start(server, tenant(), {"file": {"mime_type": "image/png"}}, extra=extra)
    assert_envelope(response, 400, "INVALID_ARGUMENT", fragment)


@pytest.mark.parametrize(
    "name",
    ["files/Bad_Name", "files/-lead", "files/trail-", "files/a.b", "files/", "x/abc", "a" * 41],
)
def test_a_bad_file_name_is_400(server: FilesServer, name: str) -> None:
    body = {"file": {"name": name, "mime_type": "image/png"}}
    assert_envelope(start(server, tenant(), body, size=4), 400, "INVALID_ARGUMENT", "file.name")


def test_a_file_name_with_a_trailing_newline_is_400(server: FilesServer) -> None:
    body = {"file": {"name": "files/abc\n", "mime_type": "image/png"}}
    assert_envelope(start(server, tenant(), body, size=4), 400, "INVALID_ARGUMENT", "file.name")


@pytest.mark.parametrize(
    ("meta", "header_size"),
    [
        ({"size_bytes": -1}, None),
        ({"sizeBytes": "abc"}, None),
        ({"size_bytes": 1.5}, None),
        ({}, "12x"),
        ({"mime_type": "not a mime type"}, None),
        ({"unknown_field": 1}, None),
    ],
)
def test_bad_upload_metadata_is_400(
    server: FilesServer, meta: dict[str, Any], header_size: str | None
) -> None:
    body = {"file": {"mime_type": "image/png", **meta}}
    extra = {} if header_size is None else {"X-Goog-Upload-Header-Content-Length": header_size}
    assert_envelope(start(server, tenant(), body, extra=extra), 400, "INVALID_ARGUMENT")


# ----- names ----------------------------------------------------------------------------------


def test_a_chosen_name_is_kept_and_unique_per_tenant(server: FilesServer) -> None:
    owner, other = tenant(), tenant()
    file = upload(server, owner, b"mine", name="files/my-file")
    assert file["name"] == "files/my-file"
    assert file["uri"] == f"{server.base_url}/v1beta/files/my-file"
    again = start(server, owner, {"file": {"name": "files/my-file", "mime_type": "image/png"}})
    assert_envelope(again, 409, "ALREADY_EXISTS", "files/my-file")
    # Names are per tenant; the bare id works as well as files/<id>.
    theirs = upload(server, other, b"theirs", name="my-file")
    assert theirs["name"] == "files/my-file"
    assert download(server, owner, "files/my-file").content == b"mine"
    assert download(server, other, "files/my-file").content == b"theirs"


def test_a_pending_upload_holds_its_name(server: FilesServer) -> None:
    headers = tenant()
    body = {"file": {"name": "files/held", "mime_type": "image/png", "size_bytes": 4}}
    first = upload_url(start(server, headers, body))
    assert_envelope(start(server, headers, body), 409, "ALREADY_EXISTS")
    assert command(first, "cancel").status_code == 200
    final = send(upload_url(start(server, headers, body)), b"\x89PNG", 0)
    assert final.json()["file"]["name"] == "files/held"


# ----- limits ---------------------------------------------------------------------------------


def test_a_declared_size_over_the_per_file_limit_is_413(server: FilesServer) -> None:
    headers = tenant()
    in_body = start(
        server, headers, {"file": {"mime_type": "image/png", "size_bytes": MAX_FILE + 1}}
    )
    assert_envelope(in_body, 413, "INVALID_ARGUMENT", "per-file limit", str(MAX_FILE))
    in_header = start(server, headers, {"file": {"mime_type": "image/png"}}, size=MAX_FILE + 1)
    assert_envelope(in_header, 413, "INVALID_ARGUMENT", "per-file limit")
    at_limit = start_url(server, headers, MAX_FILE)
    assert command(at_limit, "cancel").status_code == 200


def test_an_undeclared_upload_stops_at_the_per_file_limit(server: FilesServer) -> None:
    before = server.blobs()
    url = start_url(server, tenant(), None)
    refused = send(url, payload(MAX_FILE + 1), 0)
    assert_chunk_error(refused, 413, "INVALID_ARGUMENT", "per-file limit")
    assert server.blobs() == before


def test_the_tenant_quota_counts_files_and_pending_uploads(server: FilesServer) -> None:
    headers, other = tenant(), tenant()
    size = 90_000
    file = upload(server, headers, payload(size))
    pending = start_url(server, headers, size)
    over = start(server, headers, {"file": {"mime_type": "image/png", "size_bytes": size}})
    assert_envelope(over, 429, "RESOURCE_EXHAUSTED", "quota", str(MAX_TENANT))
    assert over.headers["retry-after"] == "60"
    # The quota is per tenant.
    assert command(start_url(server, other, size), "cancel").status_code == 200
    # A cancelled upload and a deleted file give their bytes back.
    assert command(pending, "cancel").status_code == 200
    start_url(server, headers, size)
    assert (
        start(server, headers, {"file": {"mime_type": "image/png", "size_bytes": size}}).status_code
        == 429
    )
    assert httpx.delete(file_url(server, file["name"]), headers=headers).status_code == 200
    start_url(server, headers, size)


def test_concurrent_uploads_cannot_pass_the_quota_together(server: FilesServer) -> None:
    """Each start checks the bytes held and then reserves its own: two of three 100 000-byte
    uploads fit in 250 000, however the requests interleave."""
    headers = tenant()
    body = {"file": {"mime_type": "image/png", "size_bytes": 100_000}}
    with ThreadPoolExecutor(max_workers=6) as pool:
        statuses = sorted(
            response.status_code
            for response in pool.map(lambda _: start(server, headers, body), range(6))
        )
    assert statuses == [200, 200, 429, 429, 429, 429]


def test_an_undeclared_upload_cannot_exceed_the_tenant_quota(server: FilesServer) -> None:
    """Nothing is reserved at start without a size, so finalizing must count what arrived."""
    headers = tenant()
    size = 90_000
    for _ in range(2):
        upload(server, headers, payload(size))
    before = server.blobs()
    url = start_url(server, headers, None)  # 180 000 held: passes the check at start
    over = send(url, payload(size), 0)  # 270 000 > 250 000
    assert_chunk_error(over, 429, "RESOURCE_EXHAUSTED", "quota")
    assert over.headers["retry-after"] == "60"
    assert server.blobs() == before


# ----- get, list, delete, download ------------------------------------------------------------


def test_get_list_delete_download_round_trip(server: FilesServer) -> None:
    headers = tenant()
    data = payload(1500)
    file = upload(server, headers, data, mime="image/png", display_name="Round trip")
    url = file_url(server, file["name"])
    got = httpx.get(url, headers=headers)
    assert got.status_code == 200
    assert got.json() == file
    assert httpx.get(f"{server.base_url}/v1beta/files", headers=headers).json() == {"files": [file]}
    content = download(server, headers, file["name"])
    assert content.status_code == 200
    assert content.content == data
    assert content.headers["content-type"] == "image/png"
    assert content.headers["content-length"] == "1500"
    no_alt = httpx.get(url + ":download", headers=headers)
    assert_envelope(no_alt, 400, "INVALID_ARGUMENT", "alt=media")
    deleted = httpx.delete(url, headers=headers)
    assert deleted.status_code == 200
    assert deleted.json() == {}
    assert_envelope(httpx.get(url, headers=headers), 404, "NOT_FOUND", file["name"])
    assert_envelope(httpx.delete(url, headers=headers), 404, "NOT_FOUND")
    assert_envelope(download(server, headers, file["name"]), 404, "NOT_FOUND")
    assert httpx.get(f"{server.base_url}/v1beta/files", headers=headers).json() == {}


def test_list_pages_follow_next_page_token(server: FilesServer) -> None:
    headers = tenant()
    made = [upload(server, headers, payload(10 + i))["name"] for i in range(5)]
    seen: list[str] = []
    token: str | None = None
    pages = 0
    while True:
        params = {"pageSize": "2"} | ({"pageToken": token} if token else {})
        page = httpx.get(f"{server.base_url}/v1/files", params=params, headers=headers).json()
        assert len(page["files"]) <= 2
        seen += [f["name"] for f in page["files"]]
        pages += 1
        token = page.get("nextPageToken")
        if token is None or pages > 10:
            break
    assert pages == 3
    assert seen == made[::-1]  # each exactly once, newest first


@pytest.mark.parametrize("token", ["9223372036854775808", "-1", "1e3", "9" * 5000])
def test_a_page_token_out_of_range_is_a_400_not_a_500(server: FilesServer, token: str) -> None:
    response = httpx.get(
        f"{server.base_url}/v1beta/files", params={"pageToken": token}, headers=tenant()
    )
    assert_envelope(response, 400, "INVALID_ARGUMENT", "pageToken")


def test_the_largest_page_token_is_an_empty_page(server: FilesServer) -> None:
    response = httpx.get(
        f"{server.base_url}/v1beta/files",
        params={"pageToken": str(2**63 - 1)},
        headers=tenant(),
    )
    assert response.status_code == 200
    assert response.json() == {}


def test_another_tenant_gets_404_everywhere(server: FilesServer) -> None:
    owner, intruder = tenant(), tenant()
    data = payload(100)
    file = upload(server, owner, data)
    url = file_url(server, file["name"])
    assert_envelope(httpx.get(url, headers=intruder), 404, "NOT_FOUND")
    assert_envelope(download(server, intruder, file["name"]), 404, "NOT_FOUND")
    assert_envelope(httpx.delete(url, headers=intruder), 404, "NOT_FOUND")
    assert httpx.get(f"{server.base_url}/v1/files", headers=intruder).json() == {}
    assert download(server, owner, file["name"]).content == data


def test_delete_removes_the_blob_from_disk(server: FilesServer) -> None:
    headers = tenant()
    data = payload(700)
    before = server.blobs()
    file = upload(server, headers, data)
    (key,) = server.blobs() - before
    assert re.fullmatch(r"[0-9a-f]{32}", key)
    assert (server.data_dir / "files" / "blobs" / key).read_bytes() == data
    assert httpx.delete(file_url(server, file["name"]), headers=headers).status_code == 200
    assert key not in server.blobs()


def test_a_duplicate_final_chunk_does_not_destroy_the_file(server: FilesServer) -> None:
    """A retried final chunk racing the original (client or proxy retry) must lose harmlessly."""
    headers = tenant()
    data = payload(2000)
    url = start_url(server, headers, len(data))
    before = server.blobs()
    release = threading.Event()
    held = threading.Semaphore(0)

    def held_body() -> Iterator[bytes]:
        yield data[:1000]
        held.release()  # asked for more: the first piece went out on this connection
        release.wait(POLL_S)
        yield data[1000:]

    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(send, url, held_body(), 0) for _ in range(2)]
        # Both requests are in the server, each waiting for the rest of its body.
        for _ in futures:
            assert held.acquire(timeout=POLL_S), "a chunk request never started"
        release.set()
        responses = [future.result() for future in futures]
    assert all(r.headers["x-goog-upload-status"] == "final" for r in responses)
    winners = [r for r in responses if r.status_code == 200]
    assert len(winners) == 1, [r.text for r in responses]
    name = winners[0].json()["file"]["name"]
    assert len(server.blobs() - before) == 1
    assert download(server, headers, name).content == data


# ----- expiry and the sweeper -----------------------------------------------------------------


def test_an_expired_file_disappears_with_its_blob(expiring: FilesServer) -> None:
    headers = tenant()
    before = expiring.blobs()
    file = upload(expiring, headers, payload(300))
    (key,) = expiring.blobs() - before
    lifetime = stamp(file["expirationTime"]) - stamp(file["createTime"])
    assert abs(lifetime - timedelta(hours=0.0005)) < timedelta(milliseconds=10)
    url = file_url(expiring, file["name"])
    assert httpx.get(url, headers=headers).status_code == 200
    wait_for(lambda: httpx.get(url, headers=headers).status_code == 404, "the file expires")
    wait_for(lambda: key not in expiring.blobs(), "the sweeper deletes the blob")
    assert httpx.get(f"{expiring.base_url}/v1/files", headers=headers).json() == {}


def test_an_abandoned_upload_leaves_no_partial_file(expiring: FilesServer) -> None:
    before = expiring.partials()
    url = start_url(expiring, tenant(), 2000)
    assert send(url, payload(1000), 0, "upload").status_code == 200
    (partial,) = expiring.partials() - before
    wait_for(lambda: partial not in expiring.partials(), "the sweeper deletes the partial blob")
    assert_chunk_error(command(url, "query"), 404, "NOT_FOUND")


def _wait_until_expired(server: FilesServer, headers: dict[str, str], name: str) -> None:
    url = file_url(server, name)
    wait_for(lambda: httpx.get(url, headers=headers).status_code == 404, f"{name} expires")


def test_deleting_an_expired_file_also_deletes_its_blob(unswept: FilesServer) -> None:
    headers = tenant()
    before = unswept.blobs()
    file = upload(unswept, headers, payload(300))
    (key,) = unswept.blobs() - before
    _wait_until_expired(unswept, headers, file["name"])
    assert_envelope(
        httpx.delete(file_url(unswept, file["name"]), headers=headers), 404, "NOT_FOUND"
    )
    assert key not in unswept.blobs()


def test_reusing_the_name_of_an_expired_file_deletes_its_blob(unswept: FilesServer) -> None:
    headers = tenant()
    before = unswept.blobs()
    upload(unswept, headers, payload(300), name="files/reused")
    (key,) = unswept.blobs() - before
    _wait_until_expired(unswept, headers, "files/reused")
    fresh = upload(unswept, headers, b"new", name="files/reused")
    assert download(unswept, headers, fresh["name"]).content == b"new"
    assert key not in unswept.blobs()


# ----- restart --------------------------------------------------------------------------------


def test_a_restart_keeps_files_and_uploads_and_drops_strays(tmp_path: Path) -> None:
    headers = tenant()
    data, pending_data = payload(2000), payload(1600)[::-1]
    first = FilesServer(start_server(tmp_path), tmp_path / "data")
    try:
        file = upload(first, headers, data, chunks=2)
        pending = start_url(first, headers, len(pending_data))
        assert send(pending, pending_data[:1000], 0, "upload").status_code == 200
        kept_blobs, kept_partials = first.blobs(), first.partials()
    finally:
        stop_server(first.live)
    stray_blob, stray_partial = secrets.token_hex(16), secrets.token_hex(16)
    young_stray = secrets.token_hex(16)
    strays = [
        tmp_path / "data" / "files" / "blobs" / stray_blob,
        tmp_path / "data" / "files" / "partial" / stray_partial,
        tmp_path / "data" / "files" / "blobs" / young_stray,
    ]
    for stray in strays:
        stray.write_bytes(b"left by a crash")
    # Orphans are collected by age (upload_timeout_seconds, 1 h): a blob just written may be
    # another replica's whose row is on its way, so the young stray stays.
    two_hours_ago = time.time() - 7200
    for stray in strays[:2]:
        os.utime(stray, (two_hours_ago, two_hours_ago))

    second = FilesServer(start_server(tmp_path), tmp_path / "data")
    try:
        assert second.blobs() == kept_blobs | {young_stray}
        assert second.partials() == kept_partials
        got = httpx.get(file_url(second, file["name"]), headers=headers).json()
        assert got["sha256Hash"] == file["sha256Hash"] == b64_sha256(data)
        assert download(second, headers, file["name"]).content == data
        # The unfinished upload resumes at the new address; its hash is computed at finalize.
        parts = urlsplit(pending)
        resumed = f"{second.base_url}{parts.path}?{parts.query}"
        assert command(resumed, "query").headers["x-goog-upload-size-received"] == "1000"
        final = send(resumed, pending_data[1000:], 1000)
        assert final.status_code == 200, final.text
        assert final.json()["file"]["sha256Hash"] == b64_sha256(pending_data)
        assert download(second, headers, final.json()["file"]["name"]).content == pending_data
    finally:
        stop_server(second.live)


def test_non_ascii_digits_in_upload_headers_are_a_400(server: FilesServer) -> None:
    """'²' passes str.isdigit() but not int(); full-width digits pass both. Neither is a
    byte count on the wire."""
    headers = tenant()
    started = httpx.post(
        f"{server.base_url}/upload/v1beta/files",
        headers=[
            *((k.encode(), v.encode()) for k, v in headers.items()),
            (b"X-Goog-Upload-Protocol", b"resumable"),
            (b"X-Goog-Upload-Command", b"start"),
            (b"X-Goog-Upload-Header-Content-Length", b"\xb2"),
        ],
        timeout=TIMEOUT,
    )
    assert_envelope(started, 400, "INVALID_ARGUMENT", "X-Goog-Upload-Header-Content-Length")
    url = start_url(server, headers, 4)
    chunk = httpx.post(
        url,
        headers=[
            (b"X-Goog-Upload-Command", b"upload, finalize"),
            (b"X-Goog-Upload-Offset", b"\xb2"),
        ],
        content=b"abcd",
        timeout=TIMEOUT,
    )
    assert_envelope(chunk, 400, "INVALID_ARGUMENT", "X-Goog-Upload-Offset")
    assert "x-goog-upload-status" in chunk.headers
    full_width = start(server, headers, {"file": {"mime_type": "image/png", "size_bytes": "１２"}})
    assert_envelope(full_width, 400, "INVALID_ARGUMENT")
