"""`{% where_looked iteration_id image=... upload=... target="#stage-image" %}`: the "Where the
model looked" button for one image, in pages of other apps (labeling's tagging view, the
predictions' review panel and quick test) without their Python importing training.

It renders nothing when the user may not see the image or the iteration explains nothing
(a detector, a deleted iteration): the button only appears where it can work.
"""

from __future__ import annotations

from typing import Any

from django import template

from project.errors import LoupeError
from training.views_saliency import explained_for, partial_context

register = template.Library()


@register.inclusion_tag("components/_where_looked.html", takes_context=True)
def where_looked(
    context: dict[str, Any],
    iteration_id: Any,
    image: Any = None,
    upload: str = "",
    target: str = "",
) -> dict[str, Any]:
    request = context["request"]
    project = context["project"]
    params = {"iteration": iteration_id, "image": getattr(image, "pk", image), "upload": upload}
    try:
        state = explained_for(request, project, params)
    except LoupeError:
        return {"wl": None}
    return {
        **partial_context(project, state, wl_target=target),
        "request": request,
        "csrf_token": context.get("csrf_token"),
    }
