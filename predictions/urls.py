"""HTML routes of predictions (app_name "predictions"), under /projects/<project_id>/."""

from django.urls import path

from predictions import views

app_name = "predictions"

urlpatterns = [
    path("prediction-keys/", views.key_list, name="key-list"),
    path("predictions/", views.prediction_list, name="prediction-list"),
    path("predictions/quick-test/", views.quick_test, name="quick-test"),
    path("predictions/review/", views.prediction_review, name="prediction-review"),
    path("predictions/dismiss/", views.prediction_dismiss, name="prediction-dismiss"),
    path("predictions/suggestions/", views.suggestions_run, name="suggestions-run"),
    path("predictions/suggestions/status/", views.suggestions_status, name="suggestions-status"),
    path("predictions/suggestions/accept/", views.suggestions_accept, name="suggestions-accept"),
    path("predictions/<int:image_id>/save/", views.prediction_promote, name="prediction-promote"),
    path(
        "images/<int:image_id>/suggestion/accept/",
        views.suggestion_accept,
        name="suggestion-accept",
    ),
]
