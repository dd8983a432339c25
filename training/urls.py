"""HTML routes of training, mounted under projects/<project_id>/."""

from django.urls import path

from training import export_views, views, views_health, views_map, views_saliency

app_name = "training"

urlpatterns = [
    path("health/", views_health.health, name="health"),
    path("health/refresh/", views_health.health_refresh, name="health-refresh"),
    path("mislabels/", views_health.mislabel_list, name="mislabel-list"),
    path("mislabels/accept/", views_health.mislabel_accept, name="mislabel-accept"),
    path("mislabels/keep/", views_health.mislabel_keep, name="mislabel-keep"),
    path("map/", views_map.embedding_map, name="embedding-map"),
    path("map/refresh/", views_map.embedding_map_refresh, name="embedding-map-refresh"),
    path("map/tag/", views_map.embedding_map_tag, name="embedding-map-tag"),
    path("where-looked/", views_saliency.where_looked, name="where-looked"),
    path(
        "where-looked/overlay/",
        views_saliency.where_looked_overlay,
        name="where-looked-overlay",
    ),
    path(
        "iterations/<int:iteration_id>/context-reliance/",
        views_saliency.iteration_context_reliance,
        name="context-reliance",
    ),
    path("train/", views.train, name="train"),
    path("performance/", views.performance, name="performance"),
    path("iterations/", views.iteration_list, name="iteration-list"),
    path("iterations/compare/", views.iteration_compare, name="iteration-compare"),
    path(
        "iterations/<int:iteration_id>/", views.iteration_performance, name="iteration-performance"
    ),
    path("iterations/<int:iteration_id>/status/", views.iteration_status, name="iteration-status"),
    path(
        "iterations/<int:iteration_id>/publish/", views.iteration_publish, name="iteration-publish"
    ),
    path(
        "iterations/<int:iteration_id>/unpublish/",
        views.iteration_unpublish,
        name="iteration-unpublish",
    ),
    path(
        "iterations/<int:iteration_id>/default/",
        views.iteration_make_default,
        name="iteration-default",
    ),
    path("iterations/<int:iteration_id>/rename/", views.iteration_rename, name="iteration-rename"),
    path("iterations/<int:iteration_id>/delete/", views.iteration_delete, name="iteration-delete"),
    path("iterations/<int:iteration_id>/cancel/", views.iteration_cancel, name="iteration-cancel"),
    path(
        "iterations/<int:iteration_id>/threshold/",
        views.iteration_threshold,
        name="iteration-threshold",
    ),
    path(
        "iterations/<int:iteration_id>/exports/",
        export_views.iteration_exports,
        name="iteration-exports",
    ),
    path(
        "iterations/<int:iteration_id>/exports/start/",
        export_views.iteration_export_start,
        name="iteration-export-start",
    ),
    path(
        "iterations/<int:iteration_id>/exports/<int:model_export_id>/download/",
        export_views.iteration_export_download,
        name="iteration-export-download",
    ),
]
