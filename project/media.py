"""/media/<path>: uploaded images and their thumbnails, streamed to members of their project only.

WhiteNoise serves static files, but media are private data: a file is served when it is the file
or the thumbnail of an Image the user may open (through labeling.access, the one permission
funnel: stored predictions only from the reviewer role up), else 404, so file names don't leak
which projects exist. With S3-compatible storage (project/storage_s3.py) the URLs stay these, and
the object is streamed from the bucket in chunks after the same check: the bucket stays private,
no presigned URL leaves the server, and a member removed from the project loses access at once.
Either way the bytes go out through project.streaming, a chunk at a time.
"""

from __future__ import annotations

import mimetypes

from django.contrib.auth.decorators import login_required
from django.core.files.storage import default_storage
from django.db.models import Q
from django.http import FileResponse, HttpRequest
from django.views.decorators.http import require_GET

from labeling.access import media_images
from project.errors import NotFound
from project.storage import streams_from_object_storage
from project.streaming import stream_file

# Stored names are never reused for other content (ingest names files by content hash, thumbnails
# are rewritten only with their image), so a browser may keep them for a while.
MEDIA_MAX_AGE_S = 3600


@require_GET
@login_required
def serve_media(request: HttpRequest, path: str) -> FileResponse:
    # Through the funnel: an annotator's images leave out stored predictions (reviewer and up).
    is_known = media_images(request.user).filter(Q(file=path) | Q(thumbnail=path)).exists()
    if not is_known:
        raise NotFound("This file does not exist or you are not a member of its project.")
    try:
        if streams_from_object_storage(default_storage):
            response = _from_object_storage(path)
        else:
            response = stream_file(default_storage.open(path, "rb"))
    except FileNotFoundError:
        raise NotFound("This file is missing from storage.") from None
    response["Cache-Control"] = f"private, max-age={MEDIA_MAX_AGE_S}"
    return response


def _from_object_storage(path: str) -> FileResponse:
    stream = default_storage.stream(path)
    # The type by name, as FileResponse gives it on local disk (objects keep the same type).
    content_type = mimetypes.guess_type(path)[0] or stream.content_type
    return stream_file(stream, content_type=content_type or "application/octet-stream")
