"""HTML routes of the labeling app. Each area keeps its routes next to its views."""

from django.urls import path

from labeling.views import api_keys as api_key_views
from labeling.views import boxes as box_views
from labeling.views import customvision_import as cv_import_views
from labeling.views import datasets as dataset_views
from labeling.views import gallery, projects, tagging
from labeling.views import settings as settings_views
from labeling.views import upload as upload_views

app_name = "labeling"

urlpatterns = [
    path("", projects.project_list, name="project-list"),
    path("account/api-keys/", api_key_views.api_keys, name="api-keys"),
    path("projects/new/", projects.project_create, name="project-create"),
    path(
        "projects/import/customvision/",
        cv_import_views.customvision_import,
        name="customvision-import",
    ),
    path(
        "projects/import/customvision/<str:job_id>/",
        cv_import_views.customvision_import_status,
        name="customvision-import-status",
    ),
    path("projects/<int:project_id>/", gallery.gallery, name="project-detail"),
    path("projects/<int:project_id>/delete/", projects.project_delete, name="project-delete"),
    path(
        "projects/<int:project_id>/settings/",
        settings_views.project_settings,
        name="project-settings",
    ),
    path(
        "projects/<int:project_id>/settings/project/",
        settings_views.project_update,
        name="project-update",
    ),
    path(
        "projects/<int:project_id>/settings/tags/",
        settings_views.tag_create,
        name="project-tag-create",
    ),
    path(
        "projects/<int:project_id>/settings/tags/<int:tag_id>/",
        settings_views.tag_update,
        name="project-tag-update",
    ),
    path(
        "projects/<int:project_id>/settings/tags/<int:tag_id>/delete/",
        settings_views.tag_delete,
        name="project-tag-delete",
    ),
    path(
        "projects/<int:project_id>/settings/members/",
        settings_views.member_add,
        name="project-member-add",
    ),
    path(
        "projects/<int:project_id>/settings/members/<int:membership_id>/",
        settings_views.member_update,
        name="project-member-update",
    ),
    path(
        "projects/<int:project_id>/settings/members/<int:membership_id>/remove/",
        settings_views.member_remove,
        name="project-member-remove",
    ),
    path(
        "projects/<int:project_id>/settings/token/",
        settings_views.api_token_regenerate,
        name="api-token-regenerate",
    ),
    path("projects/<int:project_id>/images/bulk/", gallery.image_bulk, name="image-bulk"),
    path(
        "projects/<int:project_id>/filters/",
        gallery.saved_filter_create,
        name="saved-filter-create",
    ),
    path(
        "projects/<int:project_id>/filters/<int:saved_filter_id>/delete/",
        gallery.saved_filter_delete,
        name="saved-filter-delete",
    ),
    path("projects/<int:project_id>/upload/", upload_views.image_upload, name="image-upload"),
    path("projects/<int:project_id>/images/<int:image_id>/", tagging.image_tag, name="image-tag"),
    path(
        "projects/<int:project_id>/images/<int:image_id>/tags/",
        tagging.image_tag_toggle,
        name="image-tag-toggle",
    ),
    path(
        "projects/<int:project_id>/images/<int:image_id>/tags/undo/",
        tagging.image_tag_undo,
        name="image-tag-undo",
    ),
    path(
        "projects/<int:project_id>/images/<int:image_id>/delete/",
        tagging.image_delete,
        name="image-delete",
    ),
    path(
        "projects/<int:project_id>/images/<int:image_id>/boxes/",
        box_views.image_boxes,
        name="image-boxes",
    ),
    path("projects/<int:project_id>/datasets/", dataset_views.datasets, name="datasets"),
    path(
        "projects/<int:project_id>/datasets/imports/<uuid:job_id>/",
        dataset_views.dataset_import_status,
        name="dataset-import-status",
    ),
    path(
        "projects/<int:project_id>/datasets/exports/",
        dataset_views.dataset_export,
        name="dataset-export",
    ),
    path(
        "projects/<int:project_id>/datasets/exports/<uuid:export_id>/",
        dataset_views.dataset_export_status,
        name="dataset-export-status",
    ),
    path(
        "projects/<int:project_id>/datasets/exports/<uuid:export_id>/download/",
        dataset_views.dataset_export_download,
        name="dataset-export-download",
    ),
]
