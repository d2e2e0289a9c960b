"""A tiny HTTP origin on loopback for the media-fetching tests: a few files (each with a
Content-Type, or none), a ``/moved`` that redirects to one of them, and 404 for anything
else. It is reached as ``localhost``: a private address, fetched only when allowed."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@contextmanager
def serve_origin(files: Mapping[str, tuple[str | None, bytes]], moved_to: str) -> Iterator[str]:
    """Serves ``files`` (path: (content type or None, body)) and a 302 from ``/moved`` to
    ``moved_to``; yields the base URL."""

    class Origin(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path in files:
                content_type, body = files[self.path]
                self.send_response(200)
                if content_type is not None:
                    self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            elif self.path == "/moved":
                self.send_response(302)
                self.send_header("Location", moved_to)
                self.end_headers()
            else:
                self.send_response(404)
                self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Origin)
    # A short poll interval: shutdown() waits for the loop to look (0.5 s by default).
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
