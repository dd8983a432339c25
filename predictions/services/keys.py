"""Prediction keys: a project's own (admins create, rotate and revoke them) and, through
`authenticate_prediction_key`, accounts' prediction keys (labeling.services.api_keys).

A key is shown once, when it is made (or rotated); only its SHA-256 is stored. Rotating gives
the same key row a new secret (the old one stops working at once); revoking ends it for good.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from labeling.access import ROLE_RANK, require_role, role_in
from labeling.models import ApiKey, Project, Role
from labeling.services.api_keys import Unauthorized, hash_key, user_for_key
from predictions.models import PredictionKey
from project.errors import Forbidden, NotFound, ValidationFailed

KEY_PREFIX = "lpk_"
PREFIX_SHOWN = 10  # "lpk_" and 6 random characters: enough to tell keys apart in a list

# Calling a project's prediction API with an account key needs a member; storing the result
# needs the reviewer role, as the quick test's "Store it" does: stored predictions fill the
# Predictions tab, which reviewers triage.
PREDICT_ROLE = Role.ANNOTATOR
STORE_PREDICTION_ROLE = Role.REVIEWER


@dataclass(frozen=True)
class IssuedKey:
    """A key row and its secret, which exists only in this object (show it once)."""

    key: PredictionKey
    secret: str


__all__ = ["Unauthorized", "hash_key"]  # re-exported: one hash and one 401 for every key


def _new_secret() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def create_key(*, project: Project, name: str, by: AbstractBaseUser) -> IssuedKey:
    require_role(by, project, Role.ADMIN)
    name = (name or "").strip()
    if not name:
        raise ValidationFailed("Give the key a name, such as the app that will use it.")
    if len(name) > 100:
        raise ValidationFailed("A key name can have at most 100 characters.")
    secret = _new_secret()
    key = PredictionKey.objects.create(
        project=project,
        name=name,
        prefix=secret[:PREFIX_SHOWN],
        key_hash=hash_key(secret),
        created_by=by,
    )
    return IssuedKey(key, secret)


def _own_key(project: Project, key_id: int) -> PredictionKey:
    key = PredictionKey.objects.select_for_update().filter(project=project, pk=key_id).first()
    if key is None:
        raise NotFound("This prediction key does not exist in this project.")
    return key


@transaction.atomic
def rotate_key(*, project: Project, key_id: int, by: AbstractBaseUser) -> IssuedKey:
    """Give the key a new secret; the old secret stops working now."""
    require_role(by, project, Role.ADMIN)
    key = _own_key(project, key_id)
    if key.is_revoked:
        raise ValidationFailed("A revoked key cannot be rotated. Create a new key instead.")
    secret = _new_secret()
    key.prefix, key.key_hash, key.rotated = secret[:PREFIX_SHOWN], hash_key(secret), timezone.now()
    key.save(update_fields=["prefix", "key_hash", "rotated"])
    return IssuedKey(key, secret)


@transaction.atomic
def revoke_key(*, project: Project, key_id: int, by: AbstractBaseUser) -> PredictionKey:
    require_role(by, project, Role.ADMIN)
    key = _own_key(project, key_id)
    if not key.is_revoked:
        key.revoked = timezone.now()
        key.save(update_fields=["revoked"])
    return key


@dataclass(frozen=True)
class PredictionCaller:
    """Who a Prediction-Key lets in: a project key (`project_key`) or an account's key, which
    acts as its user (`user`)."""

    project_key: PredictionKey | None = None
    user: AbstractBaseUser | None = None


def authenticate_prediction_key(
    secret: str | None, project: Project | int, *, store: bool = True
) -> PredictionCaller:
    """Raise Unauthorized (401) unless `secret` is a live key for `project`: one of the
    project's own keys, or an account prediction key whose user is a member of it. Storing
    the result with an account key needs the reviewer role (Forbidden, 403, below it).

    A non-member's account key is the same 401 as a wrong key: the API tells no one which
    project ids exist. `project` may be an id whose project is gone (a 401 then).
    """
    project_id = project.pk if isinstance(project, Project) else project
    if secret and secret.strip() and project_id:
        key = PredictionKey.objects.filter(
            key_hash=hash_key(secret), project_id=project_id, revoked__isnull=True
        ).first()
        if key is not None:
            return PredictionCaller(project_key=key)
        user = user_for_key(secret, ApiKey.Kind.PREDICTION)
        if user is not None:
            if not isinstance(project, Project):
                project = Project.objects.filter(pk=project_id).first()  # type: ignore[assignment]
            role = role_in(user, project) if isinstance(project, Project) else None
            if role is not None and ROLE_RANK[role] >= ROLE_RANK[PREDICT_ROLE]:
                if store and ROLE_RANK[role] < ROLE_RANK[STORE_PREDICTION_ROLE]:
                    raise Forbidden(
                        "Your key may call this project's model but not store the image: "
                        "stored predictions need the reviewer role. Use the /nostore endpoint."
                    )
                return PredictionCaller(user=user)
    raise Unauthorized("The Prediction-Key header is missing, wrong or revoked for this project.")
