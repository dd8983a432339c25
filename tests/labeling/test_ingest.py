"""Ingest through the upload API: every validation rule with a real malformed file made here."""

from __future__ import annotations

import hashlib
import io
import struct
import zlib

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from PIL import Image as PILImage
from PIL import ImageFile

from labeling.models import Image, Project
from labeling.services.ingest import (
    FileRejected,
    _create_rows,
    corrupt_rejection,
    inspect_header,
    inspect_image,
)
from tests.conftest import make_image
from tests.factories import ImageFactory

pytestmark = pytest.mark.django_db


def upload(client, project, *files: tuple[str, bytes], tag_ids=()):
    data = {"files": [SimpleUploadedFile(name, content) for name, content in files]}
    if tag_ids:
        data["tag_ids"] = list(tag_ids)
    return client.post(f"/api/projects/{project.pk}/images/upload/", data, format="multipart")


@pytest.fixture
def annotator_api(api_client, users):
    api_client.force_authenticate(users["annotator"])
    return api_client


def noisy_jpeg(width: int = 320, height: int = 240, seed: int = 0, **save_kwargs) -> bytes:
    """A JPEG with real scan data (noise), so truncating it cuts into the pixels."""
    image = PILImage.effect_noise((width, height), 60 + seed).convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90, **save_kwargs)
    return buffer.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A real 1x1 PNG whose IHDR says width x height, with the chunk CRC fixed up."""
    data = bytearray(make_image(1, 1, fmt="PNG"))
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def only_rejection(response) -> dict:
    body = response.json()
    assert body["accepted"] == [], body
    assert len(body["rejected"]) == 1, body
    return body["rejected"][0]


# --- Accepted formats, stored as sent -------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "name"), [("JPEG", "a.jpg"), ("PNG", "b.png"), ("BMP", "c.bmp"), ("WEBP", "d.webp")]
)
def test_each_supported_format_is_accepted_with_its_size(annotator_api, project, fmt, name):
    content = make_image(300, 260, fmt=fmt)
    response = upload(annotator_api, project, (name, content))
    assert response.status_code == 201
    accepted = response.json()["accepted"]
    assert [(a["filename"], a["width"], a["height"], a["warnings"]) for a in accepted] == [
        (name, 300, 260, [])
    ]
    image = Image.objects.get(pk=accepted[0]["image_id"])
    assert (image.project, image.format, image.width, image.height) == (project, fmt, 300, 260)
    assert image.source == Image.Source.UPLOAD and image.is_training


def test_stored_file_keeps_the_original_bytes_under_a_content_address(annotator_api, project):
    content = noisy_jpeg()
    sha = hashlib.sha256(content).hexdigest()
    response = upload(annotator_api, project, ("holiday.JPG", content))
    image = Image.objects.get(pk=response.json()["accepted"][0]["image_id"])
    assert image.file.name == f"images/{project.pk}/{sha[:2]}/{sha}.jpg"
    assert image.sha256 == sha and image.size_bytes == len(content)
    assert image.original_name == "holiday.JPG"
    with default_storage.open(image.file.name, "rb") as fh:
        assert fh.read() == content


def test_format_is_read_from_content_not_extension(annotator_api, project):
    response = upload(annotator_api, project, ("really-a-png.jpg", make_image(300, 300)))
    image = Image.objects.get(pk=response.json()["accepted"][0]["image_id"])
    assert image.format == "PNG" and image.file.name.endswith(".png")


def test_gif_is_accepted_from_its_first_frame(annotator_api, project):
    frames = [PILImage.new("RGB", (300, 280), color) for color in ((255, 0, 0), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=50)
    response = upload(annotator_api, project, ("anim.gif", buffer.getvalue()))
    accepted = response.json()["accepted"]
    assert [(a["width"], a["height"]) for a in accepted] == [(300, 280)]
    assert Image.objects.get(pk=accepted[0]["image_id"]).format == "GIF"


def test_exif_orientation_6_swaps_the_stored_width_and_height(annotator_api, project):
    exif = PILImage.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": a 400x300 sensor image shows as 300x400
    content = noisy_jpeg(400, 300, exif=exif.tobytes())
    response = upload(annotator_api, project, ("portrait.jpg", content))
    accepted = response.json()["accepted"][0]
    assert (accepted["width"], accepted["height"]) == (300, 400)
    image = Image.objects.get(pk=accepted["image_id"])
    assert (image.width, image.height) == (300, 400)
    with default_storage.open(image.file.name, "rb") as fh:
        assert fh.read() == content  # the original bytes, EXIF and all


def test_inspect_header_checks_what_needs_no_pixels_and_leaves_the_pixels_to_the_caller():
    exif = PILImage.Exif()
    exif[0x0112] = 6
    portrait = noisy_jpeg(400, 300, exif=exif.tobytes())
    truncated = noisy_jpeg(400, 300)[:2000]

    header = inspect_header(portrait)
    assert (header.format, header.width, header.height) == ("JPEG", 300, 400)
    assert header == inspect_image(portrait)
    # A cut file has a sound header: only a decode of its pixels (the caller's) finds it out.
    assert inspect_header(truncated).width == 400
    with pytest.raises(FileRejected) as cut:
        inspect_image(truncated)
    assert (cut.value.code, cut.value.message) == ("corrupt", corrupt_rejection().message)
    with pytest.raises(FileRejected) as text:
        inspect_header(b"not an image")
    assert text.value.code == "not_an_image"


def test_small_image_is_accepted_with_a_warning(annotator_api, project):
    response = upload(annotator_api, project, ("tiny.png", make_image(100, 300)))
    accepted = response.json()["accepted"]
    assert len(accepted) == 1
    [warning] = accepted[0]["warnings"]
    assert warning["code"] == "small"
    assert "upscaled for training" in warning["message"]
    assert Image.objects.get(pk=accepted[0]["image_id"]).is_small


# --- Rejections ----------------------------------------------------------------------------


def test_truncated_jpeg_is_rejected_as_corrupt(annotator_api, project):
    content = noisy_jpeg()
    response = upload(annotator_api, project, ("cut.jpg", content[: len(content) // 2]))
    rejected = only_rejection(response)
    assert (rejected["filename"], rejected["code"]) == ("cut.jpg", "corrupt")
    assert rejected["message"].endswith(".")
    assert not ImageFile.LOAD_TRUNCATED_IMAGES
    assert not Image.objects.exists()


def test_png_with_damaged_pixel_data_is_rejected_as_corrupt(annotator_api, project):
    content = bytearray(make_image(300, 300, fmt="PNG"))
    idat = content.index(b"IDAT")
    content[idat + 10 : idat + 30] = b"\x00" * 20
    rejected = only_rejection(upload(annotator_api, project, ("bad.png", bytes(content))))
    assert rejected["code"] == "corrupt"


def test_text_file_named_png_is_not_an_image(annotator_api, project):
    rejected = only_rejection(
        upload(annotator_api, project, ("notes.png", b"These are my notes, not a picture.\n"))
    )
    assert rejected["code"] == "not_an_image"
    assert not project.images.exists()


def test_zero_byte_file_is_rejected_as_empty(annotator_api, project):
    rejected = only_rejection(upload(annotator_api, project, ("empty.jpg", b"")))
    assert rejected["code"] == "empty"


def test_file_over_the_size_limit_is_rejected(annotator_api, project, settings):
    settings.LOUPE_MAX_IMAGE_BYTES = 2_000
    content = noisy_jpeg(100, 100)
    assert len(content) > 2_000
    rejected = only_rejection(upload(annotator_api, project, ("big.jpg", content)))
    assert rejected["code"] == "too_large"
    assert not default_storage.exists(f"images/{project.pk}")


def test_png_claiming_100000_by_100000_pixels_is_refused_before_decoding(annotator_api, project):
    rejected = only_rejection(
        upload(annotator_api, project, ("bomb.png", png_claiming(100_000, 100_000)))
    )
    assert rejected["code"] == "too_many_pixels"


def test_pixel_limit_is_checked_from_the_header_against_the_setting(
    annotator_api, project, settings
):
    settings.LOUPE_MAX_IMAGE_PIXELS = 10_000
    # 1x1 of real pixel data, header says 200x100: rejected on the header, never decoded.
    rejected = only_rejection(upload(annotator_api, project, ("wide.png", png_claiming(200, 100))))
    assert rejected["code"] == "too_many_pixels"
    assert "200 x 100" in rejected["message"]


def test_header_between_pillow_warning_and_error_limits_is_refused(
    annotator_api, project, settings
):
    settings.LOUPE_MAX_IMAGE_PIXELS = 500_000_000  # ours allows it; Pillow's bomb warning must not
    rejected = only_rejection(
        upload(annotator_api, project, ("big.png", png_claiming(10_000, 10_000)))
    )
    assert rejected["code"] == "too_many_pixels"


def test_unsupported_image_format_is_rejected(annotator_api, project):
    rejected = only_rejection(
        upload(annotator_api, project, ("scan.tif", make_image(300, 300, fmt="TIFF")))
    )
    assert rejected["code"] == "unsupported_format"
    assert "TIFF" in rejected["message"]


def test_same_file_twice_in_one_batch_is_stored_once(annotator_api, project):
    content = make_image(300, 300)
    response = upload(annotator_api, project, ("one.png", content), ("two.png", content))
    body = response.json()
    assert [a["filename"] for a in body["accepted"]] == ["one.png"]
    assert [(r["filename"], r["code"]) for r in body["rejected"]] == [("two.png", "duplicate")]
    assert "one.png" in body["rejected"][0]["message"]
    assert project.images.count() == 1


def test_duplicate_of_a_stored_image_names_that_image(annotator_api, project):
    content = make_image(300, 300)
    first = upload(annotator_api, project, ("first.png", content)).json()["accepted"][0]
    response = upload(annotator_api, project, ("again.png", content))
    assert response.status_code == 200  # nothing new was created
    rejected = only_rejection(response)
    assert rejected["code"] == "duplicate"
    assert rejected["image_id"] == first["image_id"]
    assert f"image {first['image_id']}" in rejected["message"]
    assert project.images.count() == 1


def test_same_content_in_another_project_is_not_a_duplicate(annotator_api, project, users):
    content = make_image(300, 300)
    ImageFactory(content=content, sha256=hashlib.sha256(content).hexdigest())  # other project
    response = upload(annotator_api, project, ("x.png", content))
    assert len(response.json()["accepted"]) == 1


def test_batch_with_good_and_bad_files_lands_the_good_ones(annotator_api, project):
    good = [(f"good{i}.jpg", noisy_jpeg(300, 256, seed=i)) for i in range(3)]
    bad = [
        ("text.jpg", b"not an image"),
        ("empty.png", b""),
        ("cut.jpg", noisy_jpeg(seed=9)[:3000]),
    ]
    response = upload(annotator_api, project, good[0], bad[0], good[1], bad[1], bad[2], good[2])
    body = response.json()
    assert response.status_code == 201
    assert [a["filename"] for a in body["accepted"]] == ["good0.jpg", "good1.jpg", "good2.jpg"]
    assert [a["index"] for a in body["accepted"]] == [0, 2, 5]
    assert {r["filename"]: r["code"] for r in body["rejected"]} == {
        "text.jpg": "not_an_image",
        "empty.png": "empty",
        "cut.jpg": "corrupt",
    }
    assert (body["accepted_count"], body["rejected_count"]) == (3, 3)
    assert sorted(project.images.values_list("original_name", flat=True)) == [
        "good0.jpg",
        "good1.jpg",
        "good2.jpg",
    ]


def test_request_without_files_is_refused(annotator_api, project):
    response = annotator_api.post(
        f"/api/projects/{project.pk}/images/upload/", {}, format="multipart"
    )
    assert response.status_code == 400
    assert response.json()["code"] == "no_files"


def test_a_batch_costs_the_same_number_of_queries_whatever_its_size(annotator_api, project):
    counts = []
    for n in (2, 12):
        files = [(f"f{n}-{i}.png", make_image(300, 300, color=(n, i, 7))) for i in range(n)]
        with CaptureQueriesContext(connection) as queries:
            assert upload(annotator_api, project, *files).status_code == 201
        counts.append(len(queries))
    assert counts[0] == counts[1], counts
    assert project.images.count() == 14


def test_unique_constraint_race_is_reported_as_duplicate_not_an_error(project, users):
    """Another upload commits the same content between our duplicate check and the insert."""
    content = make_image(300, 300)
    sha = hashlib.sha256(content).hexdigest()
    winner = ImageFactory(project=project, content=content, sha256=sha)

    def row(sha256: str) -> Image:
        return Image(
            project=project,
            file=ContentFile(b"x", name="x.png"),
            sha256=sha256,
            format="PNG",
            size_bytes=1,
            width=300,
            height=300,
        )

    late, fresh = row(sha), row("f" * 64)
    saved, lost = _create_rows([late, fresh])
    assert saved == [fresh] and lost == [late]
    assert set(project.images.values_list("pk", flat=True)) == {winner.pk, fresh.pk}


# --- Batch tags ----------------------------------------------------------------------------


def test_batch_tags_are_given_to_every_accepted_image(annotator_api, users):
    from tests.factories import MembershipFactory, ProjectFactory, TagFactory

    project = ProjectFactory(kind=Project.Kind.MULTILABEL)
    MembershipFactory(project=project, user=users["annotator"])
    cat, dog, _bird = (TagFactory(project=project, name=n) for n in ("cat", "dog", "bird"))
    files = [(f"{i}.png", make_image(300, 300, color=(i, 1, 2))) for i in range(3)]
    response = upload(annotator_api, project, *files, ("bad.png", b"x"), tag_ids=[cat.pk, dog.pk])
    assert response.status_code == 201
    images = list(project.images.all())
    assert len(images) == 3
    for image in images:
        assert image.is_tagged
        assert set(image.image_tags.values_list("tag__name", flat=True)) == {"cat", "dog"}


def test_multiclass_upload_takes_one_tag_and_refuses_two(annotator_api, project):
    from tests.factories import TagFactory

    apple, pear = (
        TagFactory(project=project, name="apple"),
        TagFactory(project=project, name="pear"),
    )
    response = upload(
        annotator_api, project, ("a.png", make_image(300, 300)), tag_ids=[apple.pk, pear.pk]
    )
    assert response.status_code == 422
    assert response.json()["code"] == "label_rule"
    assert not project.images.exists()
    assert not default_storage.exists(f"images/{project.pk}")
    response = upload(annotator_api, project, ("a.png", make_image(300, 300)), tag_ids=[pear.pk])
    image = project.images.get()
    assert list(image.image_tags.values_list("tag__name", flat=True)) == ["pear"]


def test_tag_of_another_project_is_not_found(annotator_api, project):
    from tests.factories import TagFactory

    foreign = TagFactory()
    response = upload(annotator_api, project, ("a.png", make_image(300, 300)), tag_ids=[foreign.pk])
    assert response.status_code == 404
    assert not project.images.exists()


# --- Roles ---------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["admin", "reviewer", "annotator"])
def test_every_member_role_may_upload(api_client, project, users, role):
    api_client.force_authenticate(users[role])
    response = upload(api_client, project, ("a.png", make_image(300, 300)))
    assert response.status_code == 201
    assert project.images.get().created_by == users[role]


def test_non_member_gets_404_and_nothing_is_stored(api_client, project, users):
    api_client.force_authenticate(users["non_member"])
    response = upload(api_client, project, ("a.png", make_image(300, 300)))
    assert response.status_code == 404
    assert not project.images.exists()


def test_anonymous_upload_gets_401(api_client, project):
    response = upload(api_client, project, ("a.png", make_image(300, 300)))
    assert response.status_code == 401
    assert not project.images.exists()


def test_token_auth_upload_works(api_client, project, users):
    from rest_framework.authtoken.models import Token

    token = Token.objects.create(user=users["annotator"])
    api_client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    response = upload(api_client, project, ("a.png", make_image(300, 300)))
    assert response.status_code == 201
