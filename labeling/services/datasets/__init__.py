"""Dataset import and export: a project's images and labels in and out of a zip archive.

`imports` reads an archive into the project (all or nothing), `labels_only` labels stored images
from an annotation file alone; both check with `import_checks` and write with `import_writes`.
`exports` writes the project's images and labels into one, `common` holds the format lookup and
Loupe's manifest both read. The background jobs around them live in
`labeling.services.import_jobs` and `labeling.services.export_jobs`.
"""

from labeling.services.datasets.common import dataset_format, formats_for
from labeling.services.datasets.exports import (
    ExportReport,
    ExportSelection,
    MissingImageFile,
    export_dataset,
)
from labeling.services.datasets.import_writes import INGEST_BATCH, ImportReport
from labeling.services.datasets.imports import import_dataset
from labeling.services.datasets.labels_only import import_labels

__all__ = [
    "INGEST_BATCH",
    "ExportReport",
    "ExportSelection",
    "ImportReport",
    "MissingImageFile",
    "dataset_format",
    "export_dataset",
    "formats_for",
    "import_dataset",
    "import_labels",
]
