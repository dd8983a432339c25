"""Websocket routes of every app, gathered for the ASGI router."""

from django.urls import path

from project.consumers import PingConsumer
from training.routing import websocket_urlpatterns as training_websockets

websocket_urlpatterns = [
    path("ws/ping/", PingConsumer.as_asgi()),
    *training_websockets,
]
