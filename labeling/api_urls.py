"""REST API routes (DRF) under /api/."""

from django.urls import path

from labeling.api import customvision_import as cv_import_api
from labeling.api import exports as export_api
from labeling.api import images as image_api
from labeling.api import jobs as job_api
from labeling.api import projects as project_api
from labeling.api import regions as region_api
from labeling.api import saved_filters as saved_filter_api
from labeling.api import upload as upload_api
from project.auth import TokenLoginApi

P = "projects/<int:project_id>/"

urlpatterns = [
    path("auth/token/", TokenLoginApi.as_view(), name="api-token"),
    path("projects/", project_api.ProjectListApi.as_view(), name="api-project-list"),
    path(
        "customvision-imports/",
        cv_import_api.CvImportListApi.as_view(),
        name="api-customvision-import-list",
    ),
    path(
        "customvision-imports/<str:job_id>/",
        cv_import_api.CvImportDetailApi.as_view(),
        name="api-customvision-import-detail",
    ),
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
    path(
        P + "images/<int:image_id>/regions/",
        region_api.ImageRegionListApi.as_view(),
        name="api-image-regions",
    ),
    path(P + "regions/", region_api.RegionBatchApi.as_view(), name="api-region-batch"),
    path(
        P + "regions/<int:region_id>/",
        region_api.RegionDetailApi.as_view(),
        name="api-region-detail",
    ),
    path(P + "imports/", job_api.ImportStartApi.as_view(), name="api-import-list"),
    path(P + "imports/<uuid:job_id>/", job_api.ImportDetailApi.as_view(), name="api-import-detail"),
    path(
        P + "saved-filters/",
        saved_filter_api.SavedFilterListApi.as_view(),
        name="api-saved-filter-list",
    ),
    path(
        P + "saved-filters/<int:saved_filter_id>/",
        saved_filter_api.SavedFilterDetailApi.as_view(),
        name="api-saved-filter-detail",
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
