from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from customvision import prediction_urls, training_urls
from project.health import healthz
from project.media import serve_media

# The JSON API answers JSON for every error, including a URL that matches no route.
handler400 = "project.errors.handler400"
handler403 = "project.errors.handler403"
handler404 = "project.errors.handler404"
handler500 = "project.errors.handler500"

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("media/<path:path>", serve_media, name="media"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The split view serves Swagger UI's start script as a file (?script): no inline script, so
    # the page works under the Content-Security-Policy.
    path(
        "api/docs/",
        SpectacularSwaggerSplitView.as_view(
            url_name="api-schema", template_name="api/swagger_ui.html"
        ),
        name="api-docs",
    ),
    path("api/predict/", include(prediction_urls.native_urlpatterns)),
    re_path(prediction_urls.PREDICTION_PREFIX, include(prediction_urls.urlpatterns)),
    re_path(training_urls.TRAINING_PREFIX, include((training_urls.urlpatterns, "customvision"))),
    path("api/", include("labeling.api_urls")),
    path("api/", include("predictions.rest_urls")),
    path("api/", include("training.export_api_urls")),
    path("api/", include("training.health_api_urls")),
    path("api/", include("training.map_api_urls")),
    path("api/", include("training.api_urls")),
    path("projects/<int:project_id>/", include("training.urls")),
    path("projects/<int:project_id>/", include("predictions.urls")),
    path("", include("labeling.urls")),
]
