"""Fetching media by URL: only allow-listed hosts, checked addresses, no redirects, a cap."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gemserve.errors import InvalidArgument
from gemserve.service.fetch import RemoteFetcher
from tests.support.origin import serve_origin

BODY = b"\x89PNG\r\n\x1a\n" + b"x" * 1000


@pytest.fixture(scope="module")
def origin() -> Iterator[str]:
    with serve_origin({"/image.png": ("image/png; charset=binary", BODY)}, "/image.png") as url:
        yield url


def fetcher(*, private: bool, max_bytes: int = 1 << 20) -> RemoteFetcher:
    return RemoteFetcher(frozenset({"localhost"}), max_bytes=max_bytes, allow_private=private)


def test_only_allow_listed_http_hosts_are_fetched() -> None:
    f = fetcher(private=False)
    assert f.allows("http://localhost:1/x.png")
    assert f.allows("https://LOCALHOST/x.png")
    assert not f.allows("http://example.com/x.png")
    assert not f.allows("ftp://localhost/x.png")
    assert not f.allows("file:///etc/passwd")


async def test_a_private_address_is_refused_unless_the_operator_allows_it(origin: str) -> None:
    with pytest.raises(InvalidArgument, match="private or reserved address"):
        await fetcher(private=False).fetch(f"{origin}/image.png", "input[0].content[1].uri")


async def test_an_allowed_fetch_returns_the_body_and_its_type(origin: str) -> None:
    fetched = await fetcher(private=True).fetch(f"{origin}/image.png", "w")
    assert (fetched.data, fetched.mime_type) == (BODY, "image/png")


@pytest.mark.parametrize(
    ("path", "message"),
    [("/moved", "redirects"), ("/missing", "HTTP 404")],
)
async def test_redirects_and_errors_are_400(origin: str, path: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        await fetcher(private=True).fetch(origin + path, "w")


async def test_the_body_is_capped(origin: str) -> None:
    with pytest.raises(InvalidArgument, match="larger than 100 bytes"):
        await fetcher(private=True, max_bytes=100).fetch(f"{origin}/image.png", "w")


async def test_credentials_and_unresolvable_hosts_are_refused(origin: str) -> None:
    port = origin.rsplit(":", 1)[1]
    with pytest.raises(InvalidArgument, match="credentials"):
        await fetcher(private=True).fetch(f"http://user:pw@localhost:{port}/image.png", "w")
    unknown = RemoteFetcher(frozenset({"no-such-host.invalid"}), max_bytes=100)
    with pytest.raises(InvalidArgument, match="does not resolve"):
        await unknown.fetch("http://no-such-host.invalid/x.png", "w")
