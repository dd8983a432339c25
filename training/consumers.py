"""The progress socket of one iteration: ws/projects/<project_id>/iterations/<iteration_id>/.

On connect it checks that the user is a member of the project (else it closes the socket without
a word: ids don't leak), sends the row's current state, then relays the worker's pushes
(`training.services.progress.push_iteration_state`). A dropped socket loses nothing: the page
reads the row when it loads.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync
from channels.generic.websocket import JsonWebsocketConsumer

from labeling.access import access_project
from project.errors import LoupeError
from training.models import Iteration
from training.services.progress import group_name, iteration_state


class IterationProgressConsumer(JsonWebsocketConsumer):
    def connect(self) -> None:
        kwargs = self.scope["url_route"]["kwargs"]
        try:
            project = access_project(self.scope.get("user"), kwargs["project_id"])
        except LoupeError:
            self.close()
            return
        iteration = Iteration.objects.filter(project=project, pk=kwargs["iteration_id"]).first()
        if iteration is None:
            self.close()
            return
        self.group = group_name(iteration.pk)
        async_to_sync(self.channel_layer.group_add)(self.group, self.channel_name)
        self.accept()
        self.send_json(iteration_state(iteration))

    def disconnect(self, code: int) -> None:
        if getattr(self, "group", None):
            async_to_sync(self.channel_layer.group_discard)(self.group, self.channel_name)

    def iteration_progress(self, event: dict[str, Any]) -> None:
        self.send_json({key: value for key, value in event.items() if key != "type"})
