"""The "API keys" page over HTTP: plain POST and htmx, each user's own keys only."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from labeling.models import ApiKey
from labeling.services.api_keys import authenticate_training_key, create_api_key, hash_key
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

URL = "/account/api-keys/"


def shown_secret(response) -> str:
    """The secret the page shows once (the copy field's text)."""
    match = re.search(r'data-testid="key-secret">([^<]+)<', response.content.decode())
    assert match, "no secret shown"
    return match.group(1)


def test_page_is_linked_from_the_navigation(client_for, users) -> None:
    page = client_for(users["annotator"]).get(reverse("labeling:project-list"))
    assert f'href="{URL}"'.encode() in page.content
    assert reverse("labeling:api-keys") == URL


def test_anonymous_is_sent_to_login(client) -> None:
    response = client.get(URL)
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_create_shows_the_secret_once_and_stores_only_its_hash(client_for, users) -> None:
    client = client_for(users["annotator"])
    response = client.post(URL, {"action": "create", "name": "notebook", "kind": "training"})
    assert response.status_code == 200
    key = ApiKey.objects.get(user=users["annotator"])
    secret = shown_secret(response)
    assert key.key_hash == hash_key(secret)
    assert authenticate_training_key(secret) == users["annotator"]
    again = client.get(URL)
    assert secret.encode() not in again.content and key.prefix.encode() in again.content


def test_htmx_create_answers_the_keys_part_only(client_for, users) -> None:
    client = client_for(users["reviewer"])
    response = client.post(
        URL, {"action": "create", "name": "app", "kind": "prediction"}, HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 200
    body = response.content.decode()
    assert body.lstrip().startswith('<div id="api-keys"') and "<html" not in body
    key = ApiKey.objects.get(user=users["reviewer"])
    assert key.kind == "prediction" and key.key_hash == hash_key(shown_secret(response))


def test_bad_input_is_422_and_keeps_what_was_typed(client_for, users) -> None:
    client = client_for(users["admin"])
    response = client.post(URL, {"action": "create", "name": "", "kind": "training"})
    assert response.status_code == 422 and b"Give the key a name" in response.content
    response = client.post(URL, {"action": "create", "name": "x" * 50, "kind": "owner"})
    assert response.status_code == 422 and ("x" * 50).encode() in response.content
    assert not ApiKey.objects.exists()


def test_rotate_shows_a_new_secret_and_the_old_one_stops(client_for, users) -> None:
    issued = create_api_key(user=users["admin"], kind="training", name="ci")
    client = client_for(users["admin"])
    response = client.post(URL, {"action": "rotate", "key_id": issued.key.pk})
    new_secret = shown_secret(response)
    assert response.status_code == 200 and new_secret != issued.secret
    assert authenticate_training_key(new_secret) == users["admin"]
    assert ApiKey.objects.get().key_hash == hash_key(new_secret)


def test_revoke_redirects_without_htmx_and_swaps_with_it(client_for, users) -> None:
    first = create_api_key(user=users["admin"], kind="training", name="one")
    second = create_api_key(user=users["admin"], kind="prediction", name="two")
    client = client_for(users["admin"])
    response = client.post(URL, {"action": "revoke", "key_id": first.key.pk})
    assert response.status_code == 302 and response["Location"] == URL
    response = client.post(
        URL, {"action": "revoke", "key_id": second.key.pk}, HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 200 and "is revoked" in response.content.decode()
    assert ApiKey.objects.filter(revoked__isnull=True).count() == 0


@pytest.mark.parametrize("action", ["rotate", "revoke"])
def test_someone_elses_key_is_not_found_and_untouched(client_for, users, action) -> None:
    issued = create_api_key(user=UserFactory(), kind="training", name="theirs")
    response = client_for(users["admin"]).post(URL, {"action": action, "key_id": issued.key.pk})
    assert response.status_code == 404
    key = ApiKey.objects.get()
    assert key.key_hash == hash_key(issued.secret) and key.revoked is None


@pytest.mark.parametrize("key_id", ["", "abc", str(2**64)])
def test_bad_key_id_is_not_found(client_for, users, key_id) -> None:
    response = client_for(users["admin"]).post(URL, {"action": "rotate", "key_id": key_id})
    assert response.status_code == 404


def test_list_shows_only_my_keys(client_for, users) -> None:
    create_api_key(user=users["annotator"], kind="training", name="mine")
    create_api_key(user=users["reviewer"], kind="training", name="not-mine")
    page = client_for(users["annotator"]).get(URL)
    assert [key.name for key in page.context["keys"]] == ["mine"]
    assert b"not-mine" not in page.content
