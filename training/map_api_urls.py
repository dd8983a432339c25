"""Native API routes of the embedding map, under /api/."""

from django.urls import path

from training.api.embedding_map import EmbeddingMapRefreshApi
from training.views_map import EmbeddingMapApi

urlpatterns = [
    path("projects/<int:project_id>/map/", EmbeddingMapApi.as_view(), name="api-project-map"),
    path(
        "projects/<int:project_id>/map/refresh/",
        EmbeddingMapRefreshApi.as_view(),
        name="api-project-map-refresh",
    ),
]
