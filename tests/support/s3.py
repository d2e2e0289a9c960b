"""An S3-compatible server on loopback for tests and benches: moto's, in a thread of this
process, on a free port, with buckets made on demand. Nothing leaves the machine."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gemserve.config import Settings
from gemserve.store.blobs.s3 import S3BlobStore

REGION = "us-east-1"


@dataclass(frozen=True)
class S3Server:
    endpoint: str  # http://127.0.0.1:port
    # Stops the server before the block ends (an outage); idempotent.
    stop: Callable[[], None] = field(default=lambda: None, repr=False, compare=False)

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )

    def new_bucket(self) -> str:
        name = "gemserve-" + secrets.token_hex(6)
        self.client().create_bucket(Bucket=name)
        return name

    def settings(self, data_dir: Path, bucket: str, prefix: str = "files") -> Settings:
        return Settings(
            data_dir=data_dir,
            blob_url=f"s3://{bucket}/{prefix}",
            s3_endpoint=self.endpoint,
            s3_region=REGION,
        )

    def store(self, data_dir: Path, bucket: str, prefix: str = "files") -> S3BlobStore:
        """A started S3BlobStore on ``bucket`` (a replica's: its own spool in ``data_dir``)."""
        store = S3BlobStore.from_settings(self.settings(data_dir, bucket, prefix))
        store.start()
        return store

    def multipart_uploads(self, bucket: str) -> list[Any]:
        """Multipart uploads begun and neither completed nor aborted."""
        return list(self.client().list_multipart_uploads(Bucket=bucket).get("Uploads", []))


@contextlib.contextmanager
def moto_s3() -> Iterator[S3Server]:
    """moto's S3 on 127.0.0.1 (a free port) while the block runs; credentials for obstore in
    the environment (moto takes any)."""
    from moto.server import ThreadedMotoServer

    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    os.environ["AWS_ACCESS_KEY_ID"] = "test"
    os.environ["AWS_SECRET_ACCESS_KEY"] = "test"
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    stopped = False

    def stop() -> None:
        nonlocal stopped
        if not stopped:
            stopped = True
            server.stop()

    try:
        host, port = server.get_host_and_port()
        yield S3Server(f"http://{host}:{port}", stop)
    finally:
        stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
