"""Native API route of the embedding map, under /api/."""

from django.urls import path

from training.views_map import EmbeddingMapApi

urlpatterns = [
    path("projects/<int:project_id>/map/", EmbeddingMapApi.as_view(), name="api-project-map"),
]
