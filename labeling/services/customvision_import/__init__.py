"""Import a whole Custom Vision project through Custom Vision's own Training API (v3.3).

Given an endpoint, a training key and a project id, a new Loupe project gets the source's kind
(classification type or object detection), domain (compact or not; a domain Loupe has no
model for, such as Food, becomes General of the same size, said in the job's notes), tags
(Negative kept as Negative) and every image, tagged and untagged, with its tags or boxes.
Images go through the same ingest as uploads (type by content, size, pixel bombs), labels
through the editors' services; an image it cannot copy is refused, with its reason, and the
rest are copied.

Invariant: job `<job_id>` is the folder `cvimports/<job_id>/` of the default storage holding
`status.json`; the id is a hash of the endpoint and the source project id, so starting the
same import again finds the same job and the same target project. The status records, per
source image id, the Loupe image it became (`copied`), and is written after every batch:
an import interrupted (network, killed worker, Ctrl-C) and started again skips what it copied
and continues, and an image is never stored twice (the project's sha256 uniqueness answers a
re-sent one with the image already stored, which is then mapped, not copied again).

The training key is never written to storage: it travels in the task's message only. So a job
whose worker vanished cannot be re-queued by a sweep; `sweep_customvision_imports` fails it
with a reason after its lease runs out, and starting it again (page, API or command) resumes.
"""

from labeling.services.customvision_import.jobs import (
    get_customvision_import,
    job_id_for,
    open_customvision_import,
    recent_customvision_imports,
    run_customvision_import,
    start_customvision_import,
    sweep_customvision_imports,
)
from labeling.services.customvision_import.status import (
    DONE,
    FAILED,
    QUEUED,
    RUNNING,
    CvImportJob,
    SourceError,
)

__all__ = [
    "DONE",
    "FAILED",
    "QUEUED",
    "RUNNING",
    "CvImportJob",
    "SourceError",
    "get_customvision_import",
    "job_id_for",
    "open_customvision_import",
    "recent_customvision_imports",
    "run_customvision_import",
    "start_customvision_import",
    "sweep_customvision_imports",
]
