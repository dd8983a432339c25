"""Helpers of the dataset import/export tests: zips in memory, imports through the page."""

from __future__ import annotations

import io
import stat
import zipfile
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile

from labeling.services.import_jobs import get_import
from labeling.tasks_import import import_dataset_task
from tests.streaming import body_of


def make_zip(entries: dict[str, bytes], symlinks: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return buffer.getvalue()


def read_zip(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def import_through_page(client, project, user, data: bytes, format_name: str, capture) -> dict:
    """POST the zip to the import page, run the queued worker task, read the status partial.

    `capture` is pytest-django's django_capture_on_commit_callbacks: the page enqueues the task
    after its commit, and the test runs the task itself as a worker would.
    """
    with capture(execute=False) as callbacks:
        response = client.post(
            f"/projects/{project.pk}/datasets/",
            {
                "format": format_name,
                "archive": SimpleUploadedFile("dataset.zip", data, "application/zip"),
            },
        )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert len(callbacks) == 1  # the enqueue, after the commit
    job_id = parse_qs(urlparse(response.url).query)["job"][0]
    state = import_dataset_task(project.pk, job_id, user.pk, format_name)
    status = client.get(f"/projects/{project.pk}/datasets/imports/{job_id}/")
    assert status.status_code == 200
    return {
        "state": state,
        "job": get_import(project=project, job_id=job_id),
        "html": status.content.decode(),
        "job_id": job_id,
    }


def stored_image_files() -> list[Path]:
    root = Path(settings.MEDIA_ROOT)
    return [
        p
        for sub in ("images", "thumbnails")
        if (root / sub).exists()
        for p in (root / sub).rglob("*")
        if p.is_file()
    ]


def export_through_page(client, project, format_name: str, capture, **form) -> bytes:
    """POST the export form, run the queued worker task, then download the zip from the page.

    `form` adds fields (`tags=[ids]`, `filter="tagged"`); the job must end done.
    """
    from labeling.services.export_jobs import get_export
    from labeling.tasks_export import export_dataset_task

    with capture(execute=False) as callbacks:
        response = client.post(
            f"/projects/{project.pk}/datasets/exports/", {"format": format_name, **form}
        )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert len(callbacks) == 1  # the enqueue, after the commit
    job_id = parse_qs(urlparse(response.url).query)["export"][0]
    assert export_dataset_task(project.pk, job_id) == "done", get_export(
        project=project, job_id=job_id
    ).message
    page = client.get(response.url)
    download = f"/projects/{project.pk}/datasets/exports/{job_id}/download/"
    assert download in page.content.decode()
    archive = client.get(download)
    assert archive.status_code == 200
    assert archive["Content-Type"] == "application/zip"
    return body_of(archive)
