"""Prediction keys: admins create, rotate and revoke them; the API authenticates with them.

A key is shown once, when it is made (or rotated); only its SHA-256 is stored. Rotating gives
the same key row a new secret (the old one stops working at once); revoking ends it for good.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from labeling.access import require_role
from labeling.models import Project, Role
from predictions.models import PredictionKey
from project.errors import LoupeError, NotFound, ValidationFailed

KEY_PREFIX = "lpk_"
PREFIX_SHOWN = 10  # "lpk_" and 6 random characters: enough to tell keys apart in a list


class Unauthorized(LoupeError):
    code = "Unauthorized"
    http_status = 401


@dataclass(frozen=True)
class IssuedKey:
    """A key row and its secret, which exists only in this object (show it once)."""

    key: PredictionKey
    secret: str


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


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


def authenticate_key(*, project_id: int, secret: str | None) -> None:
    """Raise Unauthorized unless `secret` is a live key of the project (one indexed query)."""
    if secret:
        live = PredictionKey.objects.filter(
            key_hash=hash_key(secret.strip()), project_id=project_id, revoked__isnull=True
        ).exists()
        if live:
            return
    raise Unauthorized("The Prediction-Key header is missing, wrong or revoked for this project.")
