"""Brute force: 60 wrong passwords lock the account and the address, on the page and the API.

Before: 60 wrong passwords then the right one logged in, on the login page and at
/api/auth/token/.
"""

from __future__ import annotations

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery"
ATTACKER, OTHER_ADDRESS = "203.0.113.7", "198.51.100.20"


@pytest.fixture
def alice():
    user = UserFactory(username="alice")
    user.set_password(PASSWORD)
    user.save()
    return user


@pytest.fixture
def bob():
    user = UserFactory(username="bob")
    user.set_password(PASSWORD)
    user.save()
    return user


def page_login(client, username, password, address=ATTACKER):
    return client.post(
        "/accounts/login/", {"username": username, "password": password}, REMOTE_ADDR=address
    )


def token_login(username, password, address=ATTACKER):
    return APIClient().post(
        "/api/auth/token/",
        {"username": username, "password": password},
        format="json",
        REMOTE_ADDR=address,
    )


def is_logged_in(response) -> bool:
    return response.status_code == 302 and response.url.endswith("/")


def test_login_page_refuses_the_right_password_after_60_wrong_ones(client, alice):
    for _ in range(60):
        assert page_login(client, "alice", "wrong password").status_code in {200, 429}
    response = page_login(client, "alice", PASSWORD)
    assert response.status_code == 429
    assert "_auth_user_id" not in client.session
    page = response.content.decode()
    assert "Too many failed logins" in page
    assert 'name="password"' in page  # the login page itself, with the message
    assert int(response["Retry-After"]) > 0


def test_token_endpoint_refuses_the_right_password_after_60_wrong_ones(alice):
    for _ in range(60):
        assert token_login("alice", "wrong password").status_code in {400, 429}
    response = token_login("alice", PASSWORD)
    assert response.status_code == 429
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["code"] == "locked_out"
    assert "Too many failed logins" in body["message"]
    assert "token" not in body


def test_the_lock_starts_at_the_limit_not_before(client, alice, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        page_login(client, "alice", "wrong password")
    assert is_logged_in(page_login(client, "alice", PASSWORD))


def test_an_admin_reset_lifts_the_lockout(client, alice, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        token_login("alice", "wrong password")
    assert token_login("alice", PASSWORD).status_code == 429
    call_command("axes_reset")
    assert token_login("alice", PASSWORD).status_code == 200
    assert is_logged_in(page_login(client, "alice", PASSWORD))


def test_an_admin_lifts_one_account_in_the_django_admin(client, alice, settings):
    from axes.models import AccessAttempt

    for _ in range(settings.AXES_FAILURE_LIMIT):
        page_login(client, "alice", "wrong password")
    admin = UserFactory(username="root", is_staff=True, is_superuser=True)
    client.force_login(admin)
    listing = client.get("/admin/axes/accessattempt/")
    assert listing.status_code == 200 and "alice" in listing.content.decode()
    attempts = list(AccessAttempt.objects.values_list("pk", flat=True))
    response = client.post(
        "/admin/axes/accessattempt/",
        {"action": "delete_selected", "_selected_action": attempts, "post": "yes"},
    )
    assert response.status_code == 302
    client.logout()
    assert is_logged_in(page_login(client, "alice", PASSWORD))


def test_the_lockout_is_per_account_and_per_address(client, alice, bob, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        token_login("alice", "wrong password", address=ATTACKER)
    # Another account from another address: unaffected.
    assert token_login("bob", PASSWORD, address=OTHER_ADDRESS).status_code == 200
    # The attacked account is locked from every address (by account)...
    assert token_login("alice", PASSWORD, address=OTHER_ADDRESS).status_code == 429
    # ...and the attacking address is locked for every account (by address).
    assert token_login("bob", PASSWORD, address=ATTACKER).status_code == 429


def test_guessing_many_accounts_from_one_address_locks_the_address(bob, settings):
    for number in range(settings.AXES_FAILURE_LIMIT):
        token_login(f"user{number}", "wrong password", address=ATTACKER)
    assert token_login("bob", PASSWORD, address=ATTACKER).status_code == 429
    assert token_login("bob", PASSWORD, address=OTHER_ADDRESS).status_code == 200


def test_a_forged_forwarded_for_header_does_not_give_a_fresh_address(alice, bob, settings):
    settings.LOUPE_PROXY_COUNT = 1  # one proxy appends the address it saw
    for number in range(settings.AXES_FAILURE_LIMIT):
        APIClient().post(
            "/api/auth/token/",
            {"username": "alice", "password": "wrong"},
            format="json",
            REMOTE_ADDR="10.0.0.1",  # the proxy
            HTTP_X_FORWARDED_FOR=f"192.0.2.{number}, {ATTACKER}",
        )
    response = APIClient().post(
        "/api/auth/token/",
        {"username": "bob", "password": PASSWORD},
        format="json",
        REMOTE_ADDR="10.0.0.1",
        HTTP_X_FORWARDED_FOR=f"192.0.2.250, {ATTACKER}",
    )
    assert response.status_code == 429


def test_the_lockout_holds_under_asgi_too(alice, settings):
    """uvicorn serves Loupe: there the middleware chain runs async (axes' other code path)."""
    from asgiref.sync import async_to_sync
    from django.test import AsyncClient

    client = AsyncClient()

    def post(password: str):
        return async_to_sync(client.post)(
            "/accounts/login/",
            {"username": "alice", "password": password},
            REMOTE_ADDR=ATTACKER,
        )

    for _ in range(settings.AXES_FAILURE_LIMIT):
        post("wrong password")
    response = post(PASSWORD)
    assert response.status_code == 429
    assert "Too many failed logins" in response.content.decode()
