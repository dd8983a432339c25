"""Hosts Loupe trusts (issue 16, item 7): websocket origins, absolute URLs, local-only defaults."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync
from channels.testing.websocket import WebsocketCommunicator
from django.test import Client

from labeling.models import Role
from project.asgi import application
from project.hosts import websocket_origin_allowed
from project.up_config import Config, hosts_warning
from tests.factories import ImageFactory, MembershipFactory

ROOT = Path(__file__).resolve().parents[2]


async def _ws_connects(headers: list[tuple[bytes, bytes]]) -> bool:
    communicator = WebsocketCommunicator(application, "/ws/ping/", headers=headers)
    connected, _ = await communicator.connect(timeout=5)
    if connected:
        await communicator.disconnect()
    return connected


def ws_connects(origin: str | None, host: str = "loupe.example") -> bool:
    headers = [(b"host", host.encode())]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    return async_to_sync(_ws_connects)(headers)


@pytest.mark.django_db(transaction=True)
def test_websocket_from_another_site_is_refused_even_with_any_host_allowed(settings):
    settings.ALLOWED_HOSTS = ["*"]
    settings.CSRF_TRUSTED_ORIGINS = []
    assert ws_connects("https://evil.example") is False
    assert ws_connects("http://loupe.example.evil.example") is False
    assert ws_connects("null") is False
    # The page's own origin: the host the socket connects to.
    assert ws_connects("http://loupe.example") is True
    assert ws_connects("http://loupe.example:8000", host="loupe.example:8000") is True
    assert ws_connects("http://loupe.example:9000", host="loupe.example:8000") is False


@pytest.mark.django_db(transaction=True)
def test_websocket_origins_from_allowed_hosts_and_csrf_trusted_origins(settings):
    settings.ALLOWED_HOSTS = ["loupe.example", "internal:8000"]
    settings.CSRF_TRUSTED_ORIGINS = ["https://proxy.example", "https://*.corp.example"]
    # Behind a proxy that passes another Host: the origin is still this site's.
    assert ws_connects("https://proxy.example", host="internal:8000") is True
    assert ws_connects("https://labels.corp.example", host="internal:8000") is True
    assert ws_connects("https://loupe.example", host="internal:8000") is True
    assert ws_connects("https://evil.example", host="internal:8000") is False
    assert ws_connects("http://corp.example.evil.example", host="internal:8000") is False
    # A Host outside ALLOWED_HOSTS is no proof of anything.
    assert ws_connects("http://evil.example", host="evil.example") is False


def test_a_client_without_origin_is_not_a_browser_and_goes_on(settings):
    settings.ALLOWED_HOSTS = ["loupe.example"]
    assert websocket_origin_allowed(None, "loupe.example") is True
    assert websocket_origin_allowed("file://", "loupe.example") is False


def test_unset_allowed_hosts_means_local_names_only(tmp_path):
    code = (
        "import os, django; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'project.settings');"
        "django.setup(); from django.conf import settings; print(settings.ALLOWED_HOSTS)"
    )
    env = {"PATH": "/usr/bin:/bin", "LOUPE_DATA_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "['localhost', '127.0.0.1', '[::1]']"


@pytest.mark.django_db
def test_forged_host_is_refused_by_default(settings):
    settings.ALLOWED_HOSTS = ["localhost", "127.0.0.1", "[::1]"]
    assert Client().get("/accounts/login/", HTTP_HOST="evil.example").status_code == 400
    assert Client().get("/accounts/login/", HTTP_HOST="localhost:8000").status_code == 200


@pytest.fixture
def admin_with_images(project):
    admin = MembershipFactory(project=project, role=Role.ADMIN).user
    for _ in range(3):
        ImageFactory(project=project)
    return admin


@pytest.mark.django_db
@pytest.mark.parametrize("allowed", [["*"], ["loupe.example", "*"]])
def test_forged_host_is_never_echoed_into_absolute_urls(
    settings, project, admin_with_images, allowed
):
    settings.ALLOWED_HOSTS = allowed
    client = Client(HTTP_HOST="evil.example")
    client.force_login(admin_with_images)
    page = client.get(f"/api/projects/{project.pk}/images/?page_size=1").json()
    assert page["next"].startswith(f"/api/projects/{project.pk}/images/?")
    assert page["results"][0]["urls"]["file"].startswith("/media/")
    keys = client.get(f"/projects/{project.pk}/prediction-keys/").content.decode()
    assert "evil.example" not in keys
    assert f"/api/predict/{project.pk}/" in keys


@pytest.mark.django_db
def test_a_named_host_still_gets_absolute_urls(settings, project, admin_with_images):
    settings.ALLOWED_HOSTS = ["loupe.example", "*"]
    client = Client(HTTP_HOST="loupe.example")
    client.force_login(admin_with_images)
    page = client.get(f"/api/projects/{project.pk}/images/?page_size=1").json()
    assert page["next"].startswith(f"http://loupe.example/api/projects/{project.pk}/images/?")
    assert page["results"][0]["urls"]["file"].startswith("http://loupe.example/media/")
    keys = client.get(f"/projects/{project.pk}/prediction-keys/").content.decode()
    assert f"http://loupe.example/api/predict/{project.pk}/" in keys


def _config(host: str) -> Config:
    return Config.from_env({"HOST": host, "PORT": "8000", "LOUPE_DATA_DIR": "/tmp/x"})


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "loupe.example"])
def test_up_warns_on_a_public_address_without_allowed_hosts(host):
    warning = hosts_warning(_config(host), {})
    assert warning is not None and "LOUPE_ALLOWED_HOSTS" in warning
    assert hosts_warning(_config(host), {"LOUPE_ALLOWED_HOSTS": "loupe.example"}) is None


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "127.0.0.2"])
def test_up_is_quiet_on_loopback(host):
    assert hosts_warning(_config(host), {}) is None
