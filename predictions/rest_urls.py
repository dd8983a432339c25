"""Native REST API routes of predictions, under /api/ (the prediction API is api_urls.py)."""

from django.urls import path

from predictions.rest import keys, quick_test, stored, suggestions

P = "projects/<int:project_id>/"

urlpatterns = [
    path(
        P + "iterations/<str:iteration_id>/predictions/",
        stored.StoredPredictionListApi.as_view(),
        name="api-stored-prediction-list",
    ),
    path(
        P + "predictions/<int:image_id>/promote/",
        stored.PredictionPromoteApi.as_view(),
        name="api-prediction-promote",
    ),
    path(
        P + "predictions/dismiss/",
        stored.PredictionDismissApi.as_view(),
        name="api-prediction-dismiss",
    ),
    path(P + "suggestions/", suggestions.SuggestionListApi.as_view(), name="api-suggestion-list"),
    path(
        P + "suggestions/status/",
        suggestions.SuggestionStatusApi.as_view(),
        name="api-suggestion-status",
    ),
    path(
        P + "suggestions/accept/",
        suggestions.SuggestionAcceptAllApi.as_view(),
        name="api-suggestion-accept-all",
    ),
    path(
        P + "images/<int:image_id>/suggestion/accept/",
        suggestions.SuggestionAcceptApi.as_view(),
        name="api-suggestion-accept",
    ),
    path(P + "quick-test/", quick_test.QuickTestApi.as_view(), name="api-quick-test"),
    path(
        P + "prediction-keys/", keys.PredictionKeyListApi.as_view(), name="api-prediction-key-list"
    ),
    path(
        P + "prediction-keys/<int:key_id>/",
        keys.PredictionKeyDetailApi.as_view(),
        name="api-prediction-key-detail",
    ),
    path(
        P + "prediction-keys/<int:key_id>/rotate/",
        keys.PredictionKeyRotateApi.as_view(),
        name="api-prediction-key-rotate",
    ),
]
