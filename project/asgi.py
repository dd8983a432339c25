"""ASGI entry point: Django for HTTP (predictions through their fast lane), Channels for
websockets (progress pushes)."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

from channels.auth import AuthMiddlewareStack
from channels.routing import ProtocolTypeRouter, URLRouter
from django.core.asgi import get_asgi_application

django_asgi_app = get_asgi_application()

from customvision.fast_lane import PredictionFastLane  # noqa: E402
from project.hosts import SiteOriginValidator  # noqa: E402
from project.malloc import return_large_frees_to_the_os  # noqa: E402
from project.routing import websocket_urlpatterns  # noqa: E402

# Before any picture is decoded: large decodes taking turns on different request threads must
# not each leave their blocks in a heap arena (project/malloc.py).
return_large_frees_to_the_os()

application = ProtocolTypeRouter(
    {
        # Prediction requests skip the browser's middleware stack (see customvision/fast_lane.py).
        "http": PredictionFastLane(django_asgi_app),
        # Only pages of this site may open a socket with the user's cookie (project/hosts.py):
        # not any origin, even when LOUPE_ALLOWED_HOSTS is "*".
        "websocket": SiteOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
