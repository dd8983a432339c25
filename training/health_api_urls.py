"""Native API routes of the health check, under /api/."""

from django.urls import path

from training.health_api import HealthApi, HealthRefreshApi

urlpatterns = [
    path("projects/<int:project_id>/health/", HealthApi.as_view(), name="api-project-health"),
    path(
        "projects/<int:project_id>/health/refresh/",
        HealthRefreshApi.as_view(),
        name="api-project-health-refresh",
    ),
]
