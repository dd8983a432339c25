# ruff: noqa: E501  (MATRIX is a table: one endpoint per line, columns aligned)
"""The role matrix: every endpoint x admin / reviewer / annotator / non-member / anonymous.

Each MATRIX line is one (method, URL name) and the exact status each caller gets, in ROLES
order. The routes are read from the URLconf at test time, and every method a route answers
(anything but 405) must have a line: an endpoint added without one fails
`test_every_endpoint_has_a_line_in_the_matrix`.

What the codes mean here: non-members get 404 for anything of a project (ids don't leak);
members below the needed role get 403; anonymous callers get 401 from the API and a redirect
to the login page (302) from HTML pages. A member's 400/422 means the request passed the role
check and was then refused on its content, which is what the matrix asks of it.
"""

from __future__ import annotations

import io
import uuid
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from rest_framework.test import APIClient

from labeling.models import Image, Membership, Role
from tests.conftest import make_image
from tests.factories import (
    ImageFactory,
    ImageTagFactory,
    MembershipFactory,
    RegionFactory,
    TagFactory,
)

ROLES = ("admin", "reviewer", "annotator", "non_member", "anonymous")
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")

# Routes outside the matrix, each with its reason. Everything else must have lines.
EXCLUDED_PREFIXES = {
    "admin:": "Django's admin: staff only, guarded by Django's own permission checks.",
}
EXCLUDED_NAMES = {
    "healthz": "Deployment check with no project data; its answer depends on the broker and "
    "workers, not on the caller (tests/project covers it).",
    "customvision:training-media": "A signed, expiring image address: the signature is the "
    "permission, not a session or a role (tests/customvision/test_training_rest.py).",
    "customvision:training-unsupported": "The Training API's catch-all: a JSON 404 for any "
    "address it does not serve, whatever the method.",
    "customvision:training-domain": "Custom Vision's fixed domain list, the same for every key; "
    "its id is a domain's, not a project's (tests/customvision).",
}


@dataclass
class World:
    """What the matrix requests point at: one project with a tag, an image, an iteration..."""

    kwargs: dict[str, Any]
    objects: dict[str, Any] = field(default_factory=dict)


Body = Callable[[World], dict[str, Any]]


@dataclass(frozen=True)
class Entry:
    method: str
    name: str
    codes: tuple[int, int, int, int, int]
    body: Body | None = None
    fmt: str = "json"  # "json", "multipart" or "form"
    query: str = ""

    @property
    def id(self) -> str:
        return f"{self.method} {self.name}"


def E(
    method: str,
    name: str,
    codes: str,
    body: Body | None = None,
    fmt: str | None = None,
    query: str = "",
) -> Entry:
    parsed = tuple(int(code) for code in codes.split())
    assert len(parsed) == len(ROLES), f"{method} {name}: one code per role in {ROLES}"
    default_fmt = "json" if name.startswith("api-") else "form"
    return Entry(method, name, parsed, body, fmt or default_fmt, query)  # type: ignore[arg-type]


def _png(name: str = "new.png") -> SimpleUploadedFile:
    # A fresh colour per call: the same content twice would be a duplicate, not an upload.
    color = tuple(uuid.uuid4().bytes[:3])
    return SimpleUploadedFile(name, make_image(300, 300, color), content_type="image/png")


def _folders_zip() -> SimpleUploadedFile:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("cat/one.png", make_image(300, 300, (9, 9, 9)))
    return SimpleUploadedFile("set.zip", buffer.getvalue(), content_type="application/zip")


def _own_login(w: World) -> dict[str, Any]:
    return {"username": w.objects["username"], "password": "password123"}


def _new_member(w: World) -> dict[str, Any]:
    return {"username": "newcomer", "role": "annotator", "password": "password123"}


def _new_project(w: World) -> dict[str, Any]:
    return {"name": "Mine", "kind": "multiclass", "domain": "general_compact"}


def _bulk_tag_api(w: World) -> dict[str, Any]:
    return {"action": "tag", "image_ids": [w.kwargs["image_id"]], "tag_ids": [w.objects["dog"].id]}


def _bulk_tag_form(w: World) -> dict[str, Any]:
    return {"action": "tag", "image_ids": [w.kwargs["image_id"]], "tag": w.objects["dog"].id}


def _upload(w: World) -> dict[str, Any]:
    return {"files": [_png()]}


def _dog(w: World) -> dict[str, Any]:
    return {"tag_id": w.objects["dog"].id}


def _box(w: World) -> dict[str, Any]:
    return {"tag_id": w.objects["dog"].id, "left": 0.1, "top": 0.1, "width": 0.5, "height": 0.5}


def _new_box(w: World) -> dict[str, Any]:
    return {"regions": [{"image_id": w.kwargs["image_id"], **_box(w)}]}


# One line per (method, route): the codes are for      admin rev  ann  non  anon
# fmt: off
MATRIX: list[Entry] = [
    # --- Accounts and the API's own pages -------------------------------------------------
    E("GET", "login",                                    "200 200 200 200 200"),
    E("POST", "login",                                   "200 200 200 200 200", lambda w: {"username": "x"}),
    # Django's LoginView (a FormView) answers PUT as it answers POST.
    E("PUT", "login",                                    "200 200 200 200 200", lambda w: {"username": "x"}),
    E("POST", "logout",                                  "302 302 302 302 302"),
    E("GET", "api-schema",                               "200 200 200 200 200"),
    E("GET", "api-docs",                                 "200 200 200 200 200"),
    E("POST", "api-token",                               "200 200 200 200 400", _own_login),
    E("GET", "media",                                    "200 200 200 404 302"),
    # --- REST API: projects, tags, members --------------------------------------------------
    E("GET", "api-project-list",                         "200 200 200 200 401"),
    # Creating projects is for staff (LOUPE_PROJECT_CREATORS); none of these users is staff.
    E("POST", "api-project-list",                        "403 403 403 403 401", _new_project),
    E("GET", "api-customvision-import-list",             "403 403 403 403 401"),
    E("POST", "api-customvision-import-list",            "403 403 403 403 401", lambda w: {"endpoint": "http://cv.example", "training_key": "k", "project_id": "p"}),
    E("GET", "api-customvision-import-detail",           "403 403 403 403 401"),
    E("GET", "api-project-detail",                       "200 200 200 404 401"),
    E("PATCH", "api-project-detail",                     "200 403 403 404 401", lambda w: {"name": "New"}),
    E("DELETE", "api-project-detail",                    "204 403 403 404 401"),
    E("GET", "api-tag-list",                             "200 200 200 404 401"),
    E("POST", "api-tag-list",                            "201 403 403 404 401", lambda w: {"name": "pear"}),
    E("GET", "api-tag-detail",                           "200 200 200 404 401"),
    E("PATCH", "api-tag-detail",                         "200 403 403 404 401", lambda w: {"name": "kit"}),
    E("DELETE", "api-tag-detail",                        "204 403 403 404 401"),
    E("GET", "api-member-list",                          "200 200 200 404 401"),
    E("POST", "api-member-list",                         "201 403 403 404 401", _new_member),
    E("PATCH", "api-member-detail",                      "200 403 403 404 401", lambda w: {"role": "reviewer"}),
    E("DELETE", "api-member-detail",                     "204 403 403 404 401"),
    # --- REST API: images -------------------------------------------------------------------
    E("GET", "api-image-list",                           "200 200 200 404 401"),
    E("POST", "api-image-list",                          "201 201 201 404 401", _upload, "multipart"),
    E("POST", "api-image-upload",                        "201 201 201 404 401", _upload, "multipart"),
    E("POST", "api-image-bulk",                          "200 200 200 404 401", _bulk_tag_api),
    E("GET", "api-image-detail",                         "200 200 200 404 401"),
    E("DELETE", "api-image-detail",                      "204 204 403 404 401"),
    E("PUT", "api-image-tags",                           "200 200 200 404 401", lambda w: {"tag_ids": [], "version": None}),
    E("POST", "api-image-tags",                          "200 200 200 404 401", _dog),
    E("DELETE", "api-image-tags",                        "200 200 200 404 401", lambda w: {"tag_id": w.kwargs["tag_id"]}),
    # --- REST API: boxes (the world's project is multiclass: 422 past the role check, as the
    # box editor; tests/labeling/test_api_regions.py covers a detection project) -------------
    E("GET", "api-image-regions",                        "422 422 422 404 401"),
    E("POST", "api-region-batch",                        "422 422 422 404 401", _new_box),
    E("GET", "api-region-detail",                        "422 422 422 404 401"),
    E("PUT", "api-region-detail",                        "422 422 422 404 401", _box),
    E("DELETE", "api-region-detail",                     "422 422 422 404 401"),
    # --- REST API: dataset imports (start: admins; poll: reviewers, as the datasets page) --
    E("POST", "api-import-list",                         "202 403 403 404 401", lambda w: {"format": "folders", "archive": _folders_zip()}, "multipart"),
    E("GET", "api-import-detail",                        "200 200 403 404 401"),
    # --- REST API: iterations and performance (members read, admins act) ------------------
    E("GET", "api-iteration-list",                       "200 200 200 404 401"),
    E("GET", "api-iteration-compare",                    "200 200 200 404 401", query="?a={iteration_id}&b={iteration_id}"),
    # One image cannot make a model: the admin passes the role check and gets 422.
    E("POST", "api-iteration-list",                      "422 403 403 404 401", lambda w: {"training_type": "quick"}),
    E("GET", "api-iteration-detail",                     "200 200 200 404 401"),
    E("PATCH", "api-iteration-detail",                   "200 403 403 404 401", lambda w: {"name": "Best"}),
    E("DELETE", "api-iteration-detail",                  "204 403 403 404 401"),
    E("POST", "api-iteration-cancel",                    "422 403 403 404 401"),  # completed already
    E("POST", "api-iteration-publish",                   "200 403 403 404 401", lambda w: {"name": "prod"}),
    E("DELETE", "api-iteration-publish",                 "422 403 403 404 401"),  # not published
    E("POST", "api-iteration-default",                   "200 403 403 404 401"),
    E("PUT", "api-iteration-threshold",                  "200 403 403 404 401", lambda w: {"threshold": 0.4}),
    E("GET", "api-iteration-performance",                "200 200 200 404 401"),
    E("GET", "api-iteration-image-results",              "200 200 200 404 401"),
    # Model exports: admins only (the whole model leaves); the world's iteration has no model file.
    E("GET", "api-model-export-list",                    "200 403 403 404 401"),
    E("POST", "api-model-export-list",                   "409 403 403 404 401", lambda w: {"platform": "ONNX"}),
    E("GET", "api-model-export-download",                "200 403 403 404 401"),
    E("GET", "api-project-health",                       "200 200 200 404 401"),
    E("GET", "api-project-map",                          "200 200 200 404 401"),
    # Health check and map: every member refreshes them, as on their pages; the mislabel queue
    # is the reviewers'. The world has no scored iteration: no suggestion to act on, 404.
    E("POST", "api-project-health-refresh",              "202 202 202 404 401"),
    E("POST", "api-project-map-refresh",                 "202 202 202 404 401"),
    E("GET", "api-mislabel-list",                        "200 200 403 404 401"),
    E("POST", "api-mislabel-accept",                     "404 404 403 404 401", lambda w: {"image_id": w.kwargs["image_id"], "label_key": "mc:1"}),
    E("POST", "api-mislabel-keep",                       "404 404 403 404 401", lambda w: {"image_id": w.kwargs["image_id"], "label_key": "mc:1"}),
    # Where the model looked and context reliance: any member, as the pages (stored predictions
    # need reviewers: tests/training/test_api_saliency.py). The world's iteration has no model
    # file: 404 past the role check.
    E("GET", "api-where-looked",                         "404 404 404 404 401", query="?image_id={image_id}"),
    E("POST", "api-where-looked",                        "404 404 404 404 401", lambda w: {"image_id": w.kwargs["image_id"]}),
    E("GET", "api-where-looked-overlay",                 "404 404 404 404 401", query="?image_id={image_id}"),
    E("GET", "api-context-reliance",                     "404 404 404 404 401"),
    E("POST", "api-context-reliance",                    "404 404 404 404 401"),
    # --- REST API: predictions (triage and suggestions as the tabs; keys: admins) ----------
    # The world's image is a training image, not a stored prediction: 404 past the role check.
    E("POST", "api-prediction-promote",                  "404 404 403 404 401"),
    E("POST", "api-prediction-dismiss",                  "200 200 403 404 401", lambda w: {"image_ids": [w.kwargs["image_id"]]}),
    E("GET", "api-suggestion-list",                      "200 200 200 404 401"),
    E("POST", "api-suggestion-list",                     "422 422 403 404 401"),  # no model yet
    E("GET", "api-suggestion-status",                    "200 200 200 404 401"),
    E("POST", "api-suggestion-accept-all",               "200 200 403 404 401", lambda w: {"min_confidence": 0.9}),
    E("POST", "api-suggestion-accept",                   "422 422 422 404 401"),  # none waiting
    E("POST", "api-quick-test",                          "400 400 400 404 401"),  # no image sent
    E("GET", "api-prediction-key-list",                  "200 403 403 404 401"),
    E("POST", "api-prediction-key-list",                 "201 403 403 404 401", lambda w: {"name": "Mobile app"}),
    E("DELETE", "api-prediction-key-detail",             "200 403 403 404 401"),
    E("POST", "api-prediction-key-rotate",               "200 403 403 404 401"),
    # --- REST API: saved gallery filters (members save; the saver or an admin deletes: the
    # world's filter is the admin's) --------------------------------------------------------
    E("GET", "api-saved-filter-list",                    "200 200 200 404 401"),
    E("POST", "api-saved-filter-list",                   "201 201 201 404 401", lambda w: {"name": "Mine"}),
    E("GET", "api-saved-filter-detail",                  "200 200 200 404 401"),
    E("DELETE", "api-saved-filter-detail",               "204 403 403 404 401"),
    # --- REST API: dataset exports (reviewer and up, as on the datasets page) ---------------
    E("GET", "api-export-list",                          "200 200 403 404 401"),
    E("POST", "api-export-list",                         "202 202 403 404 401", lambda w: {"format": "folders"}),
    E("GET", "api-export-detail",                        "200 200 403 404 401"),
    E("GET", "api-export-download",                      "200 200 403 404 401"),
    # --- Projects, gallery, upload (HTML) ---------------------------------------------------
    E("GET", "labeling:project-list",                    "200 200 200 200 302"),
    E("GET", "labeling:project-create",                  "403 403 403 403 302"),
    E("POST", "labeling:project-create",                 "403 403 403 403 302", _new_project),
    # Custom Vision import: project creators only (LOUPE_PROJECT_CREATORS, staff by default).
    E("GET", "labeling:customvision-import",             "403 403 403 403 302"),
    E("POST", "labeling:customvision-import",            "403 403 403 403 302", lambda w: {"endpoint": "http://cv.example", "training_key": "k", "project_id": "p"}),
    E("GET", "labeling:customvision-import-status",      "403 403 403 403 302"),
    E("GET", "labeling:project-delete",                  "200 403 403 404 302"),
    E("POST", "labeling:project-delete",                 "302 403 403 404 302", lambda w: {"confirm_name": w.objects["project_name"]}),
    E("GET", "labeling:project-detail",                  "200 200 200 404 302"),
    E("POST", "labeling:image-bulk",                     "302 302 302 404 302", _bulk_tag_form),
    # Saved filters in the gallery: members save; the saver (the world's: the admin) or an admin deletes.
    E("POST", "labeling:saved-filter-create",            "302 302 302 404 302", lambda w: {"name": "Mine"}),
    E("POST", "labeling:saved-filter-delete",            "302 403 403 404 302"),
    E("GET", "labeling:image-upload",                    "200 200 200 404 302"),
    E("POST", "labeling:image-upload",                   "200 200 200 404 302", _upload, "multipart"),
    # --- Tagging and boxes (HTML) -----------------------------------------------------------
    E("GET", "labeling:image-tag",                       "200 200 200 404 302"),
    E("POST", "labeling:image-tag-toggle",               "302 302 302 404 302", lambda w: {"tag": w.objects["dog"].id, "version": 1}),
    E("POST", "labeling:image-tag-undo",                 "302 302 302 404 302", lambda w: {"tags": "", "version": 1}),
    E("POST", "labeling:image-delete",                   "302 302 403 404 302"),
    # The world's project is multiclass: members pass the role check, then get 422 (boxes are
    # for detection projects); tests/labeling/test_regions.py covers a detection project.
    E("GET", "labeling:image-boxes",                     "422 422 422 404 302"),
    E("POST", "labeling:image-boxes",                    "422 422 422 404 302"),
    # --- Datasets (HTML) --------------------------------------------------------------------
    E("GET", "labeling:datasets",                        "200 200 403 404 302"),
    E("POST", "labeling:datasets",                       "302 403 403 404 302", lambda w: {"format": "folders", "archive": _folders_zip()}, "multipart"),
    E("GET", "labeling:dataset-import-status",           "200 200 403 404 302"),
    E("POST", "labeling:dataset-export",                 "302 302 403 404 302", lambda w: {"format": "folders"}, "form"),
    E("GET", "labeling:dataset-export-status",           "200 200 403 404 302"),
    E("GET", "labeling:dataset-export-download",         "200 200 403 404 302"),
    # --- Project settings (HTML) ------------------------------------------------------------
    E("GET", "labeling:project-settings",                "200 200 200 404 302"),
    E("POST", "labeling:project-update",                 "302 403 403 404 302", lambda w: {"name": "New", "domain": "general"}),
    E("POST", "labeling:project-tag-create",             "302 403 403 404 302", lambda w: {"name": "pear", "kind": "regular"}),
    E("POST", "labeling:project-tag-update",             "302 403 403 404 302", lambda w: {"name": "kit"}),
    E("GET", "labeling:project-tag-delete",              "200 403 403 404 302"),
    E("POST", "labeling:project-tag-delete",             "302 403 403 404 302"),
    E("POST", "labeling:project-member-add",             "302 403 403 404 302", _new_member),
    E("POST", "labeling:project-member-update",          "302 403 403 404 302", lambda w: {"role": "reviewer"}),
    E("POST", "labeling:project-member-remove",          "302 403 403 404 302"),
    E("POST", "labeling:api-token-regenerate",           "302 302 302 404 302"),
    # --- Training (HTML) --------------------------------------------------------------------
    E("GET", "training:train",                           "200 200 200 404 302"),  # read-only below admin
    E("POST", "training:train",                          "422 403 403 404 302", lambda w: {"training_type": "quick"}),
    E("GET", "training:performance",                     "302 302 302 404 302"),
    E("GET", "training:iteration-list",                  "200 200 200 404 302"),
    E("GET", "training:iteration-compare",               "200 200 200 404 302", query="?a={iteration_id}&b={iteration_id}"),
    E("GET", "training:iteration-performance",           "200 200 200 404 302"),
    E("GET", "training:iteration-status",                "200 200 200 404 302"),
    E("POST", "training:iteration-publish",              "302 403 403 404 302", lambda w: {"name": "prod"}),
    E("POST", "training:iteration-unpublish",            "302 403 403 404 302"),
    E("POST", "training:iteration-default",              "302 403 403 404 302"),
    E("POST", "training:iteration-rename",               "302 403 403 404 302", lambda w: {"name": "Best"}),
    E("POST", "training:iteration-delete",               "302 403 403 404 302"),
    E("POST", "training:iteration-cancel",               "302 403 403 404 302"),
    E("POST", "training:iteration-threshold",            "302 403 403 404 302", lambda w: {"threshold": "0.4"}),
    E("GET", "training:iteration-exports",               "302 403 403 404 302"),  # htmx gets the card
    E("POST", "training:iteration-export-start",         "409 403 403 404 302", lambda w: {"platform": "ONNX"}, fmt="form"),
    E("GET", "training:iteration-export-download",       "200 403 403 404 302"),
    # Health check: every member reads and refreshes it; the mislabel queue is the reviewers'.
    E("GET", "training:health",                          "200 200 200 404 302"),
    E("POST", "training:health-refresh",                 "302 302 302 404 302"),
    E("GET", "training:mislabel-list",                   "200 200 403 404 302"),
    # Nothing queued for the world's image: back to the queue with a message.
    E("POST", "training:mislabel-accept",                "302 302 403 404 302", lambda w: {"image_id": w.kwargs["image_id"], "label_key": "mc:1"}),
    E("POST", "training:mislabel-keep",                  "302 302 403 404 302", lambda w: {"image_id": w.kwargs["image_id"], "label_key": "mc:1"}),
    # Where the model looked: every member who may open the image (stored predictions: reviewers,
    # tests/training/test_where_looked.py). The world's iteration has no model file: 404 past the
    # role check; that file has a trained one.
    E("GET", "training:where-looked",                    "404 404 404 404 302", query="?iteration={iteration_id}&image={image_id}"),
    E("POST", "training:where-looked",                   "404 404 404 404 302", query="?iteration={iteration_id}&image={image_id}"),
    E("GET", "training:where-looked-overlay",            "404 404 404 404 302", query="?iteration={iteration_id}&image={image_id}"),
    E("GET", "training:context-reliance",                "404 404 404 404 302"),
    E("POST", "training:context-reliance",               "404 404 404 404 302"),
    # Embedding map: every member sees it, lays it out again and tags a lasso selection with
    # the gallery's bulk tagging service.
    E("GET", "training:embedding-map",                   "200 200 200 404 302"),
    E("POST", "training:embedding-map-refresh",          "302 302 302 404 302"),
    E("POST", "training:embedding-map-tag",              "302 302 302 404 302", _bulk_tag_form),
    # --- Predictions (HTML); the API authenticates by Prediction-Key only, so a session is 401 --
    E("GET", "predictions:key-list",                     "200 403 403 404 302"),
    E("POST", "predictions:key-list",                    "200 403 403 404 302", lambda w: {"name": "Mobile app"}),
    E("GET", "predictions:prediction-list",              "200 200 403 404 302"),
    E("GET", "api-stored-prediction-list",               "200 200 403 404 401"),
    E("GET", "predictions:quick-test",                   "200 200 200 404 302"),
    E("POST", "predictions:quick-test",                  "422 422 422 404 302"),  # no file sent
    E("POST", "predictions:prediction-review",           "302 302 403 404 302"),
    E("POST", "predictions:prediction-dismiss",          "302 302 403 404 302"),
    E("POST", "predictions:suggestions-run",             "302 302 403 404 302"),
    E("GET", "predictions:suggestions-status",           "200 200 200 404 302"),
    E("POST", "predictions:suggestions-accept",          "302 302 403 404 302"),
    # The world's image is a training image, not a stored prediction: 404 past the role check.
    E("POST", "predictions:prediction-promote",          "404 404 403 404 302"),
    E("POST", "predictions:suggestion-accept",           "302 302 302 404 302"),
    E("POST", "api-predict-classify",                    "401 401 401 401 401"),
    E("POST", "api-predict-classify-nostore",            "401 401 401 401 401"),
    E("POST", "api-predict-detect",                      "401 401 401 401 401"),
    E("POST", "api-predict-detect-nostore",              "401 401 401 401 401"),
    # Custom Vision's Training API: Training-Key only, acting as its user (tests/customvision
    # has the keys and the roles through them); a browser session is no key.
    E("GET", "customvision:training-domains",              "401 401 401 401 401"),
    E("GET", "customvision:training-projects",             "401 401 401 401 401"),
    E("POST", "customvision:training-projects",             "401 401 401 401 401"),
    E("GET", "customvision:training-project",              "401 401 401 401 401"),
    E("PATCH", "customvision:training-project",              "401 401 401 401 401"),
    E("DELETE", "customvision:training-project",              "401 401 401 401 401"),
    E("GET", "customvision:training-tags",                 "401 401 401 401 401"),
    E("POST", "customvision:training-tags",                 "401 401 401 401 401"),
    E("GET", "customvision:training-tag",                  "401 401 401 401 401"),
    E("PATCH", "customvision:training-tag",                  "401 401 401 401 401"),
    E("DELETE", "customvision:training-tag",                  "401 401 401 401 401"),
    E("GET", "customvision:training-images",               "401 401 401 401 401"),
    E("POST", "customvision:training-images",               "401 401 401 401 401"),
    E("DELETE", "customvision:training-images",               "401 401 401 401 401"),
    E("POST", "customvision:training-image-files",          "401 401 401 401 401"),
    E("POST", "customvision:training-image-predictions", "401 401 401 401 401"),
    E("POST", "customvision:training-image-urls",           "401 401 401 401 401"),
    E("GET", "customvision:training-images-by-id",         "401 401 401 401 401"),
    E("GET", "customvision:training-image-count",          "401 401 401 401 401"),
    E("GET", "customvision:training-tagged",               "401 401 401 401 401"),
    E("GET", "customvision:training-tagged-count",         "401 401 401 401 401"),
    E("GET", "customvision:training-untagged",             "401 401 401 401 401"),
    E("GET", "customvision:training-untagged-count",       "401 401 401 401 401"),
    E("POST", "customvision:training-image-tags",           "401 401 401 401 401"),
    E("DELETE", "customvision:training-image-tags",           "401 401 401 401 401"),
    E("POST", "customvision:training-image-regions",        "401 401 401 401 401"),
    E("DELETE", "customvision:training-image-regions",        "401 401 401 401 401"),
    E("POST", "customvision:training-train",                "401 401 401 401 401"),
    E("GET", "customvision:training-iterations",           "401 401 401 401 401"),
    E("GET", "customvision:training-iteration",            "401 401 401 401 401"),
    E("PATCH", "customvision:training-iteration",            "401 401 401 401 401"),
    E("DELETE", "customvision:training-iteration",            "401 401 401 401 401"),
    E("POST", "customvision:training-publish",              "401 401 401 401 401"),
    E("DELETE", "customvision:training-publish",              "401 401 401 401 401"),
    E("GET", "customvision:training-performance",          "401 401 401 401 401"),
    E("GET", "customvision:training-image-performances",   "401 401 401 401 401"),
    E("GET", "customvision:training-image-performance-count", "401 401 401 401 401"),
    E("GET", "customvision:training-export",               "401 401 401 401 401"),
    E("POST", "customvision:training-export",               "401 401 401 401 401"),
    E("POST", "customvision:training-quicktest-image",      "401 401 401 401 401"),
    E("POST", "customvision:training-quicktest-url",        "401 401 401 401 401"),
    E("POST", "customvision:training-predictions-query",    "401 401 401 401 401"),
    E("DELETE", "customvision:training-predictions",          "401 401 401 401 401"),
    E("POST", "customvision:training-suggestions",          "401 401 401 401 401"),
    # Custom Vision's Prediction API: Prediction-Key only (tests/customvision has the keys).
    E("POST", "cv-predict-classify-image",               "401 401 401 401 401"),
    E("POST", "cv-predict-classify-image-nostore",       "401 401 401 401 401"),
    E("POST", "cv-predict-classify-url",                 "401 401 401 401 401"),
    E("POST", "cv-predict-classify-url-nostore",         "401 401 401 401 401"),
    E("POST", "cv-predict-detect-image",                 "401 401 401 401 401"),
    E("POST", "cv-predict-detect-image-nostore",         "401 401 401 401 401"),
    E("POST", "cv-predict-detect-url",                   "401 401 401 401 401"),
    E("POST", "cv-predict-detect-url-nostore",           "401 401 401 401 401"),
    # --- The user's own API keys (HTML): every signed-in user, for their own account ----------
    E("GET", "labeling:api-keys",                        "200 200 200 200 302"),
    E("POST", "labeling:api-keys",                       "200 200 200 200 302", lambda w: {"name": "ci", "kind": "training"}, "form"),
]

# The same calls when the image is a stored prediction (source "prediction", not training data
# yet): reviewer-and-up, as the Predictions tab is, so annotators get 403 where they got 200.
# Every route that names one image (by id or by file path) needs a line here too.
# One line per (method, route): the codes are for      admin rev  ann  non  anon
STORED_PREDICTION_MATRIX: list[Entry] = [
    E("GET", "media",                                    "200 200 404 404 302"),
    E("GET", "api-image-detail",                         "200 200 403 404 401"),
    E("DELETE", "api-image-detail",                      "204 204 403 404 401"),
    E("PUT", "api-image-tags",                           "200 200 403 404 401", lambda w: {"tag_ids": [], "version": None}),
    E("POST", "api-image-tags",                          "200 200 403 404 401", _dog),
    E("DELETE", "api-image-tags",                        "200 200 403 404 401", lambda w: {"tag_id": w.kwargs["tag_id"]}),
    E("GET", "labeling:image-tag",                       "200 200 403 404 302"),
    E("POST", "labeling:image-tag-toggle",               "302 302 403 404 302", lambda w: {"tag": w.objects["dog"].id, "version": 1}),
    E("POST", "labeling:image-tag-undo",                 "302 302 403 404 302", lambda w: {"tags": "", "version": 1}),
    E("POST", "labeling:image-delete",                   "302 302 403 404 302"),
    # Multiclass world: 422 before the image is looked up; test_stored_predictions.py has the
    # box editor of a detection project.
    E("GET", "labeling:image-boxes",                     "422 422 422 404 302"),
    E("POST", "labeling:image-boxes",                    "422 422 422 404 302"),
    E("POST", "predictions:prediction-promote",          "302 302 403 404 302"),
    E("POST", "predictions:suggestion-accept",           "302 302 403 404 302"),
    E("GET", "api-image-regions",                        "422 422 422 404 401"),
    E("POST", "api-prediction-promote",                  "200 200 403 404 401", lambda w: {"tag_ids": [w.objects["dog"].id]}),
    E("POST", "api-suggestion-accept",                   "422 422 403 404 401"),
]
# fmt: on


# --- The world every request points at -------------------------------------------------------


def _iteration(project: Any, user: Any) -> Any:
    from training.models import Iteration

    return Iteration.objects.create(
        project=project,
        number=1,
        name="Iteration 1",
        status=Iteration.Status.COMPLETED,
        backbone="lite0",
        created_by=user,
    )


def _import_job(project: Any, user: Any) -> str:
    from labeling.services.import_jobs import start_import

    return start_import(
        project=project, upload=_folders_zip(), format_name="folders", by=user
    ).job_id


def _export_job(project: Any, user: Any) -> str:
    """A finished export (run here as the worker would), so its download answers 200."""
    from labeling.services.export_jobs import run_export, start_export

    job = start_export(project=project, format_name="folders", by=user)
    return run_export(project_id=project.pk, job_id=job.job_id).job_id


def _model_export(project: Any) -> int:
    """A finished model export of the world's iteration, so its download answers 200 (the real
    export is tested in tests/training/test_model_export.py)."""
    from django.core.files.base import ContentFile

    from training.models import ModelExport

    export = ModelExport.objects.create(
        iteration=project.iterations.get(number=1), platform="ONNX", status="done"
    )
    export.file.save("world.zip", ContentFile(b"PK\x05\x06" + bytes(18)), save=True)
    return export.pk


def _saved_filter(project: Any, user: Any, tag: Any) -> int:
    from labeling.services.saved_filters import save_filter

    return save_filter(project=project, name="Dogs", tag_ids=[tag.pk], by=user).pk


def _prediction_key(project: Any, user: Any) -> int:
    from predictions.services.keys import create_key

    return create_key(project=project, name="World", by=user).key.pk


@pytest.fixture
def world(project, users) -> World:
    cat, dog = TagFactory(project=project, name="cat"), TagFactory(project=project, name="dog")
    image = ImageFactory(project=project, is_tagged=True)
    ImageTagFactory(image=image, tag=cat)
    # The member the membership endpoints act on: not the only admin, so demoting works.
    extra = MembershipFactory(project=project, role=Role.ANNOTATOR, user__username="extra")
    return World(
        kwargs={
            "project_id": project.id,
            "tag_id": cat.id,
            "image_id": image.id,
            "membership_id": extra.id,
            "iteration_id": _iteration(project, users["admin"]).id,
            "region_id": RegionFactory(image=image, tag=cat).id,
            "key_id": _prediction_key(project, users["admin"]),
            "job_id": uuid.UUID(_import_job(project, users["admin"])),
            "export_id": uuid.UUID(_export_job(project, users["admin"])),
            "model_export_id": _model_export(project),
            "path": image.file.name,
            "publish_name": "prod",
            "saved_filter_id": _saved_filter(project, users["admin"], dog),
        },
        objects={"dog": dog, "project_name": project.name},
    )


@pytest.fixture
def prediction_world(world: World, project) -> World:
    """The world, with its image a stored prediction (with a thumbnail) of the same project."""
    from django.core.files.base import ContentFile

    image = ImageFactory(
        project=project,
        source=Image.Source.PREDICTION,
        is_training=False,
        thumbnail=ContentFile(make_image(8, 8, (1, 2, 3)), name="thumb.png"),
    )
    ImageTagFactory(image=image, tag=world.objects["dog"])
    from predictions.models import Prediction

    Prediction.objects.create(
        project=project, iteration_id=world.kwargs["iteration_id"], image=image
    )
    kwargs = {**world.kwargs, "image_id": image.id, "path": image.file.name}
    return World(kwargs=kwargs, objects={**world.objects, "thumbnail": image.thumbnail.name})


def _request(client: APIClient, entry: Entry, world: World, url: str) -> int:
    body = entry.body(world) if entry.body else {}
    call = getattr(client, entry.method.lower())
    if entry.method == "GET" or entry.fmt == "form":
        return call(url, body).status_code  # a query string, or what an HTML form posts
    return call(url, body, format=entry.fmt).status_code


def _url(entry: Entry, world: World) -> str:
    pattern = _routes()[entry.name]
    return reverse(entry.name, kwargs={k: world.kwargs[k] for k in pattern.converters}) + (
        entry.query.format(**world.kwargs)
    )


# --- Reading the URLconf ---------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    name: str
    converters: tuple[str, ...]


def _walk(patterns: list[Any], namespace: str, converters: tuple[str, ...]) -> Iterator[Route]:
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            inner = f"{namespace}{pattern.namespace}:" if pattern.namespace else namespace
            own = tuple(getattr(pattern.pattern, "converters", {}))
            yield from _walk(pattern.url_patterns, inner, converters + own)
        elif isinstance(pattern, URLPattern):
            own = tuple(getattr(pattern.pattern, "converters", {})) or tuple(
                pattern.pattern.regex.groupindex
            )
            yield Route(
                f"{namespace}{pattern.name or '<unnamed ' + str(pattern.pattern) + '>'}",
                converters + own,
            )


def _routes() -> dict[str, Route]:
    routes = {}
    for route in _walk(get_resolver().url_patterns, "", ()):
        if route.name.startswith(tuple(EXCLUDED_PREFIXES)) or route.name in EXCLUDED_NAMES:
            continue
        routes[route.name] = route
    return routes


# --- The tests -------------------------------------------------------------------------------


def _login(client: APIClient, users: dict[str, Any], role: str) -> None:
    client.logout()
    if role != "anonymous":
        client.force_login(users[role])


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("entry", MATRIX, ids=[entry.id for entry in MATRIX])
def test_role_matrix(entry: Entry, role: str, world: World, users) -> None:
    client = APIClient()
    _login(client, users, role)
    world.objects["username"] = users[role].username if role != "anonymous" else "nobody"
    status = _request(client, entry, world, _url(entry, world))
    expected = entry.codes[ROLES.index(role)]
    assert status == expected, f"{entry.id} as {role}: {status}, expected {expected}"


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(
    "entry", STORED_PREDICTION_MATRIX, ids=[entry.id for entry in STORED_PREDICTION_MATRIX]
)
def test_stored_prediction_matrix(entry: Entry, role: str, prediction_world: World, users) -> None:
    client = APIClient()
    _login(client, users, role)
    status = _request(client, entry, prediction_world, _url(entry, prediction_world))
    expected = entry.codes[ROLES.index(role)]
    assert status == expected, (
        f"{entry.id} on a stored prediction as {role}: {status}, expected {expected}"
    )


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
def test_stored_prediction_thumbnail(role: str, prediction_world: World, users) -> None:
    client = APIClient()
    _login(client, users, role)
    url = reverse("media", kwargs={"path": prediction_world.objects["thumbnail"]})
    expected = {"admin": 200, "reviewer": 200, "annotator": 404, "non_member": 404}.get(role, 302)
    assert client.get(url).status_code == expected


def test_every_image_route_has_a_stored_prediction_line() -> None:
    """A route that names one image (by id or file path) must say what it does for a stored one."""
    lines = {(entry.method, entry.name) for entry in STORED_PREDICTION_MATRIX}
    names = {
        name for name, route in _routes().items() if {"image_id", "path"} & set(route.converters)
    }
    missing = sorted(
        f"{entry.method} {entry.name}"
        for entry in MATRIX
        if entry.name in names and (entry.method, entry.name) not in lines
    )
    assert not missing, f"image routes without a stored-prediction line: {missing}"


@pytest.mark.django_db
def test_every_endpoint_has_a_line_in_the_matrix(world: World, users) -> None:
    """Each method a route answers (not 405, probed as a non-member) needs a MATRIX line."""
    lines = {(entry.method, entry.name) for entry in MATRIX}
    routes = _routes()
    unnamed = [name for name in routes if name.startswith("<unnamed")]
    assert not unnamed, f"routes without a name cannot be listed in the matrix: {unnamed}"
    stale = sorted({name for _, name in lines} - set(routes))
    assert not stale, f"MATRIX lines for routes that no longer exist: {stale}"
    client = APIClient()
    missing = []
    for name, route in routes.items():
        url = reverse(name, kwargs={k: world.kwargs[k] for k in route.converters})
        for method in METHODS:
            if (method, name) in lines:
                continue
            _login(client, users, "non_member")
            if getattr(client, method.lower())(url).status_code != 405:
                missing.append(f"{method} {name}")
    assert not missing, f"endpoints without a line in the role matrix: {missing}"


@pytest.mark.django_db
def test_matrix_lines_are_unique() -> None:
    ids = [entry.id for entry in MATRIX]
    assert len(ids) == len(set(ids)), "a (method, route) appears twice in MATRIX"


@pytest.mark.django_db
def test_superuser_is_admin_everywhere(world: World, users, django_user_model) -> None:
    root = django_user_model.objects.create_superuser("root", password="password123")
    client = APIClient()
    client.force_login(root)
    response = client.patch(
        f"/api/projects/{world.kwargs['project_id']}/", {"name": "Root's"}, format="json"
    )
    assert response.status_code == 200
    assert not Membership.objects.filter(user=root).exists()
