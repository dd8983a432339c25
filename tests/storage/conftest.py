"""Media on S3-compatible storage: a real S3 HTTP server (moto's server mode) on a free port.

`s3_media` points Loupe's default storage at a fresh bucket of that server, exactly as
LOUPE_S3_* would (project/storage_s3.py), and makes MEDIA_ROOT a plain file: any read or write of
media that bypasses the configured storage (a local path, os.path, open()) fails loudly. The web
code and the worker then share nothing but the bucket and the database, as on separate hosts.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

ACCESS_KEY, SECRET_KEY, REGION = "loupe-test", "loupe-test-secret", "us-east-1"


@dataclass
class Bucket:
    client: Any  # boto3 S3 client of the test, beside Loupe's own
    name: str
    endpoint_url: str

    def keys(self, prefix: str = "") -> set[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.name, Prefix=prefix
        )
        return {item["Key"] for page in pages for item in page.get("Contents", ())}

    def read(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.name, Key=key)["Body"].read()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_media(s3_server: str, settings, tmp_path) -> Bucket:
    import boto3

    name = f"loupe-{uuid.uuid4().hex[:12]}"
    client = boto3.client(
        "s3",
        endpoint_url=s3_server,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )
    client.create_bucket(Bucket=name)
    no_local_media = tmp_path / "no-local-media"
    no_local_media.write_text("Media live in the bucket; nothing may read or write them here.\n")
    settings.MEDIA_ROOT = no_local_media
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "project.storage_s3.MediaS3Storage",
            "OPTIONS": {
                "bucket_name": name,
                "endpoint_url": s3_server,
                "region_name": REGION,
                "addressing_style": "path",
                "access_key": ACCESS_KEY,
                "secret_key": SECRET_KEY,
            },
        },
    }
    return Bucket(client, name, s3_server)
