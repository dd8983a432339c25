"""`{% project_nav project active="images" %}`: the project's tab bar.

Each tab is one line of PROJECT_TABS, in display order; an app adds its tab with one line such
as `Tab("train", "Train", "training:train", Role.ADMIN)`. A tab whose URL name does not resolve
(its app is not there yet) is left out instead of failing the page, and a tab above the user's
role is hidden (its view still checks the role: hiding is for tidiness, not security).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django import template
from django.urls import NoReverseMatch, reverse

from labeling.access import has_role
from labeling.models import Project, Role

register = template.Library()


@dataclass(frozen=True)
class Tab:
    key: str
    label: str
    url_name: str  # reversed with the project id as its one argument
    min_role: Role = Role.ANNOTATOR


PROJECT_TABS: list[Tab] = [
    Tab("images", "Images", "labeling:project-detail"),
    Tab("upload", "Upload", "labeling:image-upload"),
    # Before Train: what to fix in the data first (training.services.health).
    Tab("health", "Health", "training:health"),
    # Every image placed by similarity: tag a whole cluster at once (training.views_map).
    Tab("map", "Map", "training:embedding-map"),
    # Every member: reviewers and annotators see there why only admins can train, and whom to ask.
    Tab("train", "Train", "training:train"),
    # Opens the default (or latest completed) iteration's figures; its page switches iterations.
    Tab("performance", "Performance", "training:performance"),
    Tab("predictions", "Predictions", "predictions:prediction-list", Role.REVIEWER),
    Tab("datasets", "Import/Export", "labeling:datasets", Role.REVIEWER),
    # Every member: non-admins see the settings read-only and manage their own API token there.
    Tab("settings", "Settings", "labeling:project-settings"),
]


@register.inclusion_tag("components/_project_nav.html", takes_context=True)
def project_nav(context: dict[str, Any], project: Project, active: str = "") -> dict[str, Any]:
    user = context["request"].user
    tabs = []
    for tab in PROJECT_TABS:
        if not has_role(user, project, tab.min_role):
            continue
        try:
            url = reverse(tab.url_name, args=[project.pk])
        except NoReverseMatch:
            continue
        tabs.append(
            {"key": tab.key, "label": tab.label, "url": url, "is_active": tab.key == active}
        )
    return {"project": project, "tabs": tabs}
