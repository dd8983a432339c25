"""CSV of image tags, for classification: `labels.csv` with the header `file,tags`.

`file` is the image's path relative to the CSV file; `tags` lists tag names separated by `;`
(empty: untagged). Images in the archive that the CSV does not list are not imported.
"""

from __future__ import annotations

import csv
import io
import posixpath
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
    one_annotation_file,
)

ANNOTATION_FILE = "labels.csv"
SEPARATOR = ";"


def parse(archive: SafeArchive) -> ParsedDataset:
    path, problems = one_annotation_file(archive, ".csv", (ANNOTATION_FILE,), "CSV")
    if path is None:
        return ParsedDataset([], [], problems)
    try:
        text = archive.read(path).decode("utf-8-sig")
    except ArchiveError as err:
        return ParsedDataset([], [], [Problem(path, err.code, err.message)])
    except UnicodeDecodeError:
        return ParsedDataset([], [], [Problem(path, "malformed", f"“{path}” is not UTF-8.")])
    try:
        return _parse_rows(archive, path, text, problems)
    except csv.Error as err:
        # A field over csv's limit (131,072 characters) or a stray quote: name the file.
        reason = (
            f"a field is longer than {csv.field_size_limit():,} characters"
            if "field limit" in str(err)
            else str(err)
        )
        return ParsedDataset(
            [], [], [Problem(path, "malformed", f"“{path}” is not a readable CSV file: {reason}.")]
        )


def _parse_rows(
    archive: SafeArchive, path: str, text: str, problems: list[Problem]
) -> ParsedDataset:
    rows = csv.reader(io.StringIO(text))
    header = [cell.strip().lower() for cell in next(rows, [])]
    if header != ["file", "tags"]:
        return ParsedDataset(
            [],
            [],
            [Problem(path, "malformed", f"“{path}” must start with the header row “file,tags”.")],
        )
    base = posixpath.dirname(path)
    items: list[DatasetItem] = []
    seen: set[str] = set()
    tag_names: dict[str, None] = {}
    for line, row in enumerate(rows, start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != 2 or not row[0].strip():
            problems.append(
                Problem(
                    f"{path} line {line}",
                    "malformed",
                    f"Line {line} of “{path}” needs two columns: file and tags.",
                )
            )
            continue
        name = row[0].strip()
        member = archive.resolve(name, base)
        if member is None:
            problems.append(
                Problem(
                    name,
                    "missing_image",
                    f"Line {line} names “{name}”, which is not in the archive.",
                )
            )
            continue
        if member in seen:
            problems.append(Problem(name, "malformed", f"Line {line} lists “{name}” again."))
            continue
        seen.add(member)
        tags = list(dict.fromkeys(t.strip() for t in row[1].split(SEPARATOR) if t.strip()))
        tag_names.update(dict.fromkeys(tags))
        items.append(DatasetItem(path=member, tags=tags))
    return ParsedDataset(items, list(tag_names), problems)


def render(items: Sequence[ExportItem], tag_names: Sequence[str]) -> list[Entry]:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["file", "tags"])
    for item in items:
        writer.writerow([f"images/{item.name}", SEPARATOR.join(item.tags)])
    entries: list[Entry] = [(ANNOTATION_FILE, out.getvalue().encode())]
    return entries + [(f"images/{item.name}", item) for item in items]


FORMAT = DatasetFormat(
    name="csv",
    label="CSV: file and tags columns (classification)",
    is_detection=False,
    parse=parse,
    render=render,
    names_images=True,
)
