"""Production settings (issue 16, item 8): LOUPE_HTTPS, the Content-Security-Policy, and a
prediction API that answers 401 for a bad key whether or not the project exists."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from django.test import Client

from project.asgi import application
from tests.factories import ProjectFactory, UserFactory

ROOT = Path(__file__).resolve().parents[2]


def _run(code_or_args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    """Run manage.py or Python in a fresh process with these LOUPE_* variables set."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("LOUPE_", "DJANGO_"))}
    clean.update({"LOUPE_DATA_DIR": str(tmp_path), "LOUPE_SECRET_KEY": "k" * 20 + "-x9Q" * 12})
    clean.update(env)
    return subprocess.run(
        [sys.executable, *code_or_args],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _settings(tmp_path: Path, names: list[str], **env: str) -> dict[str, object]:
    code = (
        "import json, django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', "
        "'project.settings'); django.setup(); from django.conf import settings; "
        f"print(json.dumps({{n: getattr(settings, n) for n in {names!r}}}))"
    )
    done = _run(["-c", code], tmp_path, **env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_check_deploy_is_clean_with_loupe_https(tmp_path):
    done = _run(
        ["manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        tmp_path,
        LOUPE_HTTPS="1",
        LOUPE_ALLOWED_HOSTS="loupe.example.com",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no issues" in done.stdout


def test_check_deploy_names_what_is_missing_without_it(tmp_path):
    done = _run(
        ["manage.py", "check", "--deploy"], tmp_path, LOUPE_ALLOWED_HOSTS="loupe.example.com"
    )
    for warning in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert warning in done.stdout + done.stderr


def test_loupe_https_settings(tmp_path):
    names = [
        "SECURE_SSL_REDIRECT",
        "SECURE_HSTS_SECONDS",
        "SESSION_COOKIE_SECURE",
        "CSRF_COOKIE_SECURE",
        "SECURE_PROXY_SSL_HEADER",
    ]
    on = _settings(tmp_path, names, LOUPE_HTTPS="1", LOUPE_PROXY_SSL_HEADER="X-Forwarded-Proto")
    assert on == {
        "SECURE_SSL_REDIRECT": True,
        "SECURE_HSTS_SECONDS": 365 * 24 * 3600,
        "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True,
        "SECURE_PROXY_SSL_HEADER": ["HTTP_X_FORWARDED_PROTO", "https"],
    }
    off = _settings(tmp_path, names)
    assert off["SECURE_SSL_REDIRECT"] is False and off["SESSION_COOKIE_SECURE"] is False
    assert off["SECURE_PROXY_SSL_HEADER"] is None


@pytest.mark.django_db
def test_every_page_carries_the_policy():
    response = Client().get("/accounts/login/")
    policy = response["Content-Security-Policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["default-src"] == "'self'"
    assert directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert "unsafe" not in policy


@pytest.mark.django_db
def test_api_docs_have_no_inline_script_or_style(client):
    client.force_login(UserFactory())
    page = client.get("/api/docs/").content.decode()
    assert "<style" not in page
    assert "<script>" not in page
    script = client.get("/api/docs/?script=")
    assert script.status_code == 200
    assert script["Content-Type"].startswith("application/javascript")
    assert "SwaggerUIBundle" in script.content.decode()


def _predict(path: str, key: str) -> tuple[int, dict]:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            headers = {"Prediction-Key": key, "Content-Type": "application/octet-stream"}
            return await http.post(path, content=b"\x89PNG", headers=headers)

    response = asyncio.run(go())
    return response.status_code, response.json()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("kind", ["classify", "detect"])
def test_prediction_api_is_no_oracle_for_project_ids(kind):
    """A bad key gets the same 401 for a project that exists and one that does not, through
    the fast lane (ASGI) and through the Django view."""
    project = ProjectFactory()
    answers = []
    for pid in (project.pk, project.pk + 1000, 2**64):
        path = f"/api/predict/{pid}/{kind}/iterations/prod/image"
        answers.append(_predict(path, "lpk_wrong"))
        view = Client().post(
            path,
            b"\x89PNG",
            content_type="application/octet-stream",
            HTTP_PREDICTION_KEY="lpk_wrong",
        )
        answers.append((view.status_code, view.json()))
    assert {status for status, _ in answers} == {401}
    assert len({json.dumps(body, sort_keys=True) for _, body in answers}) == 1
