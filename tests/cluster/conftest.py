"""Three real gemserve replicas on one fresh PostgreSQL database (and, for files, one S3
bucket on a local S3-compatible server), each on its own loopback port and data dir."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from tests.support.postgres import fresh_database
from tests.support.s3 import REGION, moto_s3
from tests.support.server import LiveServer, start_server, stop_server


@dataclass
class Cluster:
    replicas: list[LiveServer]
    env: dict[str, str]
    root: Path

    def restart(self, index: int) -> LiveServer:
        """Start replica ``index`` again (after a kill), on a new port."""
        self.replicas[index] = start_server(self.root / f"replica{index}", env=self.env)
        return self.replicas[index]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("cluster")
    with fresh_database() as database_url, moto_s3() as s3:
        env = {
            "GEMSERVE_DATABASE_URL": database_url,
            "GEMSERVE_BLOB_URL": f"s3://{s3.new_bucket()}/files",
            "GEMSERVE_S3_ENDPOINT": s3.endpoint,
            "GEMSERVE_S3_REGION": REGION,
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "GEMSERVE_THOUGHT_SIGNING_KEY": Fernet.generate_key().decode(),
            "GEMSERVE_REPLICA_LEASE_SECONDS": "3",
            "GEMSERVE_DRAIN_SECONDS": "2",
            "GEMSERVE_THREADS": "1",
        }
        replicas: list[LiveServer] = []
        try:
            for index in range(3):
                (root / f"replica{index}").mkdir()
                replicas.append(start_server(root / f"replica{index}", env=env))
            yield Cluster(replicas, env, root)
        finally:
            for server in replicas:
                if server.process.poll() is None:
                    stop_server(server)
