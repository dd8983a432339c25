"""HTML routes of the labeling app. Each area keeps its routes next to its views."""

from django.urls import path

from labeling.views import gallery, projects

app_name = "labeling"

urlpatterns = [
    path("", projects.project_list, name="project-list"),
    path("projects/new/", projects.project_create, name="project-create"),
    path("projects/<int:project_id>/", gallery.gallery, name="project-detail"),
]
