"""A trivial websocket used by /healthz-style checks and tests to prove websockets work."""

from channels.generic.websocket import JsonWebsocketConsumer


class PingConsumer(JsonWebsocketConsumer):
    def connect(self) -> None:
        self.accept()

    def receive_json(self, content: dict, **kwargs: object) -> None:
        self.send_json({"pong": content})
