"""Websocket routes of training: live progress of an iteration."""

from django.urls import path

from training.consumers import IterationProgressConsumer

websocket_urlpatterns = [
    path(
        "ws/projects/<int:project_id>/iterations/<int:iteration_id>/",
        IterationProgressConsumer.as_asgi(),
    ),
]
