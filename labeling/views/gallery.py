"""Gallery of a project's images. (Being built: filters, paging and bulk actions.)"""

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from labeling.access import access_project


@login_required
def gallery(request: HttpRequest, project_id: int) -> HttpResponse:
    project = access_project(request.user, project_id)
    return TemplateResponse(request, "labeling/gallery.html", {"project": project})
