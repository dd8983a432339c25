"""The OpenAPI schema: valid, warning-free, complete, and served with local Swagger UI assets."""

from __future__ import annotations

import io
import re

import pytest
import yaml
from django.core.management import call_command
from django.urls import URLPattern, URLResolver, get_resolver

pytestmark = pytest.mark.django_db


def test_schema_validates_without_warnings():
    out = io.StringIO()
    # --fail-on-warn turns any view without a proper schema (an unnamed serializer, a guessed
    # type, a colliding component) into an error; --validate checks it against the OpenAPI spec.
    call_command("spectacular", "--validate", "--fail-on-warn", stdout=out)
    schema = yaml.safe_load(out.getvalue())
    assert schema["openapi"].startswith("3.")


def _api_routes() -> list[str]:
    routes: list[str] = []

    def walk(patterns: list, prefix: str) -> None:
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, prefix + str(pattern.pattern))
            elif isinstance(pattern, URLPattern):
                route = prefix + str(pattern.pattern)
                if route.startswith("api/") and route not in ("api/schema/", "api/docs/"):
                    routes.append(route)

    walk(get_resolver().url_patterns, "")
    return routes


def test_every_api_route_is_in_the_schema(api_client):
    schema = yaml.safe_load(api_client.get("/api/schema/").content)
    documented = {path.replace("{", "<").replace("}", ">") for path in schema["paths"]}
    for route in _api_routes():
        # Normalise converters: "<int:project_id>" appears as "{project_id}" in the schema
        # (and "<uuid:job_id>" as "{job_id}").
        plain = "/" + re.sub(r"<\w+:", "<", route)
        assert plain in documented, f"{route} is missing from the OpenAPI schema"


def test_every_operation_documents_its_errors(api_client):
    schema = yaml.safe_load(api_client.get("/api/schema/").content)
    for path, operations in schema["paths"].items():
        if not path.startswith("/api/projects/"):
            continue
        for method, operation in operations.items():
            codes = set(operation["responses"])
            assert {"401"} <= codes, f"{method.upper()} {path} does not document 401"
            if "{project_id}" in path:
                assert "404" in codes, f"{method.upper()} {path} does not document 404"


def test_swagger_ui_is_served_from_local_static_files(client):
    response = client.get("/api/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/" in html
    assert "cdn." not in html and "unpkg" not in html
