"""A `duplicate` verdict names the stored image: a client retrying an upload treats it as done."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from tests.conftest import make_image

pytestmark = pytest.mark.django_db


def upload(client, project, files):
    return client.post(f"/api/projects/{project.pk}/images/upload/", {"files": files})


def test_retried_upload_names_each_stored_image(api_client, project, users):
    api_client.force_authenticate(users["annotator"])
    data = [make_image(8, 8, (i, 0, 0)) for i in range(3)]
    first = upload(
        api_client, project, [SimpleUploadedFile(f"{i}.png", d) for i, d in enumerate(data)]
    )
    stored = {item["index"]: item["image_id"] for item in first.json()["accepted"]}
    again = upload(
        api_client, project, [SimpleUploadedFile(f"{i}.png", d) for i, d in enumerate(data)]
    )
    assert again.status_code == 200
    rejected = again.json()["rejected"]
    assert [(r["index"], r["code"], r["image_id"]) for r in rejected] == [
        (i, "duplicate", stored[i]) for i in range(3)
    ]
    assert all(f"image {stored[r['index']]}" in r["message"] for r in rejected)


def test_a_file_repeated_in_one_batch_names_the_image_its_first_copy_became(
    api_client, project, users
):
    api_client.force_authenticate(users["annotator"])
    data = make_image(8, 8, (9, 9, 9))
    response = upload(
        api_client,
        project,
        [SimpleUploadedFile("a.png", data), SimpleUploadedFile("b.png", data)],
    )
    body = response.json()
    (accepted,) = body["accepted"]
    (rejected,) = body["rejected"]
    assert rejected["index"] == 1 and rejected["code"] == "duplicate"
    assert rejected["image_id"] == accepted["image_id"]
    assert (
        "“a.png”" in rejected["message"] and f"image {accepted['image_id']}" in rejected["message"]
    )
