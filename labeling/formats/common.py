"""What every dataset format shares: the safe archive reader, items, problems, names.

An uploaded archive is untrusted. `SafeArchive` reports, member by member, every path that
would escape the archive (`../`, absolute paths, drive letters) and every symlink entry, and
refuses archives whose declared contents are too large or too many; members are only ever read
into memory (never extracted to disk), each with a byte limit.
"""

from __future__ import annotations

import posixpath
import re
import stat
import zipfile
import zlib
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import IO

from project.errors import ValidationFailed

# What reading a damaged member raises: BadZipFile (CRC, header), RuntimeError (encrypted),
# zlib.error (a corrupt deflate stream), EOFError (truncated), OSError, ValueError.
MEMBER_READ_ERRORS = (zipfile.BadZipFile, RuntimeError, zlib.error, OSError, EOFError, ValueError)
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif"})
# Limits on what an uploaded archive may declare, checked before anything is read: far above a
# real labeling dataset (tens of thousands of images of a few MB), far below a zip bomb.
MAX_ARCHIVE_MEMBERS = 100_000
MAX_ARCHIVE_BYTES = 20 * 1024**3
MAX_ANNOTATION_BYTES = 256 * 1024**2
_DRIVE = re.compile(r"^[A-Za-z]:")
_JUNK = ("__MACOSX/",)


class ArchiveError(ValidationFailed):
    """The archive as a whole cannot be read (not a zip, too large)."""

    code = "bad_archive"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one item of an import: a file, an annotation, an image."""

    item: str
    code: str
    message: str


@dataclass(frozen=True)
class BoxItem:
    """A box with its tag name, in fractions of the image (Custom Vision's convention)."""

    tag: str
    left: float
    top: float
    width: float
    height: float


@dataclass
class DatasetItem:
    """One image of an imported dataset and its labels."""

    path: str  # the member of the archive holding the image
    tags: list[str] = field(default_factory=list)
    boxes: list[BoxItem] = field(default_factory=list)
    # The size the annotation file says the image has (COCO, VOC); checked against the image.
    width_px: int | None = None
    height_px: int | None = None
    # Detection: a reviewer marked it "No objects" (from a Loupe export's manifest).
    negative: bool = False
    # The annotation file speaks for this image (a COCO "images" entry, a VOC file, a YOLO
    # label file): with no boxes it says "no objects here", not "not looked at yet".
    annotated: bool = False

    @property
    def name(self) -> str:
        return posixpath.basename(self.path)


@dataclass
class ParsedDataset:
    items: list[DatasetItem]
    tag_names: list[str]  # in the annotation file's order
    problems: list[Problem]


@dataclass(frozen=True)
class ExportItem:
    """One image of an export: its unique file name, size, labels and a way to open its bytes.

    `open` returns a binary stream the caller closes: the exporter copies it into the archive
    in chunks, so no image is ever held whole in memory.
    """

    name: str
    width_px: int
    height_px: int
    tags: tuple[str, ...]
    boxes: tuple[BoxItem, ...]
    open: Callable[[], IO[bytes]]
    negative: bool = False  # detection: marked "No objects"


# An export archive entry: a path and either the bytes of an annotation file or an image.
Entry = tuple[str, bytes | ExportItem]


@dataclass(frozen=True)
class DatasetFormat:
    name: str
    label: str
    is_detection: bool  # True: boxes (COCO, VOC, YOLO); False: image tags (folders, CSV)
    parse: Callable[[SafeArchive], ParsedDataset]
    render: Callable[[Sequence[ExportItem], Sequence[str]], list[Entry]]
    # The annotation file names each image file (through `SafeArchive.resolve`), so it can
    # label images already stored elsewhere (LabelsOnlyArchive); YOLO and folders cannot.
    names_images: bool = False


class SafeArchive:
    """A zip archive whose members can be looked up and read, never extracted.

    `problems` lists every unsafe member; they are left out of `paths`.
    """

    def __init__(self, fileobj: IO[bytes]) -> None:
        try:
            self._zip = zipfile.ZipFile(fileobj)
            infos = self._zip.infolist()
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError):
            raise ArchiveError("The upload is not a readable zip archive.") from None
        if len(infos) > MAX_ARCHIVE_MEMBERS:
            raise ArchiveError(
                f"The archive holds {len(infos)} entries; the limit is {MAX_ARCHIVE_MEMBERS}."
            )
        if sum(info.file_size for info in infos) > MAX_ARCHIVE_BYTES:
            raise ArchiveError(
                f"The archive unpacks to more than {MAX_ARCHIVE_BYTES // 1024**3} GB."
            )
        self.problems: list[Problem] = []
        self._members: dict[str, zipfile.ZipInfo] = {}
        self._by_basename: dict[str, list[str]] = defaultdict(list)
        for info in infos:
            path = self._check(info)
            if path is not None:
                self._members[path] = info
                self._by_basename[posixpath.basename(path)].append(path)

    def _check(self, info: zipfile.ZipInfo) -> str | None:
        """The member's normalized path, or None (and a problem if it is unsafe)."""
        raw = info.filename
        name = raw.replace("\\", "/")
        if name.startswith("/") or _DRIVE.match(name):
            self.problems.append(
                Problem(
                    raw,
                    "unsafe_path",
                    f"“{raw}” is an absolute path; archive entries must be relative.",
                )
            )
            return None
        if ".." in name.split("/"):
            self.problems.append(
                Problem(raw, "unsafe_path", f"“{raw}” points outside the archive.")
            )
            return None
        if stat.S_ISLNK(info.external_attr >> 16):
            self.problems.append(
                Problem(
                    raw,
                    "symlink",
                    f"“{raw}” is a symbolic link; the archive must hold the files themselves.",
                )
            )
            return None
        if info.is_dir() or name.startswith(_JUNK):
            return None
        base = posixpath.basename(name)
        if base.startswith("._") or base == ".DS_Store":
            return None
        return posixpath.normpath(name)

    @property
    def paths(self) -> list[str]:
        return sorted(self._members)

    def image_paths(self) -> list[str]:
        return [p for p in self.paths if posixpath.splitext(p)[1].lower() in IMAGE_EXTENSIONS]

    def with_suffix(self, *suffixes: str) -> list[str]:
        return [p for p in self.paths if p.lower().endswith(suffixes)]

    def size(self, path: str) -> int:
        return self._members[path].file_size

    def crc_and_size(self, path: str) -> tuple[int, int]:
        info = self._members[path]
        return info.CRC, info.file_size

    def open(self, path: str) -> IO[bytes]:
        """A stream of the member's bytes (the caller closes it)."""
        try:
            return self._zip.open(self._members[path])
        except MEMBER_READ_ERRORS as err:
            raise ArchiveError(f"“{path}” cannot be read from the archive ({err}).") from None

    def read(self, path: str, max_bytes: int = MAX_ANNOTATION_BYTES) -> bytes:
        """The member's bytes; ArchiveError if it holds more than `max_bytes`."""
        try:
            with self._zip.open(self._members[path]) as member:
                data = member.read(max_bytes + 1)
        except MEMBER_READ_ERRORS as err:
            raise ArchiveError(f"“{path}” cannot be read from the archive ({err}).") from None
        if len(data) > max_bytes:
            raise ArchiveError(f"“{path}” is larger than {max_bytes // 1024**2} MB.")
        return data

    def resolve(self, name: str, base_dir: str = "") -> str | None:
        """The member an annotation file means by `name`, or None.

        Tried in order: relative to the annotation file's folder, relative to the archive root,
        then a file of that name anywhere in the archive if exactly one exists.
        """
        name = name.replace("\\", "/")
        for candidate in (posixpath.join(base_dir, name), name):
            path = posixpath.normpath(candidate)
            if path in self._members:
                return path
        matches = self._by_basename.get(posixpath.basename(name), [])
        return matches[0] if len(matches) == 1 else None

    def close(self) -> None:
        self._zip.close()


class LabelsOnlyArchive(SafeArchive):
    """An archive of annotation files alone, for images stored already (matched by file name).

    Every image an annotation file names resolves to its bare file name, whether or not such an
    image exists: the caller matches names to stored images and reports each one it cannot
    find. The archive itself holds no images.
    """

    def resolve(self, name: str, base_dir: str = "") -> str | None:
        return posixpath.basename(name.replace("\\", "/")) or None

    def image_paths(self) -> list[str]:
        return []


def format_number(value: float, places: int) -> str:
    """`value` with at most `places` decimals and no trailing zeros: 12.5, 3, 0.125."""
    text = f"{value:.{places}f}".rstrip("0").rstrip(".")
    return "0" if text in {"-0", ""} else text


def pixels(value: float, places: int = 3) -> float:
    """A pixel coordinate rounded so that export → import → export reproduces it exactly."""
    return round(value, places) + 0.0


def one_annotation_file(
    archive: SafeArchive, suffix: str, preferred: Sequence[str], what: str
) -> tuple[str | None, list[Problem]]:
    """The archive's single annotation file ending in `suffix`, or a problem saying why not."""
    found = archive.with_suffix(suffix)
    if not found:
        return None, [
            Problem("archive", "no_annotations", f"The archive has no {what} file (*{suffix}).")
        ]
    if len(found) == 1:
        return found[0], []
    for name in preferred:
        matches = [p for p in found if posixpath.basename(p) == name]
        if len(matches) == 1:
            return matches[0], []
    listed = ", ".join(found[:5])
    return None, [
        Problem(
            "archive",
            "ambiguous_annotations",
            f"The archive has several {what} files ({listed}); keep one.",
        )
    ]


def unique_names(names: Sequence[str], ids: Sequence[int]) -> list[str]:
    """Export file names: each image's own name, made unique by stem (YOLO pairs files by it).

    A clash gets the image id added (`cat-17.jpg`), so names stay stable across exports.
    """
    result: list[str] = []
    used: set[str] = set()
    for name, pk in zip(names, ids, strict=True):
        base = posixpath.basename(name.replace("\\", "/")).strip() or f"image-{pk}.png"
        stem, ext = posixpath.splitext(base)
        if stem.lower() in used:
            stem = f"{stem}-{pk}"
        used.add(stem.lower())
        result.append(stem + ext)
    return result
