"""REST API routes (DRF) under /api/."""

from django.urls import path

from labeling.api import exports as export_api
from labeling.api import images as image_api
from labeling.api import projects as project_api
from labeling.api import upload as upload_api
from project.auth import TokenLoginApi

P = "projects/<int:project_id>/"

urlpatterns = [
    path("auth/token/", TokenLoginApi.as_view(), name="api-token"),
    path("projects/", project_api.ProjectListApi.as_view(), name="api-project-list"),
    path(P, project_api.ProjectDetailApi.as_view(), name="api-project-detail"),
    path(P + "tags/", project_api.TagListApi.as_view(), name="api-tag-list"),
    path(P + "tags/<int:tag_id>/", project_api.TagDetailApi.as_view(), name="api-tag-detail"),
    path(P + "members/", project_api.MemberListApi.as_view(), name="api-member-list"),
    path(
        P + "members/<int:membership_id>/",
        project_api.MemberDetailApi.as_view(),
        name="api-member-detail",
    ),
    path(P + "images/", image_api.ImageListApi.as_view(), name="api-image-list"),
    path(P + "images/bulk/", image_api.ImageBulkApi.as_view(), name="api-image-bulk"),
    path(P + "images/upload/", upload_api.UploadImagesApi.as_view(), name="api-image-upload"),
    path(P + "images/<int:image_id>/", image_api.ImageDetailApi.as_view(), name="api-image-detail"),
    path(
        P + "images/<int:image_id>/tags/", image_api.ImageTagsApi.as_view(), name="api-image-tags"
    ),
    path(P + "exports/", export_api.ExportListApi.as_view(), name="api-export-list"),
    path(
        P + "exports/<uuid:export_id>/",
        export_api.ExportDetailApi.as_view(),
        name="api-export-detail",
    ),
    path(
        P + "exports/<uuid:export_id>/download/",
        export_api.ExportDownloadApi.as_view(),
        name="api-export-download",
    ),
]
