"""Ingest: take many uploaded files, check each one by content, store the good ones, tag them.

A batch is reported per file (`IngestReport`): one bad file never rejects or rolls back the
others. Each file is checked in this order, and the first failed check is its rejection code:

  empty, too_large            size, before reading anything
  duplicate                   sha256 seen earlier in the batch or among the project's training
                              images (also a unique-constraint race with a concurrent upload)
  not_an_image                Pillow cannot identify it (the extension is never trusted)
  unsupported_format          an image, but not JPEG, PNG, BMP, WebP or GIF
  too_many_pixels             width x height from the header, BEFORE any pixel is decoded
  corrupt                     the pixels do not fully decode (a truncated file fails: we never
                              set PIL.ImageFile.LOAD_TRUNCATED_IMAGES)

Accepted files keep their original bytes (EXIF orientation is applied to the stored width and
height; thumbnails and training apply `exif_transpose`). Thumbnails are made by the worker
(`labeling.make_thumbnails`, queue "thumbnails"), one task per batch of ids, after the commit.

Speed (bench/upload.py): the request path hashes while streaming, queries the project for
duplicates once per batch, decodes each file once from memory, and inserts rows in bulk.
"""

from __future__ import annotations

import hashlib
import io
import logging
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from typing import Protocol

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.utils import timezone
from PIL import Image as PILImage
from PIL import ImageOps, UnidentifiedImageError

from labeling.access import require_role
from labeling.models import Image, Project, Role, Tag
from labeling.services.tagging import add_tags_to_images, check_tag_rules
from project.errors import NotFound, ValidationFailed

logger = logging.getLogger(__name__)

# Pillow format name -> the extension the stored file gets. Anything else Pillow can read
# (TIFF, ICO, PPM, EPS, ...) is refused before its pixels are decoded.
SUPPORTED_FORMATS: dict[str, str] = {
    "JPEG": "jpg", "PNG": "png", "BMP": "bmp", "WEBP": "webp", "GIF": "gif",
}
# EXIF orientations 5-8 turn the picture a quarter turn: the shown width is the stored height.
_QUARTER_TURN_ORIENTATIONS = frozenset({5, 6, 7, 8})
_EXIF_ORIENTATION = 0x0112
# Errors Pillow raises on malformed data while decoding; anything else is a bug and is logged.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError,
                  MemoryError)
# The worker makes thumbnails for at most this many images per task, so a 1,000-file request
# becomes 20 short tasks that a pool can share, not one long one.
THUMBNAIL_TASK_BATCH = 50
_HASH_CHUNK_BYTES = 1024 * 1024


class UploadLike(Protocol):
    """What ingest needs of a file: Django's UploadedFile, or a File around any binary stream."""

    name: str | None

    def read(self, size: int = -1) -> bytes: ...

    def seek(self, offset: int, whence: int = 0) -> int: ...


class NoFiles(ValidationFailed):
    code = "no_files"
    http_status = 400


@dataclass(frozen=True)
class IngestWarning:
    code: str
    message: str


@dataclass(frozen=True)
class Accepted:
    index: int  # position of the file in the request, so clients can match same-named files
    filename: str
    image_id: int
    width: int
    height: int
    warnings: tuple[IngestWarning, ...] = ()


@dataclass(frozen=True)
class Rejected:
    index: int
    filename: str
    code: str
    message: str
    # For `duplicate`: the image already in the project with the same content.
    image_id: int | None = None


@dataclass
class IngestReport:
    accepted: list[Accepted] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)

    @property
    def accepted_count(self) -> int:
        return len(self.accepted)

    @property
    def rejected_count(self) -> int:
        return len(self.rejected)

    @property
    def warning_count(self) -> int:
        return sum(1 for item in self.accepted if item.warnings)


class _Rejection(Exception):  # noqa: N818 - internal signal, never leaves this module
    def __init__(self, code: str, message: str, image_id: int | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.image_id = code, message, image_id


@dataclass
class _Candidate:
    """One file on its way through the checks."""

    index: int
    filename: str
    upload: UploadLike
    size_bytes: int
    sha256: str
    format: str = ""
    width: int = 0
    height: int = 0
    warnings: tuple[IngestWarning, ...] = ()
    stored_name: str = ""


@dataclass(frozen=True)
class _Inspection:
    format: str
    width: int
    height: int
    warnings: tuple[IngestWarning, ...]


def ingest_images(*, project: Project, files: Sequence[UploadLike], by: AbstractBaseUser,
                  tag_ids: Sequence[int] = (),
                  source: str = Image.Source.UPLOAD) -> IngestReport:
    """Check, store and tag a batch of uploaded files; report each file's outcome.

    Raises (for the whole request, before any file is touched): NotFound/Forbidden for the role,
    NotFound for a tag of another project, LabelRuleError for a tag set the project's kind does
    not allow (multiclass takes one tag), NoFiles for an empty batch.
    """
    require_role(by, project, Role.ANNOTATOR)
    tags = _resolve_tags(project, tag_ids)
    if not files:
        raise NoFiles("Choose at least one image file to upload.")
    is_training = source != Image.Source.PREDICTION
    report = IngestReport()
    candidates = _fingerprint_all(project, files, is_training=is_training, report=report)
    checked: list[_Candidate] = []
    for candidate in candidates:
        try:
            _check_and_store(project, candidate)
        except _Rejection as rejection:
            report.rejected.append(_rejected(candidate, rejection))
        else:
            checked.append(candidate)
    if checked:
        _insert(project, checked, by=by, tags=tags, source=source, is_training=is_training,
                report=report)
    report.accepted.sort(key=lambda item: item.index)
    report.rejected.sort(key=lambda item: item.index)
    return report


def _resolve_tags(project: Project, tag_ids: Sequence[int]) -> list[Tag]:
    wanted = list(dict.fromkeys(int(tag_id) for tag_id in tag_ids))
    if not wanted:
        return []
    tags = list(project.tags.filter(pk__in=wanted))
    if len(tags) != len(wanted):
        raise NotFound("That tag does not belong to this project.")
    check_tag_rules(project, tags)
    return tags


# --- Pass 1: size and content hash, streamed; duplicates found with one query ----------------

def _fingerprint_all(project: Project, files: Sequence[UploadLike], *, is_training: bool,
                     report: IngestReport) -> list[_Candidate]:
    candidates: list[_Candidate] = []
    first_by_sha: dict[str, _Candidate] = {}
    for index, upload in enumerate(files):
        filename = _display_name(upload, index)
        try:
            candidate = _fingerprint(index, filename, upload)
            earlier = first_by_sha.get(candidate.sha256)
            if earlier is not None:
                raise _Rejection("duplicate", f"This file is the same as “{earlier.filename}” "
                                              "earlier in this upload.")
        except _Rejection as rejection:
            report.rejected.append(Rejected(index, filename, rejection.code, rejection.message))
            continue
        first_by_sha[candidate.sha256] = candidate
        candidates.append(candidate)
    if not is_training or not candidates:
        return candidates
    # Stored predictions (is_training=False) may share content with training images.
    stored = dict(project.images.training().filter(sha256__in=list(first_by_sha))
                  .values_list("sha256", "pk"))
    fresh = []
    for candidate in candidates:
        if candidate.sha256 in stored:
            report.rejected.append(_duplicate_of_stored(candidate, stored[candidate.sha256]))
        else:
            fresh.append(candidate)
    return fresh


def _fingerprint(index: int, filename: str, upload: UploadLike) -> _Candidate:
    max_bytes = settings.LOUPE_MAX_IMAGE_BYTES
    declared = getattr(upload, "size", None)
    if isinstance(declared, int) and declared > max_bytes:
        raise _Rejection("too_large", _too_large_message(declared, max_bytes))
    upload.seek(0)
    digest = hashlib.sha256()
    size = 0
    chunks: Iterable[bytes] = (upload.chunks(_HASH_CHUNK_BYTES) if hasattr(upload, "chunks")
                               else iter(partial(upload.read, _HASH_CHUNK_BYTES), b""))
    for chunk in chunks:
        size += len(chunk)
        if size > max_bytes:
            raise _Rejection("too_large", _too_large_message(size, max_bytes))
        digest.update(chunk)
    if size == 0:
        raise _Rejection("empty", "This file is empty (0 bytes).")
    return _Candidate(index=index, filename=filename, upload=upload, size_bytes=size,
                      sha256=digest.hexdigest())


def _too_large_message(size: int, max_bytes: int) -> str:
    return (f"This file is {size / 1_000_000:.1f} MB; the limit is "
            f"{max_bytes / 1_000_000:.1f} MB per image.")


def _display_name(upload: UploadLike, index: int) -> str:
    name = (getattr(upload, "name", None) or "").replace("\\", "/").rsplit("/", 1)[-1]
    return name[:255] or f"file {index + 1}"


# --- Pass 2: decode and store each file; memory holds one file at a time ---------------------

def _check_and_store(project: Project, candidate: _Candidate) -> None:
    # The second read of the file: pass 1 streamed it for the hash without keeping it, so a
    # 500-file request never holds 500 files in memory. Uploads up to 8 MB per request are
    # already in memory (FILE_UPLOAD_MAX_MEMORY_SIZE), larger ones are read from the page cache.
    candidate.upload.seek(0)
    data = candidate.upload.read()
    try:
        inspection = inspect_image(data)
    except _Rejection:
        raise
    except Exception:
        # Not a rule we know of: say so generically, keep the details in the log.
        logger.exception("Unexpected error checking upload %r (%d bytes) for project %s",
                         candidate.filename, len(data), project.pk)
        raise _Rejection("error", "This file could not be checked; it was not stored.") from None
    candidate.format = inspection.format
    candidate.width, candidate.height = inspection.width, inspection.height
    candidate.warnings = inspection.warnings
    extension = SUPPORTED_FORMATS[inspection.format]
    name = f"images/{project.pk}/{candidate.sha256[:2]}/{candidate.sha256}.{extension}"
    try:
        # The storage picks a fresh name if one exists, so every row owns its own file.
        candidate.stored_name = default_storage.save(name, ContentFile(data))
    except OSError:
        logger.exception("Could not store upload %r for project %s", candidate.filename,
                         project.pk)
        raise _Rejection("storage_error",
                         "This file could not be stored on the server; try again.") from None


def inspect_image(data: bytes) -> _Inspection:
    """Check one file's bytes by content; raise _Rejection with the first failed rule."""
    with warnings.catch_warnings():
        # Pillow warns (not fails) between MAX_IMAGE_PIXELS and twice that: make it fail.
        warnings.simplefilter("error", PILImage.DecompressionBombWarning)
        try:
            image = PILImage.open(io.BytesIO(data))
        except UnidentifiedImageError:
            raise _Rejection("not_an_image", "This file is not an image Loupe can read "
                                             "(JPEG, PNG, BMP, WebP or GIF).") from None
        except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning):
            raise _too_many_pixels(None) from None
        except _DECODE_ERRORS:
            raise _corrupt() from None
        with image:
            if image.format not in SUPPORTED_FORMATS:
                raise _Rejection("unsupported_format",
                                 f"{image.format} images are not supported; use JPEG, PNG, "
                                 "BMP, WebP or GIF.")
            width, height = image.size
            if width * height > settings.LOUPE_MAX_IMAGE_PIXELS:
                raise _too_many_pixels((width, height))
            try:
                image.load()  # every pixel (the first frame of a GIF): truncated files fail
            except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning):
                raise _too_many_pixels((width, height)) from None
            except _DECODE_ERRORS:
                raise _corrupt() from None
            if _orientation(image) in _QUARTER_TURN_ORIENTATIONS:
                width, height = height, width
            return _Inspection(format=image.format, width=width, height=height,
                               warnings=_size_warnings(width, height))


def _orientation(image: PILImage.Image) -> int:
    try:
        return int(image.getexif().get(_EXIF_ORIENTATION, 1))
    except _DECODE_ERRORS:
        # A broken EXIF block does not make the pixels unusable: treat it as upright.
        return 1


def _size_warnings(width: int, height: int) -> tuple[IngestWarning, ...]:
    edge = settings.LOUPE_SMALL_EDGE_PX
    if min(width, height) >= edge:
        return ()
    return (IngestWarning("small", f"This image is {width}×{height} pixels; images under "
                                   f"{edge} pixels on the shortest edge will be upscaled for "
                                   "training."),)


def _too_many_pixels(size: tuple[int, int] | None) -> _Rejection:
    limit = settings.LOUPE_MAX_IMAGE_PIXELS
    what = f"{size[0]}×{size[1]} pixels" if size else "more pixels than allowed"
    return _Rejection("too_many_pixels", f"This image has {what}; the limit is "
                                         f"{limit / 1_000_000:g} million pixels.")


def _corrupt() -> _Rejection:
    return _Rejection("corrupt", "This image is damaged or incomplete and cannot be decoded.")


# --- Pass 3: rows in bulk, batch tags, thumbnails after the commit ---------------------------

def _insert(project: Project, candidates: list[_Candidate], *, by: AbstractBaseUser,
            tags: Sequence[Tag], source: str, is_training: bool, report: IngestReport) -> None:
    rows = [Image(project=project, file=c.stored_name, original_name=c.filename,
                  sha256=c.sha256, format=c.format, size_bytes=c.size_bytes, width=c.width,
                  height=c.height, source=source, is_training=is_training, created_by=by)
            for c in candidates]
    try:
        with transaction.atomic():
            saved, lost = _create_rows(rows)
            if tags and saved:
                add_tags_to_images(project=project, image_ids=[row.pk for row in saved],
                                   tags=tags, by=by)
            ids = [row.pk for row in saved]
            for start in range(0, len(ids), THUMBNAIL_TASK_BATCH):
                transaction.on_commit(
                    partial(_enqueue_thumbnails, ids[start:start + THUMBNAIL_TASK_BATCH]))
    except BaseException:
        _delete_files(c.stored_name for c in candidates)  # no row points at them
        raise
    by_row = dict(zip((id(row) for row in rows), candidates, strict=True))
    for row in saved:
        c = by_row[id(row)]
        report.accepted.append(Accepted(c.index, c.filename, row.pk, c.width, c.height,
                                        c.warnings))
    lost_candidates = [by_row[id(row)] for row in lost]
    _delete_files(c.stored_name for c in lost_candidates)
    existing = dict(project.images.training().filter(
        sha256__in=[c.sha256 for c in lost_candidates]).values_list("sha256", "pk"))
    for c in lost_candidates:
        report.rejected.append(_duplicate_of_stored(c, existing.get(c.sha256)))


def _create_rows(rows: list[Image]) -> tuple[list[Image], list[Image]]:
    """Insert rows in bulk; on a unique-constraint race, row by row. Returns (saved, lost).

    Another upload of the same content may commit between our duplicate query and this insert;
    the database's unique constraint on (project, sha256) catches it, and that file is reported
    as a duplicate instead of failing the whole batch with a 500.
    """
    try:
        with transaction.atomic():
            return Image.objects.bulk_create(rows), []
    except IntegrityError:
        for row in rows:
            row.pk = None
            row._state.adding = True
    saved, lost = [], []
    for row in rows:
        try:
            with transaction.atomic():
                row.save(force_insert=True)
        except IntegrityError:
            if not Image.objects.filter(project_id=row.project_id, sha256=row.sha256,
                                        is_training=True).exists():
                raise  # not the duplicate race: a real fault, do not hide it
            lost.append(row)
        else:
            saved.append(row)
    return saved, lost


def _duplicate_of_stored(candidate: _Candidate, image_id: int | None) -> Rejected:
    which = f"image {image_id}" if image_id else "another image"
    return Rejected(candidate.index, candidate.filename, "duplicate",
                    f"This image is already in the project ({which}).", image_id)


def _rejected(candidate: _Candidate, rejection: _Rejection) -> Rejected:
    return Rejected(candidate.index, candidate.filename, rejection.code, rejection.message,
                    rejection.image_id)


def _delete_files(names: Iterable[str]) -> None:
    for name in names:
        if not name:
            continue
        try:
            default_storage.delete(name)
        except OSError:
            logger.warning("Could not delete orphaned upload %s", name, exc_info=True)


def _enqueue_thumbnails(image_ids: list[int]) -> None:
    """Queue one thumbnail task for these ids; a broker outage must not fail the upload.

    The rows are committed by now; if Redis is down the images show the gallery's placeholder
    until the periodic `labeling.queue_missing_thumbnails` queues them again.
    """
    from kombu.exceptions import OperationalError

    from labeling.tasks import make_thumbnails

    try:
        make_thumbnails.apply_async(
            (image_ids,), retry=True,
            retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.5})
    except (OperationalError, OSError):
        logger.warning("Could not queue thumbnails for images %s..%s", image_ids[0],
                       image_ids[-1], exc_info=True)


def queue_missing_thumbnails(*, project: Project | None = None,
                             limit: int = 5000) -> int:
    """Queue thumbnail tasks for recent images that still have none; returns how many.

    Only images 5 minutes to 1 day old: younger ones are probably still in the queue, and an
    older one without a thumbnail failed for good (its file is logged), so retrying it forever
    would only burn worker time.
    """
    now = timezone.now()
    images = Image.objects.filter(thumbnail="", created__lt=now - timedelta(minutes=5),
                                  created__gte=now - timedelta(days=1))
    if project is not None:
        images = images.filter(project=project)
    ids = list(images.order_by("pk").values_list("pk", flat=True)[:limit])
    for start in range(0, len(ids), THUMBNAIL_TASK_BATCH):
        _enqueue_thumbnails(ids[start:start + THUMBNAIL_TASK_BATCH])
    return len(ids)


# --- Thumbnails (run by the worker: labeling.tasks.make_thumbnails) -------------------------

@dataclass(frozen=True)
class ThumbnailRun:
    made: list[int]
    failed: list[int]
    remaining: list[int]  # not reached before the deadline: the task queues them again


def make_thumbnails(image_ids: Sequence[int], *, deadline: float | None = None,
                    clock: Callable[[], float] = time.monotonic) -> ThumbnailRun:
    """Make the missing thumbnails of these images (idempotent: done ones are skipped).

    A file that fails is logged and skipped; it never stops the others. Ids of deleted images
    are ignored. `deadline` (a `clock()` value) stops early, returning the ids not reached.
    """
    made: list[int] = []
    failed: list[int] = []
    images = list(Image.objects.filter(pk__in=list(image_ids)).only(
        "pk", "project_id", "file", "thumbnail").order_by("pk"))
    for position, image in enumerate(images):
        if deadline is not None and clock() > deadline:
            return ThumbnailRun(made, failed, [i.pk for i in images[position:]])
        try:
            if _make_thumbnail(image):
                made.append(image.pk)
        except (*_DECODE_ERRORS, PILImage.DecompressionBombError):
            logger.warning("Could not make a thumbnail for image %s (%s)", image.pk,
                           image.file.name, exc_info=True)
            failed.append(image.pk)
        except Exception:
            # Never let one image stop the batch or the worker; the details go to the log.
            logger.exception("Unexpected error making a thumbnail for image %s", image.pk)
            failed.append(image.pk)
    return ThumbnailRun(made, failed, [])


def thumbnail_name(image: Image) -> str:
    return f"thumbnails/{image.project_id}/{image.pk}.jpg"


def _make_thumbnail(image: Image) -> bool:
    name = thumbnail_name(image)
    if image.thumbnail.name == name and default_storage.exists(name):
        return False
    data = _render_thumbnail(image.file.name)
    if default_storage.exists(name):
        # Left by a run that died before its row update: replace it, keep the name stable.
        default_storage.delete(name)
    saved = default_storage.save(name, ContentFile(data))
    if not Image.objects.filter(pk=image.pk).update(thumbnail=saved):
        default_storage.delete(saved)  # the image was deleted meanwhile
        return False
    return True


def _render_thumbnail(file_name: str) -> bytes:
    size_px = settings.LOUPE_THUMBNAIL_PX
    with default_storage.open(file_name, "rb") as fh, PILImage.open(fh) as image:
        # JPEG decodes at 1/2..1/8 scale straight from the DCT: several times faster.
        image.draft("RGB", (size_px, size_px))
        upright = ImageOps.exif_transpose(image)
        rgb = _flatten_to_rgb(upright)
        rgb.thumbnail((size_px, size_px), PILImage.Resampling.LANCZOS, reducing_gap=2.0)
        buffer = io.BytesIO()
        rgb.save(buffer, format="JPEG", quality=85)
        return buffer.getvalue()


def _flatten_to_rgb(image: PILImage.Image) -> PILImage.Image:
    """RGB for JPEG; transparent pixels go white (as the gallery's background), not black."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P"
                                              and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = PILImage.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")
