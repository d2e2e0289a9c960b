"""The Files API in-process: resumable uploads as the SDKs speak them, get, list, download and
delete, and every client error of service/files.py with its status and envelope. (The live
tier, tests/api/test_files.py, covers expiry, the sweeper, restarts and concurrent chunks.)"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.support.envelope import assert_envelope
from tests.support.inprocess import InProcessApi, MakeApi
from tests.support.s3 import moto_s3
from tests.support.server import free_port
from tests.support.wait import wait_for_async

MAX_FILE = 10_000
MAX_TENANT = 25_000
OTHER_TENANT = {"x-goog-api-key": "another-tenant-key"}


@pytest.fixture
async def files(make_api: MakeApi) -> InProcessApi:
    return await make_api(limits={"max_file_bytes": MAX_FILE, "max_tenant_file_bytes": MAX_TENANT})


def payload(size: int) -> bytes:
    """Bytes that are not all alike, so that a misplaced chunk changes the hash."""
    return (bytes(range(251)) * (size // 251 + 1))[:size]


def assert_chunk_error(response: httpx.Response, code: int, status: str, *fragments: str) -> None:
    """A chunk's error ends the session for the SDKs (without it they re-send three times)."""
    assert_envelope(response, code, status, *fragments)
    assert response.headers["x-goog-upload-status"] == "final"


# ----- the round trip -------------------------------------------------------------------------


async def test_upload_in_chunks_then_get_list_download_delete(files: InProcessApi) -> None:
    data = payload(3000)
    url = await files.upload_url(len(data), "image/png", display_name="noise.png")
    middle = await files.send(url, data[:1000], 0, "upload")
    assert middle.status_code == 200
    assert middle.headers["x-goog-upload-status"] == "active"
    assert middle.headers["x-goog-upload-size-received"] == "1000"
    query = await files.client.post(url, headers={"X-Goog-Upload-Command": "query"})
    assert query.headers["x-goog-upload-size-received"] == "1000"
    final = await files.send(url, data[1000:], 1000)
    assert final.status_code == 200, final.text
    file = final.json()["file"]
    assert file["mimeType"] == "image/png"
    assert file["displayName"] == "noise.png"
    assert file["sizeBytes"] == "3000"
    assert file["sha256Hash"] == base64.b64encode(hashlib.sha256(data).digest()).decode()
    assert file["state"] == "ACTIVE"

    name = file["name"]
    got = await files.client.get(f"/v1beta/{name}", headers=files.headers)
    assert got.json() == file
    listed = await files.client.get("/v1beta/files", headers=files.headers)
    assert [f["name"] for f in listed.json()["files"]] == [name]
    download = await files.client.get(
        f"/v1beta/{name}:download", params={"alt": "media"}, headers=files.headers
    )
    assert download.content == data
    assert download.headers["content-type"] == "image/png"
    no_alt = await files.client.get(f"/v1beta/{name}:download", headers=files.headers)
    assert_envelope(no_alt, 400, "INVALID_ARGUMENT", "alt=media")

    deleted = await files.client.delete(f"/v1beta/{name}", headers=files.headers)
    assert deleted.status_code == 200
    missing = f"File '{name}' was not found"
    assert_envelope(
        await files.client.get(f"/v1beta/{name}", headers=files.headers), 404, "NOT_FOUND", missing
    )
    assert_envelope(
        await files.client.delete(f"/v1beta/{name}", headers=files.headers),
        404,
        "NOT_FOUND",
        missing,
    )


async def test_another_tenant_gets_404_everywhere(files: InProcessApi) -> None:
    name = (await files.upload(b"mine"))["name"]
    for response in (
        await files.client.get(f"/v1beta/{name}", headers=OTHER_TENANT),
        await files.client.delete(f"/v1beta/{name}", headers=OTHER_TENANT),
        await files.client.get(
            f"/v1beta/{name}:download", params={"alt": "media"}, headers=OTHER_TENANT
        ),
    ):
        assert_envelope(response, 404, "NOT_FOUND")
    listed = await files.client.get("/v1beta/files", headers=OTHER_TENANT)
    assert listed.json() == {}


async def test_list_pages_follow_next_page_token(files: InProcessApi) -> None:
    names = {(await files.upload(bytes([n]))).get("name") for n in range(3)}
    first = (await files.client.get("/v1beta/files?pageSize=2", headers=files.headers)).json()
    assert len(first["files"]) == 2
    second = (
        await files.client.get(
            "/v1beta/files",
            params={"pageSize": "2", "pageToken": first["nextPageToken"]},
            headers=files.headers,
        )
    ).json()
    assert "nextPageToken" not in second
    assert {f["name"] for f in first["files"] + second["files"]} == names
    for token in ("-1", str(2**63), "abc"):
        response = await files.client.get(
            "/v1beta/files", params={"pageToken": token}, headers=files.headers
        )
        assert_envelope(response, 400, "INVALID_ARGUMENT", "pageToken")


async def test_cancel_ends_the_session(files: InProcessApi) -> None:
    url = await files.upload_url(100)
    assert (await files.send(url, b"x" * 10, 0, "upload")).status_code == 200
    cancelled = await files.client.post(url, headers={"X-Goog-Upload-Command": "cancel"})
    assert cancelled.headers["x-goog-upload-status"] == "cancelled"
    gone = await files.send(url, b"x" * 90, 10)
    assert_chunk_error(gone, 404, "NOT_FOUND", "upload session was not found")


# ----- starting an upload ---------------------------------------------------------------------


async def test_start_without_a_key_is_403(files: InProcessApi) -> None:
    response = await files.start_upload({"mime_type": "text/plain"}, {}, size=10)
    assert_envelope(response, 403, "PERMISSION_DENIED")


async def test_start_without_a_mime_type_is_400(files: InProcessApi) -> None:
    response = await files.start_upload({"size_bytes": 10}, size=10)
    assert_envelope(response, 400, "INVALID_ARGUMENT", "Missing required field 'file.mime_type'")


async def test_a_size_header_that_is_not_a_count_is_400(files: InProcessApi) -> None:
    response = await files.start_upload(None, size=None, mime="text/plain")
    assert response.status_code == 200  # neither: the size is learnt at the end
    for size in ("ten", "-5", "1e3"):
        response = await files.client.post(
            "/upload/v1beta/files",
            headers={
                **files.headers,
                "X-Goog-Upload-Protocol": "resumable",
                "X-Goog-Upload-Command": "start",
                "X-Goog-Upload-Header-Content-Length": size,
                "X-Goog-Upload-Header-Content-Type": "text/plain",
            },
        )
        assert_envelope(response, 400, "INVALID_ARGUMENT", "X-Goog-Upload-Header-Content-Length")


async def test_only_the_resumable_protocol_starts(files: InProcessApi) -> None:
    meta = {"mime_type": "text/plain"}
    multipart = await files.start_upload(meta, size=1, protocol="multipart")
    assert_envelope(multipart, 400, "INVALID_ARGUMENT", "resumable")
    upload = await files.start_upload(meta, size=1, command="upload")
    assert_envelope(upload, 400, "INVALID_ARGUMENT", "X-Goog-Upload-Command")


async def test_a_declared_size_over_the_per_file_limit_is_413(files: InProcessApi) -> None:
    response = await files.start_upload(
        {"mime_type": "text/plain", "size_bytes": MAX_FILE + 1}, size=MAX_FILE + 1
    )
    assert_envelope(
        response, 413, "INVALID_ARGUMENT", f"{MAX_FILE + 1} bytes exceeds the per-file limit"
    )


async def test_a_chosen_name_is_unique_per_tenant(files: InProcessApi) -> None:
    file = await files.upload(b"first", name="files/my-notes")
    assert file["name"] == "files/my-notes"
    again = await files.start_upload({"mime_type": "text/plain", "name": "my-notes"}, size=5)
    assert_envelope(again, 409, "ALREADY_EXISTS", "files/my-notes")
    bad = await files.start_upload({"mime_type": "text/plain", "name": "My_Notes"}, size=5)
    assert_envelope(bad, 400, "INVALID_ARGUMENT", "file.name")
    other = await files.client.post(
        "/upload/v1beta/files",
        json={"file": {"mime_type": "text/plain", "name": "my-notes"}},
        headers={
            **OTHER_TENANT,
            "X-Goog-Upload-Protocol": "resumable",
            "X-Goog-Upload-Command": "start",
        },
    )
    assert other.status_code == 200, other.text


async def test_the_tenant_quota_counts_files_and_pending_uploads(files: InProcessApi) -> None:
    await files.upload(payload(MAX_FILE))
    await files.upload_url(MAX_FILE)  # pending, declared: it holds its bytes
    over = MAX_TENANT - 2 * MAX_FILE + 1
    response = await files.start_upload({"mime_type": "text/plain"}, size=over)
    assert_envelope(response, 429, "RESOURCE_EXHAUSTED", "quota", str(MAX_TENANT))
    assert response.headers["retry-after"] == "60"


async def test_an_undeclared_upload_cannot_exceed_the_tenant_quota(files: InProcessApi) -> None:
    await files.upload(payload(MAX_FILE))
    await files.upload(payload(MAX_FILE))
    url = await files.upload_url(None)
    response = await files.send(url, payload(MAX_TENANT - 2 * MAX_FILE + 1), 0)
    assert_chunk_error(response, 429, "RESOURCE_EXHAUSTED", "quota")


# ----- chunks ---------------------------------------------------------------------------------


async def test_an_unknown_upload_id_is_404(files: InProcessApi) -> None:
    url = "/upload/v1beta/files?upload_id=nope&upload_protocol=resumable"
    for command in ("query", "cancel", "upload, finalize"):
        response = await files.client.post(
            url, headers={"X-Goog-Upload-Command": command, "X-Goog-Upload-Offset": "0"}
        )
        assert_chunk_error(response, 404, "NOT_FOUND", "upload session was not found")


async def test_a_chunk_at_the_wrong_offset_is_refused(files: InProcessApi) -> None:
    url = await files.upload_url(100)
    assert (await files.send(url, b"x" * 10, 0, "upload")).status_code == 200
    response = await files.send(url, b"x" * 90, 5)
    assert_chunk_error(
        response, 400, "INVALID_ARGUMENT", "'X-Goog-Upload-Offset': 5", "received 10 bytes"
    )


async def test_more_bytes_than_declared_are_refused(files: InProcessApi) -> None:
    url = await files.upload_url(10)
    response = await files.send(url, b"x" * 11, 0)
    assert_chunk_error(response, 400, "INVALID_ARGUMENT", "more than the declared 10 bytes")


async def test_an_undeclared_upload_stops_at_the_per_file_limit(files: InProcessApi) -> None:
    url = await files.upload_url(None)
    response = await files.send(url, payload(MAX_FILE + 1), 0)
    assert_chunk_error(
        response, 413, "INVALID_ARGUMENT", f"exceeds the per-file limit of {MAX_FILE} bytes"
    )


async def test_finalizing_short_of_the_declared_size_fails_and_ends_the_session(
    files: InProcessApi,
) -> None:
    url = await files.upload_url(100)
    response = await files.send(url, b"x" * 60, 0)
    assert_chunk_error(
        response, 400, "INVALID_ARGUMENT", "finalized after 60 bytes, but 100 were declared"
    )
    again = await files.send(url, b"x" * 40, 60)
    assert_chunk_error(again, 404, "NOT_FOUND")


@pytest.mark.parametrize(
    ("headers", "fragment"),
    [
        ({"X-Goog-Upload-Command": "upload, finalize"}, "a byte offset is required"),
        (
            {"X-Goog-Upload-Command": "upload, finalize", "X-Goog-Upload-Offset": "-1"},
            "a byte offset is required",
        ),
        ({"X-Goog-Upload-Command": "jump", "X-Goog-Upload-Offset": "0"}, "expected 'upload'"),
    ],
)
async def test_a_malformed_chunk_request_is_refused(
    files: InProcessApi, headers: dict[str, str], fragment: str
) -> None:
    url = await files.upload_url(10)
    response = await files.client.post(url, content=b"x" * 10, headers=headers)
    assert_chunk_error(response, 400, "INVALID_ARGUMENT", fragment)


async def test_a_bad_file_name_in_a_path_is_400(files: InProcessApi) -> None:
    for method in ("GET", "DELETE"):
        response = await files.client.request(
            method, "/v1beta/files/Bad_Name", headers=files.headers
        )
        assert_envelope(response, 400, "INVALID_ARGUMENT", "is not a file name")


# ----- a final chunk that another request overtakes -------------------------------------------


class HeldBody:
    """A chunk request's body that stops after its first piece until ``release``: once the
    server asks for the second piece, it is inside the upload (past every session check)."""

    def __init__(self, first: bytes, rest: bytes) -> None:
        self._pieces = (first, rest)
        self.in_server = asyncio.Event()
        self.release = asyncio.Event()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self._pieces[0]
        self.in_server.set()
        await self.release.wait()
        yield self._pieces[1]


async def final_chunk_held(
    api: InProcessApi, url: str, body: HeldBody
) -> asyncio.Task[httpx.Response]:
    headers = {"X-Goog-Upload-Command": "upload, finalize", "X-Goog-Upload-Offset": "0"}
    task = asyncio.create_task(api.client.post(url, content=body, headers=headers))
    await asyncio.wait_for(body.in_server.wait(), 10)
    return task


def blobs(api: InProcessApi) -> list[str]:
    return [p.name for p in (api.settings.data_dir / "files" / "blobs").iterdir()]


async def test_a_cancel_during_the_final_chunk_wins(files: InProcessApi) -> None:
    url = await files.upload_url(20)
    body = HeldBody(b"x" * 10, b"y" * 10)
    final = await final_chunk_held(files, url, body)
    cancelled = await files.client.post(url, headers={"X-Goog-Upload-Command": "cancel"})
    assert cancelled.headers["x-goog-upload-status"] == "cancelled"
    body.release.set()
    assert_chunk_error(await final, 404, "NOT_FOUND", "upload session was not found")
    assert (await files.client.get("/v1beta/files", headers=files.headers)).json() == {}


async def test_a_cancel_during_the_final_chunk_leaves_no_blob(files: InProcessApi) -> None:
    url = await files.upload_url(20)
    body = HeldBody(b"x" * 10, b"y" * 10)
    final = await final_chunk_held(files, url, body)
    await files.client.post(url, headers={"X-Goog-Upload-Command": "cancel"})
    body.release.set()
    assert (await final).status_code == 404
    assert blobs(files) == []


async def test_a_name_taken_while_a_final_chunk_was_in_flight_is_409(make_api: MakeApi) -> None:
    """The session expires while its last chunk streams (the timeout counts from the last
    finished chunk); another upload takes the name; the late finalize loses, and its bytes go."""
    api = await make_api(upload_timeout_seconds=0.5)
    url = await api.upload_url(20, name="report")
    body = HeldBody(b"x" * 10, b"y" * 10)
    final = await final_chunk_held(api, url, body)

    async def name_is_free() -> bool:
        response = await api.start_upload({"mime_type": "text/plain", "name": "report"}, size=2)
        if response.status_code == 409:
            return False
        assert response.status_code == 200, response.text
        done = await api.send(response.headers["x-goog-upload-url"], b"ok", 0)
        assert done.status_code == 200, done.text
        return True

    await wait_for_async(name_is_free, seconds=10, interval=0.05, what="the held session to expire")
    body.release.set()
    assert_chunk_error(await final, 409, "ALREADY_EXISTS", "files/report")
    (kept,) = (await api.client.get("/v1beta/files", headers=api.headers)).json()["files"]
    assert kept["sizeBytes"] == "2"
    assert len(blobs(api)) == 1


async def test_an_object_store_outage_mid_upload_is_503_and_the_session_survives(
    make_api: MakeApi,
) -> None:
    """S3 stops answering between two chunks (the server is stopped: connections refused): a
    503 UNAVAILABLE with Retry-After and the upload status the SDKs stop on, not a 500; the
    session stays at its offset, so a client may query it and send the chunk again."""
    with moto_s3() as s3:
        bucket = s3.new_bucket()
        settings = s3.settings(Path("unused"), bucket)
        api = await make_api(
            blob_url=settings.blob_url, s3_endpoint=s3.endpoint, s3_region=settings.s3_region
        )
        data = payload(1000)
        url = await api.upload_url(len(data))
        assert (await api.send(url, data[:400], 0, "upload")).status_code == 200
        s3.stop()
        response = await api.send(url, data[400:], 400)
    assert_chunk_error(response, 503, "UNAVAILABLE", "object store is unavailable")
    assert response.headers["retry-after"] == "5"
    query = await api.client.post(url, headers={"X-Goog-Upload-Command": "query"})
    assert query.headers["x-goog-upload-status"] == "active"
    assert query.headers["x-goog-upload-size-received"] == "400"


async def test_the_app_starts_and_serves_while_its_object_store_is_down(
    make_api: MakeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing listens at the S3 endpoint from the start: the orphan collection at start
    fails, the app serves anyway (interactions need no bucket), and a file upload is a 503."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    api = await make_api(
        blob_url="s3://gemserve-down/files",
        s3_endpoint=f"http://127.0.0.1:{free_port()}",
        s3_region="us-east-1",
    )
    assert (await api.create()).status_code == 200
    url = await api.upload_url(10)
    assert_chunk_error(await api.send(url, b"x" * 10, 0), 503, "UNAVAILABLE", "object store")
