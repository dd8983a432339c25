"""`manage.py ensure_admin`: the first admin account, created once."""

import io
import re

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def run_ensure_admin() -> str:
    out = io.StringIO()
    call_command("ensure_admin", stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_admin_gets_the_password_from_the_environment(monkeypatch):
    monkeypatch.setenv("LOUPE_ADMIN_PASSWORD", "from-the-env-42")

    output = run_ensure_admin()

    admin = get_user_model().objects.get(username="admin")
    assert admin.is_superuser and admin.is_staff
    assert admin.check_password("from-the-env-42")
    assert "from-the-env-42" not in output  # a password the operator chose is not echoed
    assert "Created admin account: admin" in output


def test_admin_gets_a_generated_password_printed_once(monkeypatch):
    monkeypatch.delenv("LOUPE_ADMIN_PASSWORD", raising=False)

    output = run_ensure_admin()

    match = re.fullmatch(r"Created admin account: admin / (\S+)\n", output)
    assert match, output
    password = match.group(1)
    assert len(password) >= 12
    assert get_user_model().objects.get(username="admin").check_password(password)


def test_a_second_run_changes_nothing_and_prints_nothing(monkeypatch):
    monkeypatch.setenv("LOUPE_ADMIN_PASSWORD", "first-password-1")
    run_ensure_admin()
    monkeypatch.setenv("LOUPE_ADMIN_PASSWORD", "second-password-2")

    output = run_ensure_admin()

    assert output == ""
    users = get_user_model().objects.filter(is_superuser=True)
    assert users.count() == 1
    assert users.get().check_password("first-password-1")


def test_an_existing_superuser_of_another_name_is_enough(monkeypatch):
    monkeypatch.setenv("LOUPE_ADMIN_PASSWORD", "unused-password")
    UserFactory(username="root", is_superuser=True, is_staff=True)

    assert run_ensure_admin() == ""
    assert not get_user_model().objects.filter(username="admin").exists()


def test_an_ordinary_user_named_admin_is_not_promoted(monkeypatch):
    monkeypatch.setenv("LOUPE_ADMIN_PASSWORD", "unused-password")
    UserFactory(username="admin")
    err = io.StringIO()

    call_command("ensure_admin", stdout=io.StringIO(), stderr=err)

    assert not get_user_model().objects.get(username="admin").is_superuser
    assert "createsuperuser" in err.getvalue()
