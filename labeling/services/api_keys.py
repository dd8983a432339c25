"""Account API keys (Custom Vision's Training-Key and Prediction-Key): create, rotate, revoke,
authenticate.

A key is shown once, when it is made or rotated; only its SHA-256 is stored. Rotating gives
the same key row a new secret (the old one stops working at once); revoking ends it for good.
Each user manages only their own keys.

A training key acts as its user: `authenticate_training_key` returns the user, and every
service the Training API calls then checks that user's roles as it would for the browser.
Prediction keys are checked by `predictions.services.keys.authenticate_prediction_key`, which
also knows the projects' own keys.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from labeling.models import ApiKey
from project.errors import LoupeError, NotFound, ValidationFailed

# Prefixes tell a leaked key's kind at a glance (and let secret scanners match them).
KEY_PREFIXES = {ApiKey.Kind.TRAINING: "lpt_", ApiKey.Kind.PREDICTION: "lpp_"}
PREFIX_SHOWN = 10  # the kind's prefix and 6 random characters: enough to tell keys apart
MAX_NAME_CHARS = 100


class Unauthorized(LoupeError):
    """A missing, wrong or revoked key (Custom Vision answers 401; the SDK raises on it)."""

    code = "Unauthorized"
    http_status = 401


@dataclass(frozen=True)
class IssuedApiKey:
    """A key row and its secret, which exists only in this object (show it once)."""

    key: ApiKey
    secret: str


def hash_key(secret: str) -> str:
    """The stored form of a key (this and project prediction keys)."""
    return hashlib.sha256(secret.strip().encode("utf-8")).hexdigest()


def new_secret(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


def _kind(kind: str) -> ApiKey.Kind:
    try:
        return ApiKey.Kind(kind)
    except ValueError:
        raise ValidationFailed("A key is either a training key or a prediction key.") from None


def _name(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise ValidationFailed("Give the key a name, such as the script or app that will use it.")
    if len(name) > MAX_NAME_CHARS:
        raise ValidationFailed(f"A key name can have at most {MAX_NAME_CHARS} characters.")
    return name


def create_api_key(*, user: AbstractBaseUser, kind: str, name: str) -> IssuedApiKey:
    """A new key of `user` (who acts through it); the secret is in the result only."""
    kind = _kind(kind)
    name = _name(name)
    if not user.is_active:
        raise ValidationFailed("This account is deactivated; its keys would not work.")
    secret = new_secret(KEY_PREFIXES[kind])
    key = ApiKey.objects.create(
        user=user, kind=kind, name=name, prefix=secret[:PREFIX_SHOWN], key_hash=hash_key(secret)
    )
    return IssuedApiKey(key, secret)


def _own_key(user: AbstractBaseUser, key_id: int) -> ApiKey:
    key = ApiKey.objects.select_for_update().filter(user_id=user.pk, pk=key_id).first()
    if key is None:
        raise NotFound("You have no API key with this id.")
    return key


@transaction.atomic
def rotate_api_key(*, user: AbstractBaseUser, key_id: int) -> IssuedApiKey:
    """Give the key a new secret; the old secret stops working now."""
    key = _own_key(user, key_id)
    if key.is_revoked:
        raise ValidationFailed("A revoked key cannot be rotated. Create a new key instead.")
    secret = new_secret(KEY_PREFIXES[ApiKey.Kind(key.kind)])
    key.prefix, key.key_hash, key.rotated = secret[:PREFIX_SHOWN], hash_key(secret), timezone.now()
    key.save(update_fields=["prefix", "key_hash", "rotated"])
    return IssuedApiKey(key, secret)


@transaction.atomic
def revoke_api_key(*, user: AbstractBaseUser, key_id: int) -> ApiKey:
    """End the key for good (revoking twice is harmless)."""
    key = _own_key(user, key_id)
    if not key.is_revoked:
        key.revoked = timezone.now()
        key.save(update_fields=["revoked"])
    return key


def user_for_key(secret: str | None, kind: str) -> AbstractBaseUser | None:
    """The active user whose live key of `kind` `secret` is, or None (one indexed query)."""
    if not secret or not secret.strip():
        return None
    key = (
        ApiKey.objects.filter(
            key_hash=hash_key(secret), kind=kind, revoked__isnull=True, user__is_active=True
        )
        .select_related("user")
        .first()
    )
    return key.user if key is not None else None


def authenticate_training_key(secret: str | None) -> AbstractBaseUser:
    """The user a Training-Key acts as; Unauthorized (401) for a missing, wrong or revoked key,
    or one of a deactivated account."""
    user = user_for_key(secret, ApiKey.Kind.TRAINING)
    if user is None:
        raise Unauthorized(
            "The Training-Key header is missing, wrong or revoked. Create a training key on "
            "the API keys page."
        )
    return user


def find_user(username: str) -> AbstractBaseUser:
    """The account called `username` (the create_api_key command's argument)."""
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        raise NotFound(f"There is no user called “{username}”.")
    return user
