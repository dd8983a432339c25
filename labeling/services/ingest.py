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
(labeling.services.thumbnails), one task per batch of ids, after the commit.

Speed (bench/upload.py): the request path hashes while streaming, queries the project for
duplicates once per batch, decodes each file once from memory, and inserts rows in bulk.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import struct
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Protocol, TypeVar

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from PIL import Image as PILImage
from PIL import UnidentifiedImageError

from labeling.access import require_role
from labeling.models import Image, Project, Role, Tag
from labeling.services.tagging import add_tags_to_images, check_tag_rules
from labeling.services.thumbnails import enqueue_thumbnails_after_commit
from project.errors import NotFound, ValidationFailed
from project.multipart import safe_filename

logger = logging.getLogger(__name__)
T = TypeVar("T")

# Pillow format name -> the extension the stored file gets. Anything else Pillow can read
# (TIFF, ICO, PPM, EPS, ...) is refused before its pixels are decoded.
SUPPORTED_FORMATS: dict[str, str] = {
    "JPEG": "jpg",
    "PNG": "png",
    "BMP": "bmp",
    "WEBP": "webp",
    "GIF": "gif",
}
# EXIF orientations 5-8 turn the picture a quarter turn: the shown width is the stored height.
_QUARTER_TURN_ORIENTATIONS = frozenset({5, 6, 7, 8})
_EXIF_ORIENTATION = 0x0112
# Errors Pillow raises on malformed data while decoding; anything else is a bug and is logged.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, MemoryError)
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
    # For a duplicate within the batch: the index of its first copy.
    same_as: int | None = None


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


class FileRejected(Exception):
    """One file failed a check: `code` and the user-facing `message` go into its report line.

    Public so other validators of image bytes (the prediction API) reuse `inspect_image` and
    `inspect_header`.
    """

    def __init__(self, code: str, message: str, image_id: int | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.image_id = code, message, image_id


_Rejection = FileRejected  # the name predictions.services.predict imports today


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


def ingest_images(
    *,
    project: Project,
    files: Sequence[UploadLike],
    by: AbstractBaseUser,
    tag_ids: Sequence[int] = (),
    source: str = Image.Source.UPLOAD,
) -> IngestReport:
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
    checked = _check_and_store_all(project, candidates, report=report)
    if checked:
        _insert(
            project,
            checked,
            by=by,
            tags=tags,
            source=source,
            is_training=is_training,
            report=report,
        )
    _name_images_of_batch_duplicates(report)
    report.accepted.sort(key=lambda item: item.index)
    report.rejected.sort(key=lambda item: item.index)
    return report


def _name_images_of_batch_duplicates(report: IngestReport) -> None:
    """A file repeated within the batch gets the image id its first copy ended up as, so a
    client retrying an upload can treat every `duplicate` with an image id as stored."""
    image_of = {item.index: item.image_id for item in report.accepted}
    image_of.update(
        {item.index: item.image_id for item in report.rejected if item.image_id is not None}
    )
    for position, item in enumerate(report.rejected):
        if item.code == "duplicate" and item.image_id is None and item.same_as is not None:
            image_id = image_of.get(item.same_as)
            if image_id is not None:
                report.rejected[position] = replace(
                    item, image_id=image_id, message=f"{item.message[:-1]} (image {image_id})."
                )


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


def _fingerprint_all(
    project: Project, files: Sequence[UploadLike], *, is_training: bool, report: IngestReport
) -> list[_Candidate]:
    candidates: list[_Candidate] = []
    first_by_sha: dict[str, _Candidate] = {}
    for index, upload in enumerate(files):
        filename = _display_name(upload, index)
        try:
            candidate = _fingerprint(index, filename, upload)
            earlier = first_by_sha.get(candidate.sha256)
            if earlier is not None:
                report.rejected.append(
                    Rejected(
                        index,
                        filename,
                        "duplicate",
                        f"This file is the same as “{earlier.filename}” earlier in this upload.",
                        same_as=earlier.index,
                    )
                )
                continue
        except _Rejection as rejection:
            report.rejected.append(Rejected(index, filename, rejection.code, rejection.message))
            continue
        first_by_sha[candidate.sha256] = candidate
        candidates.append(candidate)
    if not is_training or not candidates:
        return candidates
    # Stored predictions (is_training=False) may share content with training images.
    stored = dict(
        project.images.training().filter(sha256__in=list(first_by_sha)).values_list("sha256", "pk")
    )
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
    chunks: Iterable[bytes] = (
        upload.chunks(_HASH_CHUNK_BYTES)
        if hasattr(upload, "chunks")
        else iter(partial(upload.read, _HASH_CHUNK_BYTES), b"")
    )
    for chunk in chunks:
        size += len(chunk)
        if size > max_bytes:
            raise _Rejection("too_large", _too_large_message(size, max_bytes))
        digest.update(chunk)
    if size == 0:
        raise _Rejection("empty", "This file is empty (0 bytes).")
    return _Candidate(
        index=index, filename=filename, upload=upload, size_bytes=size, sha256=digest.hexdigest()
    )


def _too_large_message(size: int, max_bytes: int) -> str:
    return (
        f"This file is {size / 1_000_000:.1f} MB; the limit is "
        f"{max_bytes / 1_000_000:.1f} MB per image."
    )


def _display_name(upload: UploadLike, index: int) -> str:
    # Names reach here from multipart (already made safe by project.multipart) and from JSON
    # (the Training API's `name`, a dataset archive's members): the same rule for both, so a
    # lone surrogate, a NUL or a control character never reaches the database.
    return safe_filename(str(getattr(upload, "name", None) or "")) or f"file {index + 1}"


# --- Pass 2: decode and store, a few files at a time on a small thread pool ------------------
# Decoding is most of an upload's cost, and Pillow's decoders and hashlib release the GIL, so
# the files of a window decode in parallel on a multi-core host. Headers are parsed on the
# request thread: the pixel-bomb warning filter below is process-global state, and only
# Image.open emits that warning. A window bounds memory to a few files at a time.
_DECODE_THREADS = max(1, min(4, os.cpu_count() or 1))
_DECODE_WINDOW = 4 * _DECODE_THREADS
_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def _decode_pool() -> ThreadPoolExecutor:
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(_DECODE_THREADS, thread_name_prefix="ingest-decode")
        return _executor


def _check_and_store_all(
    project: Project, candidates: list[_Candidate], *, report: IngestReport
) -> list[_Candidate]:
    checked: list[_Candidate] = []
    for start in range(0, len(candidates), _DECODE_WINDOW):
        jobs: list[tuple[_Candidate, Future[None]]] = []
        for candidate in candidates[start : start + _DECODE_WINDOW]:
            try:
                data = _read_again(candidate)
                image = _guarded(project, candidate, len(data), _open_header, data)
            except _Rejection as rejection:
                report.rejected.append(_rejected(candidate, rejection))
                continue
            future = _decode_pool().submit(_decode_and_store, project, candidate, image, data)
            jobs.append((candidate, future))
        for candidate, future in jobs:
            try:
                future.result()
            except _Rejection as rejection:
                report.rejected.append(_rejected(candidate, rejection))
            else:
                checked.append(candidate)
    return checked


def _read_again(candidate: _Candidate) -> bytes:
    # The second read of the file: pass 1 streamed it for the hash without keeping it, so a
    # 500-file request never holds 500 files in memory. Uploads up to 8 MB per request are
    # already in memory (FILE_UPLOAD_MAX_MEMORY_SIZE), larger ones are read from the page cache.
    candidate.upload.seek(0)
    return candidate.upload.read()


def _guarded(
    project: Project, candidate: _Candidate, size: int, check: Callable[..., T], *args: object
) -> T:
    """Run one check; an error that is not a known rule is logged and reported generically."""
    try:
        return check(*args)
    except _Rejection:
        raise
    except Exception:
        logger.exception(
            "Unexpected error checking upload %r (%d bytes) for project %s",
            candidate.filename,
            size,
            project.pk,
        )
        raise _Rejection("error", "This file could not be checked; it was not stored.") from None


def _decode_and_store(
    project: Project, candidate: _Candidate, image: PILImage.Image, data: bytes
) -> None:
    """On a pool thread: decode every pixel, then store the original bytes."""
    inspection = _guarded(project, candidate, len(data), _decode, image)
    candidate.format = inspection.format
    candidate.width, candidate.height = inspection.width, inspection.height
    candidate.warnings = inspection.warnings
    extension = SUPPORTED_FORMATS[inspection.format]
    name = f"images/{project.pk}/{candidate.sha256[:2]}/{candidate.sha256}.{extension}"
    try:
        # The storage picks a fresh name if one exists, so every row owns its own file.
        candidate.stored_name = default_storage.save(name, ContentFile(data))
    except OSError:
        logger.exception("Could not store upload %r for project %s", candidate.filename, project.pk)
        raise _Rejection(
            "storage_error", "This file could not be stored on the server; try again."
        ) from None


def inspect_image(data: bytes) -> _Inspection:
    """Check one file's bytes by content; raise _Rejection with the first failed rule."""
    return _decode(_open_header(data))


def inspect_header(data: bytes) -> _Inspection:
    """inspect_image's checks that need no pixels: format, pixel count, upright size.

    For a caller that decodes the pixels itself right after and rejects a failed decode with
    `corrupt_rejection()`: the prediction API feeds its one decode to the model instead of
    decoding every image twice.
    """
    with _open_header(data) as image:
        return _upright_inspection(image, data)


def _open_header(data: bytes) -> PILImage.Image:
    """Identify the file and check format and pixel count from its header (no pixels yet)."""
    with warnings.catch_warnings():
        # Pillow warns (not fails) between MAX_IMAGE_PIXELS and twice that: make it fail.
        warnings.simplefilter("error", PILImage.DecompressionBombWarning)
        try:
            image = PILImage.open(io.BytesIO(data))
        except UnidentifiedImageError:
            raise _Rejection(
                "not_an_image",
                "This file is not an image Loupe can read (JPEG, PNG, BMP, WebP or GIF).",
            ) from None
        except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning):
            raise _too_many_pixels(None) from None
        except _DECODE_ERRORS:
            raise corrupt_rejection() from None
    if image.format not in SUPPORTED_FORMATS:
        image.close()
        raise _Rejection(
            "unsupported_format",
            f"{image.format} images are not supported; use JPEG, PNG, BMP, WebP or GIF.",
        )
    width, height = image.size
    if width * height > settings.LOUPE_MAX_IMAGE_PIXELS:
        image.close()
        raise _too_many_pixels((width, height))
    return image


def _decode(image: PILImage.Image) -> _Inspection:
    """Decode every pixel (the first frame of a GIF): a truncated or damaged file fails here.

    A JPEG decodes at 1/8 scale (libjpeg's DCT scaling): every byte of its entropy-coded data
    is still read, so a truncated or damaged file fails the same way, with 1/64 of the memory.
    Its size and orientation come from the header, before the reduced decode changes `size`.
    """
    with image:
        width, height = image.size
        inspection = _upright_inspection(image) if image.format == "JPEG" else None
        if inspection is not None:
            image.draft(None, (max(1, width // 8), max(1, height // 8)))
        try:
            # Pillow holds a decoded picture at 4 bytes a pixel (RGB is padded to 4 bands).
            with decode_budget(image.size[0] * image.size[1] * DECODED_BYTES_PER_PIXEL):
                image.load()
        except PILImage.DecompressionBombError:
            raise _too_many_pixels((width, height)) from None
        except _DECODE_ERRORS:
            raise corrupt_rejection() from None
        return inspection or _upright_inspection(image)


# What one decoded pixel costs in Pillow's memory: 4 bytes for RGB, RGBA, CMYK (RGB is stored
# padded to 4 bands), 1 for L and P. Counted at 4 whatever the mode: an upper bound.
DECODED_BYTES_PER_PIXEL = 4


class _DecodeBudget:
    """How many bytes of decoded pixels this process holds at once, across upload threads and
    predictions (LOUPE_DECODE_BUDGET_MB).

    Invariant: the bytes held by running decodes stay within the budget, except that one
    decode over it runs alone. Each caller holds what its path really keeps alive (an upload's
    check: the decoded picture; a prediction: the picture and its RGB copy until the model has
    run). Small images share the budget and decode in parallel; large ones take turns, so four
    49 MP PNGs in one upload, or four 24 MP PNG predictions at once, never pile up together.
    A waiting thread is released when a holder leaves its `with` block, also by an exception.
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._held = 0

    @contextmanager
    def hold(self, nbytes: int) -> Iterator[None]:
        limit = settings.LOUPE_DECODE_BUDGET_MB * 1_000_000
        with self._changed:
            self._changed.wait_for(lambda: self._held == 0 or self._held + nbytes <= limit)
            self._held += nbytes
        try:
            yield
        finally:
            with self._changed:
                self._held -= nbytes
                self._changed.notify_all()


_decode_budget = _DecodeBudget()


def decode_budget(nbytes: int) -> AbstractContextManager[None]:
    """Hold `nbytes` of the process's decode budget for the `with` block (see _DecodeBudget).

    Uploads and predictions decode under it, so the web process's memory for pixels stays
    bounded whatever a burst of large images asks for.
    """
    return _decode_budget.hold(nbytes)


def _upright_inspection(image: PILImage.Image, data: bytes | None = None) -> _Inspection:
    """Format and upright size; `data` (the file's bytes) when the pixels are not loaded."""
    width, height = image.size
    if _orientation(image, data) in _QUARTER_TURN_ORIENTATIONS:
        width, height = height, width
    return _Inspection(
        format=str(image.format),
        width=width,
        height=height,
        warnings=_size_warnings(width, height),
    )


def _orientation(image: PILImage.Image, data: bytes | None = None) -> int:
    try:
        if data is not None and image.format == "PNG" and "exif" not in image.info:
            # Pillow's PNG getexif() decodes every pixel to find an eXIf chunk after the image
            # data: 147 MB for a 49 MP header check. Walking the chunks finds it for free.
            exif = PILImage.Exif()
            exif.load(_png_chunk(data, b"eXIf") or b"")
            return int(exif.get(_EXIF_ORIENTATION, 1))
        return int(image.getexif().get(_EXIF_ORIENTATION, 1))
    except _DECODE_ERRORS:
        # A broken EXIF block does not make the pixels unusable: treat it as upright.
        return 1


def _png_chunk(data: bytes, kind: bytes) -> bytes | None:
    """The first `kind` chunk's content in PNG `data` (None if absent), without decompressing."""
    offset = 8  # after the signature
    while offset + 8 <= len(data):
        length, found = struct.unpack(">I4s", data[offset : offset + 8])
        if found == kind:
            return data[offset + 8 : offset + 8 + length]
        if found == b"IEND":
            return None
        offset += 12 + length  # length, type, content, CRC
    return None


def _size_warnings(width: int, height: int) -> tuple[IngestWarning, ...]:
    edge = settings.LOUPE_SMALL_EDGE_PX
    if min(width, height) >= edge:
        return ()
    return (
        IngestWarning(
            "small",
            f"This image is {width} x {height} pixels; images under "
            f"{edge} pixels on the shortest edge will be upscaled for "
            "training.",
        ),
    )


def _too_many_pixels(size: tuple[int, int] | None) -> _Rejection:
    limit = settings.LOUPE_MAX_IMAGE_PIXELS
    what = f"{size[0]} x {size[1]} pixels" if size else "more pixels than allowed"
    return _Rejection(
        "too_many_pixels",
        f"This image has {what}; the limit is {limit / 1_000_000:g} million pixels.",
    )


def corrupt_rejection() -> FileRejected:
    """The rejection of bytes whose header passed but whose pixels do not decode."""
    return FileRejected("corrupt", "This image is damaged or incomplete and cannot be decoded.")


# --- Pass 3: rows in bulk, batch tags, thumbnails after the commit ---------------------------


def _insert(
    project: Project,
    candidates: list[_Candidate],
    *,
    by: AbstractBaseUser,
    tags: Sequence[Tag],
    source: str,
    is_training: bool,
    report: IngestReport,
) -> None:
    rows = [
        Image(
            project=project,
            file=c.stored_name,
            original_name=c.filename,
            sha256=c.sha256,
            format=c.format,
            size_bytes=c.size_bytes,
            width=c.width,
            height=c.height,
            source=source,
            is_training=is_training,
            created_by=by,
        )
        for c in candidates
    ]
    try:
        with transaction.atomic():
            saved, lost = _create_rows(rows)
            if tags and saved:
                add_tags_to_images(
                    project=project, image_ids=[row.pk for row in saved], tags=tags, by=by
                )
            enqueue_thumbnails_after_commit([row.pk for row in saved])
    except BaseException:
        _delete_files(c.stored_name for c in candidates)  # no row points at them
        raise
    by_row = dict(zip((id(row) for row in rows), candidates, strict=True))
    for row in saved:
        c = by_row[id(row)]
        report.accepted.append(Accepted(c.index, c.filename, row.pk, c.width, c.height, c.warnings))
    lost_candidates = [by_row[id(row)] for row in lost]
    _delete_files(c.stored_name for c in lost_candidates)
    existing = dict(
        project.images.training()
        .filter(sha256__in=[c.sha256 for c in lost_candidates])
        .values_list("sha256", "pk")
    )
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
            if not Image.objects.filter(
                project_id=row.project_id, sha256=row.sha256, is_training=True
            ).exists():
                raise  # not the duplicate race: a real fault, do not hide it
            lost.append(row)
        else:
            saved.append(row)
    return saved, lost


def _duplicate_of_stored(candidate: _Candidate, image_id: int | None) -> Rejected:
    which = f"image {image_id}" if image_id else "another image"
    return Rejected(
        candidate.index,
        candidate.filename,
        "duplicate",
        f"This image is already in the project ({which}).",
        image_id,
    )


def _rejected(candidate: _Candidate, rejection: _Rejection) -> Rejected:
    return Rejected(
        candidate.index, candidate.filename, rejection.code, rejection.message, rejection.image_id
    )


def _delete_files(names: Iterable[str]) -> None:
    for name in names:
        if not name:
            continue
        try:
            default_storage.delete(name)
        except OSError:
            logger.warning("Could not delete orphaned upload %s", name, exc_info=True)
