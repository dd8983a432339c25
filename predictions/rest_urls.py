"""Native REST API routes of predictions, under /api/ (the prediction API is api_urls.py)."""

from django.urls import path

from predictions.rest import StoredPredictionListApi

urlpatterns = [
    path(
        "projects/<int:project_id>/iterations/<str:iteration_id>/predictions/",
        StoredPredictionListApi.as_view(),
        name="api-stored-prediction-list",
    ),
]
