"""Native REST API routes of predictions, under /api/ (the prediction API is api_urls.py)."""

from django.urls import path

from predictions import rest

P = "projects/<int:project_id>/"

urlpatterns = [
    path(
        P + "iterations/<str:iteration_id>/predictions/",
        rest.StoredPredictionListApi.as_view(),
        name="api-stored-prediction-list",
    ),
    path(
        P + "predictions/<int:image_id>/promote/",
        rest.PredictionPromoteApi.as_view(),
        name="api-prediction-promote",
    ),
    path(
        P + "predictions/dismiss/",
        rest.PredictionDismissApi.as_view(),
        name="api-prediction-dismiss",
    ),
    path(P + "suggestions/", rest.SuggestionListApi.as_view(), name="api-suggestion-list"),
    path(
        P + "suggestions/status/",
        rest.SuggestionStatusApi.as_view(),
        name="api-suggestion-status",
    ),
    path(
        P + "suggestions/accept/",
        rest.SuggestionAcceptAllApi.as_view(),
        name="api-suggestion-accept-all",
    ),
    path(
        P + "images/<int:image_id>/suggestion/accept/",
        rest.SuggestionAcceptApi.as_view(),
        name="api-suggestion-accept",
    ),
    path(P + "quick-test/", rest.QuickTestApi.as_view(), name="api-quick-test"),
    path(
        P + "prediction-keys/", rest.PredictionKeyListApi.as_view(), name="api-prediction-key-list"
    ),
    path(
        P + "prediction-keys/<int:key_id>/",
        rest.PredictionKeyDetailApi.as_view(),
        name="api-prediction-key-detail",
    ),
    path(
        P + "prediction-keys/<int:key_id>/rotate/",
        rest.PredictionKeyRotateApi.as_view(),
        name="api-prediction-key-rotate",
    ),
]
