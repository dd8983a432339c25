"""HTML routes of the labeling app. Each area keeps its routes next to its views."""

from django.urls import path

from labeling.views import gallery, projects, tagging
from labeling.views import upload as upload_views
from labeling.views import boxes as box_views
from labeling.views import datasets as dataset_views

app_name = "labeling"

urlpatterns = [
    path("", projects.project_list, name="project-list"),
    path("projects/new/", projects.project_create, name="project-create"),
    path("projects/<int:project_id>/", gallery.gallery, name="project-detail"),
    path("projects/<int:project_id>/images/bulk/", gallery.image_bulk, name="image-bulk"),
    path("projects/<int:project_id>/upload/", upload_views.image_upload, name="image-upload"),
    path("projects/<int:project_id>/images/<int:image_id>/", tagging.image_tag, name="image-tag"),
    path("projects/<int:project_id>/images/<int:image_id>/tags/", tagging.image_tag_toggle,
         name="image-tag-toggle"),
    path("projects/<int:project_id>/images/<int:image_id>/delete/", tagging.image_delete,
         name="image-delete"),
    path("projects/<int:project_id>/images/<int:image_id>/boxes/", box_views.image_boxes,
         name="image-boxes"),
    path("projects/<int:project_id>/datasets/", dataset_views.datasets, name="datasets"),
    path("projects/<int:project_id>/datasets/imports/<uuid:job_id>/",
         dataset_views.dataset_import_status, name="dataset-import-status"),
    path("projects/<int:project_id>/datasets/export/", dataset_views.dataset_export,
         name="dataset-export"),
]
