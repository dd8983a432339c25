"""Pages work under the Content-Security-Policy (issue 16, item 8), in real Chromium.

The policy (project/settings.py, django-csp) allows scripts and styles from Loupe's own origin
only: no inline <script>, handler (onchange=…), <style> or style="…", no eval. Each main page is
opened with a listener on the console: Chromium reports every refused script, style or
connection there ("Refused to … because it violates the following Content Security Policy").
"""

from __future__ import annotations

import pytest
from django.urls import reverse

from labeling.models import Project, Role
from predictions.services.keys import create_key
from tests.browser.test_accessibility import ROWS, with_model
from tests.factories import (
    ImageFactory,
    ImageTagFactory,
    MembershipFactory,
    ProjectFactory,
    RegionFactory,
    TagFactory,
    UserFactory,
)
from tests.predictions.helpers import crafted_prediction
from tests.training.conftest import make_iteration
from tests.training.detection_data import CRAFTED_ROWS, CRAFTED_TAGS, make_detection_iteration
from training.services.publishing import publish_iteration

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def violations(page) -> list[str]:
    """Every CSP violation and uncaught script error the page reports, as it happens."""
    found: list[str] = []

    def on_console(message) -> None:
        if "Content Security Policy" in message.text or "Content-Security-Policy" in message.text:
            found.append(f"{page.url}: {message.text}")

    page.on("console", on_console)
    page.on("pageerror", lambda error: found.append(f"{page.url}: uncaught {error}"))
    return found


def visit(page, url: str, status: int = 200) -> None:
    response = page.goto(url)
    assert response.status == status, f"{url}: {response.status}"
    page.wait_for_load_state("load")
    # Module scripts and htmx start after load; give them a moment to be refused, if they are.
    page.wait_for_timeout(150)


def test_the_policy_header_is_sent(page):
    response = page.goto("/accounts/login/")
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "style-src 'self'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy


def test_main_pages_have_no_csp_violations(page, login, violations):
    project = ProjectFactory(kind=Project.Kind.MULTICLASS, name="Colours")
    admin = MembershipFactory(
        project=project, role=Role.ADMIN, user__username="csp", user__is_staff=True
    ).user
    red, green = TagFactory(project=project, name="red"), TagFactory(project=project, name="green")
    image = ImageTagFactory(image__project=project, image__is_tagged=True, tag=red).image
    ImageFactory(project=project)
    first = with_model(make_iteration(project, number=1, tags=("red", "green"), rows=ROWS))
    second = with_model(make_iteration(project, number=2, tags=("red", "green"), rows=ROWS[:8]))
    for it_tag, tag in zip(first.tags.order_by("index"), (red, green), strict=True):
        it_tag.tag = tag
        it_tag.save(update_fields=["tag"])
    publish_iteration(iteration=first, name="prod", by=admin)
    crafted_prediction(project, first, [0.45, 0.55])
    create_key(project=project, name="existing", by=admin)

    visit(page, "/accounts/login/")
    login(admin)
    pages = {
        "project-list": reverse("labeling:project-list"),
        "gallery": reverse("labeling:project-detail", args=[project.id]),
        "upload": reverse("labeling:image-upload", args=[project.id]),
        "tagging": reverse("labeling:image-tag", args=[project.id, image.id]),
        "train": reverse("training:train", args=[project.id]),
        "performance": reverse("training:iteration-performance", args=[project.id, first.id]),
        "iterations": reverse("training:iteration-list", args=[project.id]),
        "compare": reverse("training:iteration-compare", args=[project.id])
        + f"?a={first.id}&b={second.id}",
        "predictions": reverse("predictions:prediction-list", args=[project.id]),
        "quick-test": reverse("predictions:quick-test", args=[project.id]),
        "keys": reverse("predictions:key-list", args=[project.id]),
        "api-keys": reverse("labeling:api-keys"),
        "settings": reverse("labeling:project-settings", args=[project.id]),
        "datasets": reverse("labeling:datasets", args=[project.id]),
    }
    for url in pages.values():
        visit(page, url)
    visit(page, "/no-such-page/", status=404)

    # htmx under the policy: a tag key press in the tagging view swaps the tag panel.
    visit(page, pages["tagging"])
    page.get_by_test_id("tagging-stage").wait_for()
    page.keyboard.press("2")
    page.get_by_text("green added").wait_for()
    assert not violations, "\n".join(violations)


def test_prediction_filters_submit_on_change_without_inline_handlers(page, login, violations):
    project = ProjectFactory(kind=Project.Kind.MULTICLASS)
    admin = MembershipFactory(project=project, role=Role.ADMIN).user
    TagFactory(project=project, name="red"), TagFactory(project=project, name="green")
    iteration = with_model(make_iteration(project, number=1, tags=("red", "green"), rows=ROWS))
    crafted_prediction(project, iteration, [0.45, 0.55])
    login(admin)
    visit(page, reverse("predictions:prediction-list", args=[project.id]))
    html = page.content()
    assert "onchange=" not in html
    page.get_by_test_id("sort-select").select_option("lowest")
    page.wait_for_url("**sort=lowest**")
    page.get_by_test_id("tag-select").wait_for()
    assert not violations, "\n".join(violations)


def test_box_editor_has_no_csp_violations(page, login, violations):
    admin = UserFactory(username="csp-det")
    project = MembershipFactory(user=admin, role=Role.ADMIN, project__kind="detection").project
    tag = TagFactory(project=project, name="red")
    image = ImageFactory(project=project, width=40, height=30, is_tagged=True)
    RegionFactory(image=image, tag=tag)
    iteration = make_detection_iteration(project, tags=CRAFTED_TAGS, rows=CRAFTED_ROWS)
    login(admin)
    for url in (
        reverse("labeling:project-detail", args=[project.id]),
        reverse("labeling:image-boxes", args=[project.id, image.id]),
        reverse("training:iteration-performance", args=[project.id, iteration.id]),
    ):
        visit(page, url)
    assert not violations, "\n".join(violations)


def test_api_docs_work_under_the_policy(page, login, violations):
    login(UserFactory(username="csp-docs"))
    visit(page, reverse("api-docs"))
    page.locator(".swagger-ui .opblock").first.wait_for()
    assert page.locator(".swagger-ui .opblock").count() > 10
    assert not violations, "\n".join(violations)


def test_progress_bars_keep_their_width_without_inline_styles(page, login, violations):
    """The train tab's and an import's bars: widths from data-percent-width, not style="…"."""
    from labeling.services.import_jobs import start_import
    from tests.labeling.test_roles import _folders_zip
    from training.models import Iteration

    project = ProjectFactory(kind=Project.Kind.MULTICLASS)
    admin = MembershipFactory(project=project, role=Role.ADMIN).user
    Iteration.objects.create(
        project=project,
        number=1,
        name="Iteration 1",
        status=Iteration.Status.TRAINING,
        backbone="lite0",
        progress_fraction=0.4,
        created_by=admin,
    )
    job = start_import(project=project, upload=_folders_zip(), format_name="folders", by=admin)
    login(admin)
    visit(page, reverse("training:train", args=[project.id]))
    bar = page.get_by_test_id("progress-bar").locator("div")
    assert bar.evaluate("e => e.style.width") == "40%"
    visit(page, reverse("labeling:datasets", args=[project.id]) + f"?job={job.job_id}")
    assert not violations, "\n".join(violations)
