"""REST API routes of model exports under /api/ (training/api_exports.py)."""

from django.urls import path

from training import api_exports

E = "projects/<int:project_id>/iterations/<str:iteration_id>/exports/"

urlpatterns = [
    path(E, api_exports.ExportListApi.as_view(), name="api-model-export-list"),
    path(
        E + "<str:model_export_id>/download/",
        api_exports.ExportDownloadApi.as_view(),
        name="api-model-export-download",
    ),
]
