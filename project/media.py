"""/media/<path>: uploaded images and their thumbnails, streamed to members of their project only.

WhiteNoise serves static files, but media are private data: a file is served when it is the file
or the thumbnail of an Image the user may open (through labeling.access, the one permission
funnel: stored predictions only from the reviewer role up), else 404, so file names don't leak
which projects exist. With S3-compatible storage the storage's own URLs are used instead and this
view is not reached.
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.files.storage import default_storage
from django.db.models import Q
from django.http import FileResponse, HttpRequest
from django.views.decorators.http import require_GET

from labeling.access import media_images
from project.errors import NotFound

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
        handle = default_storage.open(path, "rb")
    except FileNotFoundError:
        raise NotFound("This file is missing from storage.") from None
    response = FileResponse(handle)
    response["Cache-Control"] = f"private, max-age={MEDIA_MAX_AGE_S}"
    return response
