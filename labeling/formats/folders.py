"""Folders per tag, for classification: `<tag>/<image>`; images at the archive root are untagged.

An image's tag is the name of the folder it sits in (`train/cat/1.jpg` is a cat), so a dataset
zipped with its own top folder imports the same. The same file in several tag folders is one
image with several tags (multilabel). Export writes one copy per tag.
"""

from __future__ import annotations

import hashlib
import posixpath
from collections import defaultdict
from collections.abc import Sequence

from labeling.formats.common import (
    ArchiveError,
    DatasetFormat,
    DatasetItem,
    Entry,
    ExportItem,
    ParsedDataset,
    Problem,
    SafeArchive,
)


def parse(archive: SafeArchive) -> ParsedDataset:
    paths = archive.image_paths()
    if not paths:
        return ParsedDataset(
            [], [], [Problem("archive", "no_images", "The archive holds no images.")]
        )
    problems: list[Problem] = []
    items: list[DatasetItem] = []
    tag_names: dict[str, None] = {}
    for group in _same_content(archive, paths, problems):
        tags = [posixpath.basename(posixpath.dirname(p)) for p in group]
        tags = [t for t in dict.fromkeys(tags) if t]
        tag_names.update(dict.fromkeys(tags))
        items.append(DatasetItem(path=group[0], tags=tags))
    return ParsedDataset(items, list(tag_names), problems)


def _same_content(
    archive: SafeArchive, paths: list[str], problems: list[Problem]
) -> list[list[str]]:
    """The image paths grouped by identical content, in path order.

    The zip's CRC-32 and size find the candidates without reading anything; SHA-256 confirms.
    """
    by_crc: dict[tuple[int, int], list[str]] = defaultdict(list)
    for path in paths:
        by_crc[archive.crc_and_size(path)].append(path)
    groups: list[list[str]] = []
    for candidates in by_crc.values():
        if len(candidates) == 1:
            groups.append(candidates)
            continue
        by_sha: dict[str, list[str]] = defaultdict(list)
        for path in candidates:
            try:
                by_sha[hashlib.sha256(archive.read(path)).hexdigest()].append(path)
            except ArchiveError as err:
                problems.append(Problem(path, err.code, err.message))
        groups.extend(by_sha.values())
    return sorted(groups, key=lambda group: group[0])


def folder_name(tag: str) -> str:
    """A tag name as a single safe path component."""
    name = tag.replace("/", "_").replace("\\", "_").strip()
    return f"_{name}" if name in {"", ".", ".."} else name


def render(items: Sequence[ExportItem], tag_names: Sequence[str]) -> list[Entry]:
    entries: list[Entry] = []
    for item in items:
        if not item.tags:
            entries.append((item.name, item))
        entries += [(f"{folder_name(tag)}/{item.name}", item) for tag in item.tags]
    return entries


FORMAT = DatasetFormat(
    name="folders",
    label="Folders per tag (classification)",
    is_detection=False,
    parse=parse,
    render=render,
)
