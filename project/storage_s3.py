"""Media on S3-compatible object storage (django-storages), for web and worker hosts that share
no disk. Chosen by LOUPE_S3_BUCKET (project/settings.py); local disk stays the default.

Media are private: the bucket is never public and no presigned URL leaves the server. Every
media URL Loupe renders stays `/media/<name>`, the members-only view (project/media.py), which
checks access and then streams the object from the bucket through the web process. So the
bucket's endpoint may be reachable from the cluster only, the Content-Security-Policy keeps
images to Loupe's own origin, and a removed member loses access at once (a presigned URL would
have kept working until it expired).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from botocore.config import Config
from botocore.exceptions import ClientError
from django.conf import settings
from django.core.files.base import ContentFile
from django.utils.encoding import filepath_to_uri
from storages.backends.s3 import S3Storage
from storages.utils import clean_name

from project.storage import MediaStream

# Bytes read from the bucket per chunk of a streamed /media/ response.
STREAM_CHUNK_BYTES = 64 * 1024


class MediaS3Storage(S3Storage):
    """S3Storage with Loupe's defaults: private objects, URLs through /media/, bounded waits."""

    def __init__(self, **options: Any) -> None:
        options.setdefault("default_acl", None)  # the bucket's own policy: private
        options.setdefault("querystring_auth", True)
        # As on local disk, a name in use gets a new one instead of being overwritten: code that
        # saves and then deletes "the old file" must never delete what it just wrote.
        options.setdefault("file_overwrite", False)
        # A file opened whole (an export's download) spills to a temporary file past this.
        options.setdefault("max_memory_size", settings.FILE_UPLOAD_MAX_MEMORY_SIZE)
        options.setdefault(
            "client_config",
            Config(
                connect_timeout=settings.LOUPE_S3_TIMEOUT_S,
                read_timeout=settings.LOUPE_S3_TIMEOUT_S,
                retries={"max_attempts": 3, "mode": "standard"},
                s3={"addressing_style": options.pop("addressing_style", None) or "auto"},
            ),
        )
        super().__init__(**options)

    def url(
        self,
        name: str,
        parameters: dict[str, Any] | None = None,
        expire: int | None = None,
        http_method: str | None = None,
    ) -> str:
        """The members-only view's URL, never the bucket's."""
        return settings.MEDIA_URL + filepath_to_uri(clean_name(name))

    def stream(self, name: str) -> MediaStream:
        """The object's bytes in chunks, without reading it whole into memory or onto disk."""
        key = self._normalize_name(clean_name(name))
        try:
            answer = self.connection.meta.client.get_object(Bucket=self.bucket_name, Key=key)
        except ClientError as err:
            if err.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                raise FileNotFoundError(name) from None
            raise
        body = answer["Body"]
        return MediaStream(
            chunks=_closing(body.iter_chunks(STREAM_CHUNK_BYTES), body),
            size=answer.get("ContentLength"),
            content_type=answer.get("ContentType"),
        )

    def atomic_replace(self, name: str, data: bytes) -> None:
        """Overwrite `name` with one PUT (project.storage.replace_file): never a missing file."""
        self._save(clean_name(name), ContentFile(data))  # _save writes the exact name given


def _closing(chunks: Iterator[bytes], body: Any) -> Iterator[bytes]:
    """Release the HTTP connection when the response ends or the client goes away."""
    try:
        yield from chunks
    finally:
        body.close()
