"""The ASGI application routes websockets through Channels (with its Redis channel layer)."""

import pytest
from asgiref.sync import async_to_sync
from channels.testing.websocket import WebsocketCommunicator

from project.asgi import application


async def _ping_pong(payload: dict) -> tuple[bool, dict]:
    communicator = WebsocketCommunicator(application, "/ws/ping/")
    connected, _ = await communicator.connect(timeout=5)
    try:
        await communicator.send_json_to(payload)
        reply = await communicator.receive_json_from(timeout=5)
    finally:
        await communicator.disconnect()
    return connected, reply


@pytest.mark.django_db(transaction=True)
def test_ping_websocket_connects_and_answers():
    connected, reply = async_to_sync(_ping_pong)({"hello": "loupe"})

    assert connected
    assert reply == {"pong": {"hello": "loupe"}}


async def _connect(path: str) -> bool:
    communicator = WebsocketCommunicator(application, path)
    try:
        connected, _ = await communicator.connect(timeout=5)
    except ValueError:  # Channels' URLRouter: no route for this path
        return False
    await communicator.disconnect()
    return connected


@pytest.mark.django_db(transaction=True)
def test_unknown_websocket_path_is_refused():
    assert async_to_sync(_connect)("/ws/no-such-route/") is False
