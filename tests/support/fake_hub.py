"""A fake Hugging Face Hub on loopback, for `gemserve models pull` (point ``HF_ENDPOINT`` at it).

It implements only what ``hf_hub_download`` and ``HfApi.get_paths_info`` ask for (read off
huggingface_hub's file_download.py and hf_api.py):

- ``HEAD|GET /{repo_id}/resolve/{revision}/{filename}``: ``X-Repo-Commit``, ``ETag`` and
  ``X-Linked-Etag`` (an LFS file's ETag is its SHA-256), ``X-Linked-Size``,
  ``Content-Length``; GET honours ``Range: bytes=N-`` with a 206.
- ``POST /api/models/{repo_id}/paths-info/{revision}``: the file's size, oid and
  ``lfs: {oid: sha256, size, pointerSize}``.

``lie_about_sha`` lists a wrong SHA-256 in paths-info (a corrupted download, as the client
sees it); ``drop_after`` closes the first GET's connection after that many bytes of the body;
``stall_after`` sends that many bytes of the first GET's body, then nothing until ``release``
is set (an interrupted download).
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class Request:
    method: str
    path: str
    range: str | None


@dataclass
class FakeHub:
    repo_id: str
    files: dict[str, bytes]
    lie_about_sha: bool = False
    drop_after: int | None = None
    stall_after: int | None = None
    release: threading.Event = field(default_factory=threading.Event)
    requests: list[Request] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def sha256(self, filename: str) -> str:
        return hashlib.sha256(self.files[filename]).hexdigest()

    def start(self) -> FakeHub:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # quiet
                pass

            def do_HEAD(self) -> None:
                self._resolve(body=False)

            def do_GET(self) -> None:
                self._resolve(body=True)

            def do_POST(self) -> None:
                hub.requests.append(Request("POST", self.path, None))
                length = int(self.headers.get("Content-Length") or 0)
                form = parse_qs(self.rfile.read(length).decode())
                prefix = f"/api/models/{hub.repo_id}/paths-info/"
                if not self.path.startswith(prefix):
                    return self._send(404, b'{"error": "Repository not found"}')
                infos = []
                for path in form.get("paths", []):
                    if path in hub.files:
                        data = hub.files[path]
                        sha = "f" * 64 if hub.lie_about_sha else hashlib.sha256(data).hexdigest()
                        infos.append(
                            {
                                "type": "file",
                                "path": path,
                                "size": len(data),
                                "oid": hashlib.sha1(data).hexdigest(),
                                "lfs": {"oid": sha, "size": len(data), "pointerSize": 134},
                            }
                        )
                self._send(200, json.dumps(infos).encode())

            def _send(
                self, status: int, body: bytes, headers: dict[str, str] | None = None
            ) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def _resolve(self, *, body: bool) -> None:
                method = "GET" if body else "HEAD"
                hub.requests.append(Request(method, self.path, self.headers.get("Range")))
                prefix = f"/{hub.repo_id}/resolve/"
                if not self.path.startswith(prefix):
                    return self._send(404, b"{}", {"X-Error-Code": "RepoNotFound"})
                _revision, _, filename = unquote(self.path[len(prefix) :]).partition("/")
                if filename not in hub.files:
                    return self._send(
                        404, b"{}", {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": COMMIT}
                    )
                data = hub.files[filename]
                sha = hashlib.sha256(data).hexdigest()
                start = 0
                requested = self.headers.get("Range")
                if body and requested and requested.startswith("bytes="):
                    start = int(requested.removeprefix("bytes=").split("-")[0])
                part = data[start:]
                self.send_response(206 if start else 200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("ETag", f'"{sha}"')
                self.send_header("X-Linked-Etag", f'"{sha}"')
                self.send_header("X-Linked-Size", str(len(data)))
                self.send_header("Content-Length", str(len(part)))
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                if not body:
                    return
                if hub.stall_after is not None:
                    cut, hub.stall_after = hub.stall_after, None
                    self.wfile.write(part[:cut])
                    self.wfile.flush()
                    hub.release.wait(30)
                    self.close_connection = True
                    return
                if hub.drop_after is not None:
                    cut, hub.drop_after = hub.drop_after, None
                    self.wfile.write(part[:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(part)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def gets(self) -> list[Request]:
        return [r for r in self.requests if r.method == "GET"]


def write_tiny_gguf(
    path: Path, *, quant: str = "Q4_1", think: bool = False, padding: int = 0
) -> Path:
    """A GGUF header with two small tensors of type ``quant`` (Q4_0 or Q4_1) and one F32,
    then ``padding`` zero bytes: enough for the header reader, never for llama.cpp."""
    import gguf
    import numpy as np

    qtype = gguf.GGMLQuantizationType[quant]
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("Tiny Test")
    writer.add_context_length(32768)
    writer.add_file_type(gguf.LlamaFileType[f"MOSTLY_{quant}"])
    template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    if think:
        template += "<think></think>"
    writer.add_chat_template(template)
    block_bytes = {"Q4_0": 18, "Q4_1": 20}[quant]
    for name in ("blk.0.ffn_up.weight", "blk.0.ffn_down.weight"):
        # 64 rows of one 32-element block each
        writer.add_tensor(name, np.zeros((64, block_bytes), dtype=np.uint8), raw_dtype=qtype)
    writer.add_tensor("output_norm.weight", np.ones(32, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    if padding:  # bulk after the tensors (a download big enough to interrupt)
        with path.open("ab") as fh:
            fh.write(bytes(padding))
    return path
