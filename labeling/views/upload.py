"""The upload page: drop or pick many images, optional batch tags, a per-file report.

With JavaScript, static/js/upload-queue.js sends the files in chunks to the upload API and
draws the progress bar and the report; without it, the form posts here and the same report is
rendered server-side.
"""

from __future__ import annotations

from django import forms
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.views.decorators.http import require_http_methods

from labeling.access import access_project
from labeling.models import Project, Role
from labeling.services.ingest import ingest_images
from project.errors import LoupeError

# Files per request the page's script sends: 25 keeps each request near a second on a busy
# 2-core host, so the progress bar moves steadily and one failed request costs little.
CHUNK_FILES = 25
# ... and at most this many bytes, so Django keeps the request in memory (8 MB setting).
CHUNK_BYTES = 8 * 1000 * 1000


class UploadTagsForm(forms.Form):
    """The batch tags: checkboxes, or radio buttons with "no tag" in a multiclass project."""

    def __init__(self, *args: object, project: Project, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        tags = project.tags.all()
        if project.is_detection:
            return  # boxes are drawn per image; a batch tag means nothing here
        if project.is_multiclass:
            self.fields["tag_ids"] = forms.ModelChoiceField(
                queryset=tags,
                required=False,
                blank=True,
                empty_label="No tag",
                widget=forms.RadioSelect,
            )
        else:
            self.fields["tag_ids"] = forms.ModelMultipleChoiceField(
                queryset=tags, required=False, widget=forms.CheckboxSelectMultiple
            )

    def chosen_tag_ids(self) -> list[int]:
        chosen = self.cleaned_data.get("tag_ids")
        if not chosen:
            return []
        return [chosen.pk] if hasattr(chosen, "pk") else [tag.pk for tag in chosen]


@require_http_methods(["GET", "POST"])
@login_required
def image_upload(request: HttpRequest, project_id: int) -> HttpResponse:
    project = access_project(request.user, project_id, min_role=Role.ANNOTATOR)
    form = UploadTagsForm(request.POST if request.method == "POST" else None, project=project)
    report = None
    if request.method == "POST" and form.is_valid():
        try:
            report = ingest_images(
                project=project,
                files=request.FILES.getlist("files"),
                by=request.user,
                tag_ids=form.chosen_tag_ids(),
            )
        except LoupeError as err:
            form.add_error(None, err.message)
    context = {
        "project": project,
        "form": form,
        "report": report,
        "chunk_files": CHUNK_FILES,
        "chunk_bytes": CHUNK_BYTES,
    }
    return TemplateResponse(
        request, "labeling/upload.html", context, status=422 if form.errors else 200
    )
