"""The server-side request forgery list: media uris pointing at loopback, link-local, private
ranges (IPv4, IPv6 and their odd spellings), names that resolve to them, other schemes and
Files names with ``../`` are all refused with a 400, with and without an allow-list naming
those hosts, and nothing connects (a listener on loopback counts connection attempts)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.envelope import assert_envelope
from tests.support.inprocess import InProcessApi


@pytest.fixture
def trap() -> Iterator[tuple[int, list[str]]]:
    """A loopback port that records every connection made to it."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    port = listener.getsockname()[1]
    seen: list[str] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, peer = listener.accept()
            except TimeoutError:
                continue
            seen.append(str(peer))
            conn.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield port, seen
    stop.set()
    thread.join()
    listener.close()


def hostile(port: int) -> list[str]:
    return [
        f"http://127.0.0.1:{port}/notes.txt",
        f"http://localhost:{port}/notes.txt",
        f"http://[::1]:{port}/notes.txt",
        f"http://[::ffff:127.0.0.1]:{port}/notes.txt",
        f"http://0.0.0.0:{port}/notes.txt",
        f"http://127.1:{port}/notes.txt",
        f"http://2130706433:{port}/notes.txt",  # 127.0.0.1 as one number
        f"http://0x7f000001:{port}/notes.txt",
        f"http://017700000001:{port}/notes.txt",  # octal
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]/notes.txt",
        "http://10.0.0.1/notes.txt",
        "http://172.16.0.1/notes.txt",
        "http://192.168.0.1/notes.txt",
        "http://[fc00::1]/notes.txt",
        "http://100.64.0.1/notes.txt",  # carrier-grade NAT
        f"http://user:pass@localhost:{port}/notes.txt",
        "file:///etc/passwd",
        f"gopher://127.0.0.1:{port}/_GET",
        f"ftp://127.0.0.1:{port}/notes.txt",
        f"dict://127.0.0.1:{port}/info",
        "jar:http://localhost/x.jar!/",
        "files/../../etc/passwd",
        "files/..%2f..%2fetc%2fpasswd",
        "/v1beta/files/../../etc/passwd",
        "files/abc/../../secret",
    ]


ALLOWED = [
    "localhost",
    "127.0.0.1",
    "::1",
    "0.0.0.0",
    "169.254.169.254",
    "10.0.0.1",
    "172.16.0.1",
    "192.168.0.1",
    "100.64.0.1",
]


async def attempt(api: InProcessApi, uri: str) -> Any:
    return await api.client.post(
        "/v1beta/interactions",
        json={
            "model": "gemini-2.5-flash",
            "input": [
                {"type": "text", "text": "Describe it."},
                # A document: the default (text) model takes it, so the part reaches the
                # fetcher (an image part would stop earlier, at the modality check).
                {"type": "document", "uri": uri, "mime_type": "text/plain"},
            ],
        },
        headers=api.headers,
    )


@pytest.mark.parametrize("allow_list", [False, True], ids=["no allow-list", "allow-listed"])
async def test_every_hostile_uri_is_a_400_and_nothing_connects(
    make_api: Any, trap: tuple[int, list[str]], allow_list: bool
) -> None:
    port, seen = trap
    settings: dict[str, Any] = {"media_fetch_hosts": ALLOWED} if allow_list else {}
    api: InProcessApi = await make_api(**settings)
    answers = {uri: await attempt(api, uri) for uri in hostile(port)}
    wrong = {
        uri: (r.status_code, r.text[:200]) for uri, r in answers.items() if r.status_code != 400
    }
    assert not wrong, wrong
    for response in answers.values():
        assert_envelope(response, 400, "INVALID_ARGUMENT")
    assert seen == [], f"connections were made: {seen}"
    assert api.engine.requests == []  # nothing was admitted either
