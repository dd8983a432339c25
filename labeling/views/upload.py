"""The upload page: drop or pick many images, optional batch tags, a per-file report.

With JavaScript, static/js/upload-queue.js sends the files in chunks to the upload API and
draws the progress bar and the report; without it, the form posts here and the same report is
rendered server-side.

Admins can add a tag from the page (the same create_tag service and rules as Settings): the
small form next to the batch tags posts here with `new_tag`; htmx swaps in the tag list with
the new tag chosen, a plain form is redirected back.
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.views.decorators.http import require_http_methods

from labeling.access import access_project, has_role
from labeling.models import Project, Role, Tag
from labeling.services.ingest import ingest_images
from labeling.services.projects import create_tag
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


class NewTagForm(forms.Form):
    new_tag = forms.CharField(max_length=100, label="New tag")


@require_http_methods(["GET", "POST"])
@login_required
def image_upload(request: HttpRequest, project_id: int) -> HttpResponse:
    project = access_project(request.user, project_id, min_role=Role.ANNOTATOR)
    if request.method == "POST" and "new_tag" in request.POST:
        return _add_tag(request, project)
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
    context = _context(request, project, form, report=report)
    return TemplateResponse(
        request, "labeling/upload.html", context, status=422 if form.errors else 200
    )


def _add_tag(request: HttpRequest, project: Project) -> HttpResponse:
    """Create a tag from the upload page, keeping the batch tags already chosen (htmx sends
    them along) and choosing the new one too (the only one in a multiclass project)."""
    chosen = UploadTagsForm(request.POST, project=project)
    kept = chosen.chosen_tag_ids() if chosen.is_valid() else []
    tag_form = NewTagForm(request.POST)
    tag: Tag | None = None
    status = 422
    if tag_form.is_valid():
        try:
            tag = create_tag(
                project=project, name=tag_form.cleaned_data["new_tag"], by=request.user
            )
        except LoupeError as err:
            tag_form.add_error("new_tag", err.message)
            status = err.http_status  # 403 for a member below admin
    if tag is not None and not request.htmx:
        messages.success(request, f"Tag “{tag.name}” added.")
        return redirect("labeling:image-upload", project.pk)
    if tag is not None:
        kept = [tag.pk] if project.is_multiclass else [*kept, tag.pk]
        tag_form = NewTagForm()
    initial = {"tag_ids": (kept[0] if kept else None) if project.is_multiclass else kept}
    form = UploadTagsForm(initial=initial, project=project)
    context = _context(request, project, form, tag_form=tag_form)
    name = "labeling/upload.html" + ("#upload-tags" if request.htmx else "")
    return TemplateResponse(request, name, context, status=status if tag_form.errors else 200)


def _context(
    request: HttpRequest,
    project: Project,
    form: UploadTagsForm,
    *,
    report: object = None,
    tag_form: NewTagForm | None = None,
) -> dict[str, object]:
    return {
        "project": project,
        "form": form,
        "report": report,
        # Tags are created by admins only (labeling.services.projects.create_tag checks it too).
        "tag_form": (tag_form or NewTagForm())
        if has_role(request.user, project, Role.ADMIN)
        else None,
        "chunk_files": CHUNK_FILES,
        "chunk_bytes": CHUNK_BYTES,
    }
