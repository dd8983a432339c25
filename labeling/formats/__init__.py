"""Dataset formats: read an uploaded archive into plain items, write items into an archive.

Each module knows one format and nothing about the database: `parse(archive)` returns a
`ParsedDataset` (items plus per-item problems) and `render(items, tag_names)` returns the
archive's entries. `labeling.services.datasets` applies the project's rules and writes rows.
"""

from labeling.formats import coco, csv_tags, folders, voc, yolo
from labeling.formats.common import DatasetFormat

FORMATS: dict[str, DatasetFormat] = {
    module.FORMAT.name: module.FORMAT for module in (coco, voc, yolo, folders, csv_tags)
}

__all__ = ["FORMATS", "DatasetFormat"]
