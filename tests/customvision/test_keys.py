"""Account API keys and the id mapping: services, authentication and the management command."""

from __future__ import annotations

import uuid
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from customvision.ids import InvalidCvId, Kind, from_uuid, parse_uuid_list, to_uuid
from labeling.models import ApiKey
from labeling.services.api_keys import (
    Unauthorized,
    authenticate_training_key,
    create_api_key,
    hash_key,
    revoke_api_key,
    rotate_api_key,
)
from predictions.services.keys import authenticate_prediction_key, create_key
from project.errors import Forbidden, NotFound, ValidationFailed
from tests.factories import ProjectFactory, UserFactory

# --- The id mapping ------------------------------------------------------------------------


@pytest.mark.parametrize("pk", [1, 42, 2**48 + 5, 2**62, 2**63 - 1])
def test_uuid_round_trips_every_id(pk: int) -> None:
    text = to_uuid(Kind.PROJECT, pk)
    assert str(uuid.UUID(text)) == text  # lowercase, hyphenated: what the SDK sends back
    assert from_uuid(text, Kind.PROJECT) == pk
    assert from_uuid(text.upper().replace("-", ""), Kind.PROJECT) == pk


def test_uuid_of_another_kind_names_nothing() -> None:
    assert from_uuid(to_uuid(Kind.TAG, 7), Kind.PROJECT) is None
    assert from_uuid(to_uuid(Kind.TAG, 7), Kind.TAG) == 7


@pytest.mark.parametrize(
    "value",
    ["", "abc", "0", "-1", str(2**63), str(uuid.uuid4()), "ee85a74c-405e-4adc-bb47-ffa8ca0c9f31"],
)
def test_foreign_values_are_not_ids(value: str) -> None:
    assert from_uuid(value, Kind.PROJECT) is None


def test_plain_integers_are_accepted() -> None:
    assert from_uuid("42", Kind.TAG) == 42
    assert from_uuid(42, Kind.TAG) == 42


def test_uuid_list_parses_csv_and_refuses_a_bad_item() -> None:
    csv = f"{to_uuid(Kind.TAG, 3)},{to_uuid(Kind.TAG, 4)},5"
    assert parse_uuid_list(csv, Kind.TAG, field="tagIds", max_count=20) == [3, 4, 5]
    with pytest.raises(InvalidCvId) as err:
        parse_uuid_list(f"{to_uuid(Kind.PROJECT, 3)}", Kind.TAG, field="tagIds", max_count=20)
    assert err.value.http_status == 400 and err.value.code == "BadRequestInvalidIds"
    with pytest.raises(InvalidCvId):
        parse_uuid_list(["1", "2", "3"], Kind.TAG, field="tagIds", max_count=2)


# --- Account keys ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_training_key_is_stored_hashed_and_acts_as_its_user() -> None:
    user = UserFactory()
    issued = create_api_key(user=user, kind="training", name="notebook")
    key = ApiKey.objects.get()
    assert issued.secret.startswith("lpt_") and issued.secret not in key.key_hash
    assert key.key_hash == hash_key(issued.secret) and key.prefix == issued.secret[:10]
    assert authenticate_training_key(issued.secret) == user
    assert authenticate_training_key(f"  {issued.secret}\n") == user


@pytest.mark.django_db
@pytest.mark.parametrize("secret", [None, "", "lpt_wrong"])
def test_missing_or_wrong_training_key_is_401(secret) -> None:
    create_api_key(user=UserFactory(), kind="training", name="x")
    with pytest.raises(Unauthorized) as err:
        authenticate_training_key(secret)
    assert err.value.http_status == 401


@pytest.mark.django_db
def test_prediction_key_is_not_a_training_key() -> None:
    issued = create_api_key(user=UserFactory(), kind="prediction", name="app")
    assert issued.secret.startswith("lpp_")
    with pytest.raises(Unauthorized):
        authenticate_training_key(issued.secret)


@pytest.mark.django_db
def test_rotate_replaces_the_secret_and_revoke_ends_it() -> None:
    user = UserFactory()
    first = create_api_key(user=user, kind="training", name="ci")
    second = rotate_api_key(user=user, key_id=first.key.pk)
    assert second.key.pk == first.key.pk and second.secret != first.secret
    with pytest.raises(Unauthorized):
        authenticate_training_key(first.secret)
    assert authenticate_training_key(second.secret) == user
    revoke_api_key(user=user, key_id=first.key.pk)
    with pytest.raises(Unauthorized):
        authenticate_training_key(second.secret)
    with pytest.raises(ValidationFailed):
        rotate_api_key(user=user, key_id=first.key.pk)


@pytest.mark.django_db
def test_a_user_cannot_touch_another_users_key() -> None:
    issued = create_api_key(user=UserFactory(), kind="training", name="mine")
    other = UserFactory()
    with pytest.raises(NotFound):
        rotate_api_key(user=other, key_id=issued.key.pk)
    with pytest.raises(NotFound):
        revoke_api_key(user=other, key_id=issued.key.pk)
    assert authenticate_training_key(issued.secret) == issued.key.user


@pytest.mark.django_db
def test_deactivated_users_keys_stop_working() -> None:
    user = UserFactory()
    issued = create_api_key(user=user, kind="training", name="ci")
    user.is_active = False
    user.save()
    with pytest.raises(Unauthorized):
        authenticate_training_key(issued.secret)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("kind", "name"), [("admin", "x"), ("training", ""), ("training", "n" * 101)]
)
def test_bad_kind_or_name_is_refused(kind: str, name: str) -> None:
    with pytest.raises(ValidationFailed):
        create_api_key(user=UserFactory(), kind=kind, name=name)
    assert not ApiKey.objects.exists()


# --- Prediction keys: the project's own and accounts' ----------------------------------------


@pytest.mark.django_db
def test_project_key_works_for_its_project_only(project, users) -> None:
    issued = create_key(project=project, name="app", by=users["admin"])
    caller = authenticate_prediction_key(issued.secret, project)
    assert caller.project_key == issued.key and caller.user is None
    with pytest.raises(Unauthorized):
        authenticate_prediction_key(issued.secret, ProjectFactory())


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("role", "store", "outcome"),
    [
        ("admin", True, "ok"),
        ("reviewer", True, "ok"),
        ("annotator", False, "ok"),
        ("annotator", True, 403),
        ("non_member", False, 401),
    ],
)
def test_account_prediction_key_follows_the_users_role(project, users, role, store, outcome):
    issued = create_api_key(user=users[role], kind="prediction", name="app")
    if outcome == "ok":
        caller = authenticate_prediction_key(issued.secret, project.pk, store=store)
        assert caller.user == users[role] and caller.project_key is None
    else:
        with pytest.raises(Unauthorized if outcome == 401 else Forbidden):
            authenticate_prediction_key(issued.secret, project.pk, store=store)


@pytest.mark.django_db
def test_training_key_is_not_a_prediction_key(project, users) -> None:
    issued = create_api_key(user=users["admin"], kind="training", name="ci")
    with pytest.raises(Unauthorized):
        authenticate_prediction_key(issued.secret, project)


@pytest.mark.django_db
def test_account_key_for_a_missing_project_is_401(users) -> None:
    issued = create_api_key(user=users["admin"], kind="prediction", name="app")
    with pytest.raises(Unauthorized):
        authenticate_prediction_key(issued.secret, 10**9)


# --- The management command ------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("kind", ["training", "prediction"])
def test_command_prints_only_the_new_key_on_its_last_line(kind: str) -> None:
    user = UserFactory(username="deploy")
    out = StringIO()
    call_command("create_api_key", "deploy", "--kind", kind, stdout=out)
    secret = out.getvalue().rstrip("\n").splitlines()[-1]
    key = ApiKey.objects.get(user=user)
    assert key.kind == kind and key.key_hash == hash_key(secret)
    if kind == "training":
        assert authenticate_training_key(secret) == user


@pytest.mark.django_db
def test_command_refuses_an_unknown_user() -> None:
    with pytest.raises(CommandError, match="nobody"):
        call_command("create_api_key", "nobody", "--kind", "training", stdout=StringIO())
    assert not ApiKey.objects.exists()
