"""`{% model_exports_card project iteration %}`: the iteration page's Export card (admins).

A tag rather than context from the performance views, so the two performance pages (classifier
and detector) show the same card with one line each. The pages render it for admins only; the
card's own views check the role again (hiding is for tidiness, the views are the security).
"""

from __future__ import annotations

from typing import Any

from django import template

from labeling.models import Project
from training.models import Iteration
from training.services.model_export import SUPPORTED_PLATFORMS, list_model_exports

register = template.Library()


def card_context(project: Project, iteration: Iteration, error: str = "") -> dict[str, Any]:
    exports = list_model_exports(iteration)
    return {
        "project": project,
        "iteration": iteration,
        "exports": exports,
        "platforms": SUPPORTED_PLATFORMS,
        "is_running": any(not export.is_finished for export in exports),
        "export_error": error,
    }


@register.inclusion_tag("training/_model_exports.html")
def model_exports_card(project: Project, iteration: Iteration) -> dict[str, Any]:
    return card_context(project, iteration)
