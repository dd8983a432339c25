"""Prediction API routes (mounted at /api/predict/). No trailing slash: Custom Vision clients
never send one."""

from django.urls import path

from predictions import api

urlpatterns = [
    path(
        "<int:project_id>/classify/iterations/<str:publish_name>/image",
        api.classify_image,
        name="api-predict-classify",
    ),
    path(
        "<int:project_id>/classify/iterations/<str:publish_name>/image/nostore",
        api.classify_image_nostore,
        name="api-predict-classify-nostore",
    ),
    path(
        "<int:project_id>/detect/iterations/<str:publish_name>/image",
        api.detect_image,
        name="api-predict-detect",
    ),
    path(
        "<int:project_id>/detect/iterations/<str:publish_name>/image/nostore",
        api.detect_image_nostore,
        name="api-predict-detect-nostore",
    ),
]
