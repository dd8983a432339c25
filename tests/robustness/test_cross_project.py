# ruff: noqa: F811  (test parameters named after the imported `roles_world` fixture)
"""No route lets one project reach another's data, and none tells whether another's ids exist.

Table-driven from the role matrix (tests/labeling/test_roles.py: one line per route and method,
kept complete by its own test), so a new route is covered here as soon as it has its line:

- the admin of project A calls every route of A with the ids (URL and body) of project B: the
  answer is the one a made-up id gets (same status, same error code), B is unchanged, and no
  answer shows B's names;
- a prediction key of A, a rotated-away key and a revoked key of B, sent as `Prediction-Key` and
  as `Authorization: Token`, open nothing: every route answers as to an anonymous caller, and
  the prediction API answers B's routes exactly as it answers a project that does not exist.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest
from django.core import serializers
from django.db import transaction
from django.urls import reverse
from rest_framework.test import APIClient

from labeling.models import Image, ImageTag, Membership, Project, Role, Tag
from tests.conftest import make_image
from tests.factories import MembershipFactory, ProjectFactory
from tests.labeling.test_roles import MATRIX, ROLES, Entry, World, _routes

# The role matrix's `world` fixture (project B here), registered in this module as `roles_world`.
from tests.labeling.test_roles import world as roles_world  # noqa: F401
from tests.predictions.conftest import colour_artifact  # noqa: F401 - a session fixture

MISSING_INT = 2**31 - 1
KEY_ROUTES = (
    "api-predict-classify",
    "api-predict-classify-nostore",
    "api-predict-detect",
    "api-predict-detect-nostore",
)


def _missing(value: Any) -> Any:
    """An id of the same type as `value` that names nothing."""
    if isinstance(value, uuid.UUID):
        return uuid.uuid4()
    if isinstance(value, int):
        return MISSING_INT
    if "/" in str(value):  # a media path
        return f"images/{uuid.uuid4().hex}.png"
    return f"missing-{uuid.uuid4().hex[:8]}"


def _snapshot(project: Project) -> str:
    """Every row of the project (and of the models that hang off it), as one comparable string."""
    from training.models import Iteration

    rows: list[Any] = [Project.objects.get(pk=project.pk)]
    for model in (Tag, Image, Membership, Iteration):
        rows += list(model.objects.filter(project=project).order_by("pk"))
    rows += list(ImageTag.objects.filter(image__project=project).order_by("pk"))
    return serializers.serialize("json", rows)


def _url(entry: Entry, kwargs: dict[str, Any]) -> str:
    route = _routes()[entry.name]
    return reverse(entry.name, kwargs={k: kwargs[k] for k in route.converters}) + (
        entry.query.format(**kwargs)
    )


def _answer(client: APIClient, entry: Entry, world: World, kwargs: dict[str, Any]) -> tuple:
    """(status, error code) of one request, with every write it made rolled back."""
    with transaction.atomic():
        status = _request_status(client, entry, world, _url(entry, kwargs))
        transaction.set_rollback(True)
    return status


def _request_status(client: APIClient, entry: Entry, world: World, url: str) -> tuple:
    body = entry.body(world) if entry.body else {}
    call = getattr(client, entry.method.lower())
    if entry.method == "GET" or entry.fmt == "form":
        response = call(url, body)
    else:
        response = call(url, body, format=entry.fmt)
    code = None
    if response.get("Content-Type", "").startswith("application/json"):
        code = response.json().get("code") if isinstance(response.json(), dict) else None
    content = b"" if response.streaming else response.content
    return response.status_code, code, content


def _is_key_route(entry: Entry) -> bool:
    """The prediction API's routes (Loupe's and Custom Vision's): a key is their credential."""
    return entry.name in KEY_ROUTES or entry.name.startswith("cv-predict-")


def _reaches_another_project(entry: Entry) -> bool:
    converters = set(_routes()[entry.name].converters)
    return not _is_key_route(entry) and bool(converters)


CROSS = [entry for entry in MATRIX if _reaches_another_project(entry)]


@pytest.mark.django_db
def test_ids_of_another_project_answer_as_ids_that_do_not_exist(roles_world: World, users):
    """Project B is the role matrix's world; the caller is the admin of project A only.

    One test for every route (each request is rolled back), so the world is built once.
    """
    world = roles_world
    Project.objects.filter(pk=world.kwargs["project_id"]).update(name="Bravo-7f3e-secret")
    b_project = Project.objects.get(pk=world.kwargs["project_id"])
    # Bodies never carry B's name, so an answer that shows it found it itself.
    world.objects["project_name"] = "missing"
    a_project = ProjectFactory(name="Alpha")
    caller = MembershipFactory(project=a_project, role=Role.ADMIN, user__username="alpha").user
    client = APIClient()
    client.force_login(caller)
    world.objects["username"] = caller.username
    b_kwargs = {**world.kwargs, "project_id": a_project.pk}
    made_up = World(
        kwargs={
            **{k: _missing(v) for k, v in world.kwargs.items()},
            "project_id": a_project.pk,
            "publish_name": world.kwargs["publish_name"],
        },
        objects={
            **world.objects,
            "dog": SimpleNamespace(id=MISSING_INT, pk=MISSING_INT),
            "project_name": "missing",
        },
    )
    before = _snapshot(b_project)
    assert len(CROSS) > 40, "the role matrix lost its routes"
    problems = []
    for entry in CROSS:
        b_status, b_code, b_content = _answer(client, entry, world, b_kwargs)
        m_status, m_code, _ = _answer(client, entry, made_up, made_up.kwargs)
        if (b_status, b_code) != (m_status, m_code):
            problems.append(
                f"{entry.id}: {b_status} {b_code} with B's ids, {m_status} {m_code} with ids "
                "that do not exist (an existence oracle)"
            )
        if b_status in {200, 201, 202, 204} and set(_routes()[entry.name].converters) - {
            "project_id"
        }:
            problems.append(f"{entry.id}: {b_status} for another project's object")
        if _snapshot(b_project) != before:
            problems.append(f"{entry.id} changed project B")
            before = _snapshot(b_project)
        for secret in (b_project.name, world.kwargs["path"]):
            if secret.encode() in b_content:
                problems.append(f"{entry.id} showed project B's {secret!r}")
    assert not problems, "\n".join(problems)


# --- Prediction keys -----------------------------------------------------------------------


@dataclass
class Keys:
    a: str  # a live key of project A
    b_rotated_away: str  # project B's key before it was rotated
    b_revoked: str  # a revoked key of project B
    b_live: str  # B's own live key (the control: it works)


@pytest.fixture
def keys(roles_world: World, users) -> Keys:
    world = roles_world
    from predictions.services.keys import create_key, revoke_key, rotate_key

    b_project = Project.objects.get(pk=world.kwargs["project_id"])
    admin_b = users["admin"]
    a_project = ProjectFactory(name="Alpha")
    admin_a = MembershipFactory(project=a_project, role=Role.ADMIN).user
    a_key = create_key(project=a_project, name="a", by=admin_a).secret
    first = create_key(project=b_project, name="rotated", by=admin_b)
    row = b_project.prediction_keys.get(name="rotated")
    live = rotate_key(project=b_project, key_id=row.pk, by=admin_b).secret
    revoked = create_key(project=b_project, name="revoked", by=admin_b)
    revoke_key(
        project=b_project, key_id=b_project.prediction_keys.get(name="revoked").pk, by=admin_b
    )
    return Keys(a_key, first.secret, revoked.secret, live)


NOT_KEY_ROUTES = [entry for entry in MATRIX if not _is_key_route(entry)]


@pytest.mark.django_db
def test_a_prediction_key_opens_nothing_but_prediction(roles_world: World, keys: Keys):
    """Sent to any other route, a prediction key is no credential: the anonymous answer.

    B's own live key on B's routes in the header the prediction API reads (the closest a key
    comes to B's data), and A's key as a REST API token.
    """
    world = roles_world
    world.objects["username"] = "nobody"
    problems = []
    for entry in NOT_KEY_ROUTES:
        anonymous = entry.codes[ROLES.index("anonymous")]
        for header, secret in (
            ("Prediction-Key", keys.b_live),
            ("Authorization", keys.a),
        ):
            client = APIClient()
            if header == "Prediction-Key":
                client.credentials(HTTP_PREDICTION_KEY=secret)
            else:
                client.credentials(HTTP_AUTHORIZATION=f"Token {secret}")
            status = _answer(client, entry, world, world.kwargs)[0]
            # An unknown token is a failed authentication (401) where anonymous gets 400.
            allowed = {anonymous, 401} if header == "Authorization" else {anonymous}
            if status not in allowed:
                problems.append(f"{entry.id} with a prediction key as {header}: {status}")
    assert not problems, "\n".join(problems)


def _predict(name: str, project_id: int, secret: str) -> tuple[int, Any]:
    """(status, JSON body) of prediction route `name` for project `project_id` with a key."""
    by_url = "-url" in name  # Custom Vision's url routes take {"Url": ...}
    body = b'{"Url": "http://127.0.0.1:9/x.png"}' if by_url else make_image(40, 40, (200, 0, 0))
    url = reverse(name, kwargs={"project_id": project_id, "publish_name": "prod"})
    response = APIClient().generic(
        "POST",
        url,
        body,
        content_type="application/json" if by_url else "application/octet-stream",
        HTTP_PREDICTION_KEY=secret,
    )
    return response.status_code, response.json()


ALL_KEY_ROUTES = sorted(n for n in _routes() if n in KEY_ROUTES or n.startswith("cv-predict-"))


@pytest.mark.django_db
def test_keys_of_another_project_rotated_away_or_revoked_are_401_like_no_project(
    roles_world: World, keys: Keys, colour_artifact: bytes, users, settings, tmp_path
):
    """On every prediction route (Loupe's and Custom Vision's), in one world."""
    from predictions.model_cache import model_cache
    from tests.predictions.conftest import colour_iteration
    from training.services.publishing import publish_iteration

    settings.LOUPE_FEATURE_CACHE_DIR = tmp_path / "features"
    model_cache().clear()
    world = roles_world
    b_project = Project.objects.get(pk=world.kwargs["project_id"])
    tags = [Tag.objects.create(project=b_project, name=n) for n in ("red", "green", "blue")]
    iteration = colour_iteration(b_project, tags, colour_artifact, number=2)
    publish_iteration(iteration=iteration, name="prod", by=users["admin"])
    assert len(ALL_KEY_ROUTES) >= 4
    problems = []
    for name in ALL_KEY_ROUTES:
        by_url = "-url" in name
        nothing = _predict(name, MISSING_INT, keys.a)
        if nothing[0] != 401:
            problems.append(f"{name}: {nothing} for a project that does not exist")
        for label, secret in (
            ("A's key", keys.a),
            ("B's rotated-away key", keys.b_rotated_away),
            ("B's revoked key", keys.b_revoked),
            ("a made-up key", "lpk_made-up"),
        ):
            answer = _predict(name, b_project.pk, secret)
            if answer != nothing:
                problems.append(f"{name} with {label}: {answer}, not {nothing}")
        # The control: B's own live key gets past the key check (B classifies: detect is a
        # 400; a url on this machine is refused as not public, 400).
        control = _predict(name, b_project.pk, keys.b_live)
        if control[0] != (200 if "classify" in name and not by_url else 400):
            problems.append(f"{name} with B's live key: {control}")
    assert not problems, "\n".join(problems)
