"""Fetching media by URL, only from hosts an operator allow-listed.

A server that fetches what a request names can be turned against its own network (SSRF), so
by default nothing is fetched. With ``media_fetch_hosts`` set, a URL on one of those hosts is
fetched once: the name is resolved here and every address checked (private, loopback,
link-local, reserved and multicast addresses are refused unless ``media_fetch_private`` says
the operator means it), then the connection goes to the checked address (the Host header and
TLS name stay the URL's, so a second lookup cannot swap the address), redirects are not
followed, and the body is capped.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import httpx

from gemserve.errors import InvalidArgument

log = logging.getLogger("gemserve.fetch")

TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class Fetched:
    data: bytes
    mime_type: str | None  # from Content-Type


class RemoteFetcher:
    def __init__(
        self, hosts: frozenset[str], *, max_bytes: int, allow_private: bool = False
    ) -> None:
        self._hosts = frozenset(h.lower() for h in hosts)
        self._max_bytes = max_bytes
        self._allow_private = allow_private

    def allows(self, uri: str) -> bool:
        parts = urlsplit(uri)
        return parts.scheme in ("http", "https") and (parts.hostname or "") in self._hosts

    async def fetch(self, uri: str, where: str) -> Fetched:
        parts = urlsplit(uri)
        host = parts.hostname or ""
        if parts.username or parts.password:
            raise InvalidArgument(f"Invalid value at '{where}': credentials in URLs are refused.")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        address = await self._checked_address(host, port, where)
        netloc = f"[{address}]" if ":" in address else address
        if parts.port:
            netloc += f":{parts.port}"
        target = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
        headers = {"Host": parts.netloc.rsplit("@", 1)[-1], "Accept": "*/*"}
        extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
        try:
            async with (
                httpx.AsyncClient(follow_redirects=False, timeout=TIMEOUT_SECONDS) as client,
                client.stream("GET", target, headers=headers, extensions=extensions) as response,
            ):
                if response.is_redirect:
                    raise InvalidArgument(
                        f"Invalid value at '{where}': the URL redirects; redirects are not "
                        "followed."
                    )
                if response.status_code != 200:
                    raise InvalidArgument(
                        f"Invalid value at '{where}': the URL answered HTTP {response.status_code}."
                    )
                chunks = []
                size = 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > self._max_bytes:
                        raise InvalidArgument(
                            f"Invalid value at '{where}': the URL's content is larger than "
                            f"{self._max_bytes} bytes."
                        )
                    chunks.append(chunk)
                content_type = response.headers.get("content-type")
        except httpx.HTTPError as exc:
            log.info("fetching %s failed: %r", host, exc)
            raise InvalidArgument(
                f"Invalid value at '{where}': the URL could not be fetched."
            ) from None
        mime = content_type.split(";")[0].strip().lower() if content_type else None
        return Fetched(b"".join(chunks), mime)

    async def _checked_address(self, host: str, port: int, where: str) -> str:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            )
        except OSError:
            raise InvalidArgument(
                f"Invalid value at '{where}': the URL's host does not resolve."
            ) from None
        addresses = [str(info[4][0]) for info in infos]
        for address in addresses:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
            if not self._allow_private and not ip.is_global:
                raise InvalidArgument(
                    f"Invalid value at '{where}': the URL's host resolves to a private or "
                    "reserved address, which is not fetched."
                )
        if not addresses:
            raise InvalidArgument(f"Invalid value at '{where}': the URL's host does not resolve.")
        return addresses[0]
