"""`{% prediction_panel image %}`: what the tagging view shows about predictions.

Labeling's tagging template loads this library, so labeling's Python never imports predictions
(import-linter forbids it): for a stored prediction, its predicted tags with "Save and close"
and "Dismiss" (reviewers and admins; `?review=` carries the whole selection); for an
untagged training image with a suggestion, the suggested tags and a one-key Accept.
"""

from __future__ import annotations

from typing import Any

from django import template

from labeling.access import has_role
from labeling.models import Image, Role
from predictions.models import Prediction
from predictions.services.suggestions import suggestion_for

register = template.Library()


@register.inclusion_tag("predictions/_prediction_panel.html", takes_context=True)
def prediction_panel(context: dict[str, Any], image: Image) -> dict[str, Any]:
    request = context["request"]
    project = image.project
    result: dict[str, Any] = {
        "request": request,
        "csrf_token": context.get("csrf_token"),
        "project": project,
        "image": image,
        "is_detection": project.is_detection,
        "prediction": None,
        "suggestion": None,
    }
    if image.source == Image.Source.PREDICTION and has_role(request.user, project, Role.REVIEWER):
        prediction = Prediction.objects.filter(image=image).select_related("iteration").first()
        if prediction is not None:
            # `?review=` is the whole selection, in order; this image's place in it is shown.
            queue = [int(p) for p in request.GET.get("review", "").split(",") if p.isdigit()]
            position = queue.index(image.pk) + 1 if image.pk in queue else 0
            result.update(
                prediction=prediction,
                queue=",".join(map(str, queue)),
                queue_position=position,
                queue_length=len(queue),
            )
            return result
    result["suggestion"] = suggestion_for(image)
    return result
