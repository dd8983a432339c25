"""The progress websocket: members get the row's state then every push; others are refused."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator

from tests.factories import ProjectFactory
from tests.training.conftest import make_iteration
from training.routing import websocket_urlpatterns
from training.services.progress import ProgressReporter

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _in_memory_layer(settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


def path_of(iteration) -> str:
    return f"/ws/projects/{iteration.project_id}/iterations/{iteration.id}/"


async def _open(path: str, user) -> tuple[WebsocketCommunicator, bool]:
    communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), path)
    communicator.scope["user"] = user
    connected, _ = await communicator.connect()
    return communicator, connected


def test_a_member_gets_the_state_then_live_progress(project, users):
    iteration = make_iteration(project, status="training", attempts=1)

    async def scenario():
        communicator, connected = await _open(path_of(iteration), users["annotator"])
        assert connected
        first = await communicator.receive_json_from(timeout=5)
        assert first["status"] == "training" and first["iteration_id"] == iteration.id
        from asgiref.sync import sync_to_async

        await sync_to_async(ProgressReporter(iteration))("embedding 3/10", 0.3)
        update = await communicator.receive_json_from(timeout=5)
        await communicator.disconnect()
        return update

    update = async_to_sync(scenario)()
    assert (update["phase"], update["fraction"]) == ("embedding 3/10", 0.3)
    iteration.refresh_from_db()
    assert iteration.progress_phase == "embedding 3/10"  # the row holds it for a reload


@pytest.mark.parametrize("who", ["non_member", "anonymous", "other_project"])
def test_others_are_refused(project, users, who):
    from django.contrib.auth.models import AnonymousUser

    iteration = make_iteration(project)
    path = path_of(iteration)
    user = users.get(who)
    if who == "anonymous":
        user = AnonymousUser()
    elif who == "other_project":
        user = users["admin"]
        path = f"/ws/projects/{ProjectFactory().id}/iterations/{iteration.id}/"

    async def scenario():
        communicator, connected = await _open(path, user)
        await communicator.disconnect()
        return connected

    assert async_to_sync(scenario)() is False
