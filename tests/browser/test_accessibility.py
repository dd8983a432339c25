"""An axe-core scan of every page type in real Chromium: no serious or critical violations.

axe-core is a test-only npm dependency (package.json devDependencies): its axe.min.js is read
from node_modules/ and injected into each page after it has loaded, then `axe.run` checks the
whole document (WCAG 2.x A/AA and best-practice rules; colour contrast included).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.urls import reverse

from labeling.models import Project, Role
from predictions.services.keys import create_key
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

AXE = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"
BLOCKING = {"serious", "critical"}

# (true tag indexes, scores): some right, some wrong, so the performance page lists mispredictions.
ROWS = [([0], [0.9, 0.1]), ([1], [0.2, 0.8]), ([0], [0.3, 0.7]), ([1], [0.6, 0.4])] * 3


def axe_violations(page) -> list[str]:
    """Serious and critical axe violations of the page as it is now: one line per rule and
    message, naming the first element and how many more share it."""
    if not AXE.exists():
        pytest.fail(f"{AXE} is missing: run `npm ci` (scripts/setup.sh does).")
    page.wait_for_load_state("load")
    # Evaluated through the DevTools protocol, not added as an inline <script>: the pages'
    # Content-Security-Policy (script-src 'self') refuses inline scripts.
    page.evaluate(f"() => {{ {AXE.read_text()}\n; window.axe = axe; }}")
    results = page.evaluate("() => axe.run(document, {resultTypes: ['violations']})")
    found: dict[str, list[str]] = {}
    for violation in results["violations"]:
        if violation["impact"] not in BLOCKING:
            continue
        for node in violation["nodes"]:
            why = (node.get("failureSummary") or "").splitlines()[-1].strip()
            key = f"{violation['id']} ({violation['impact']}): {why}"
            found.setdefault(key, []).append(" ".join(node["target"]))
    return [f"{key} at {targets[0]} (+{len(targets) - 1} more)" for key, targets in found.items()]


def scan(page, name: str, report: dict[str, list[str]]) -> None:
    report[name] = axe_violations(page)
    # axe rates a page without a main heading "moderate"; every Loupe screen has exactly one h1.
    headings = page.locator("h1").count()
    if headings != 1:
        report[name].append(f"{headings} h1 headings; a screen has exactly one")
    if os.environ.get("LOUPE_SCREENSHOTS"):
        path = os.path.join(os.environ["LOUPE_SCREENSHOTS"], f"a11y-{name}.png")
        page.screenshot(path=path, full_page=True)


def assert_clean(report: dict[str, list[str]]) -> None:
    failing = {name: lines for name, lines in report.items() if lines}
    assert not failing, "axe found serious/critical violations:\n" + "\n".join(
        f"[{name}] {line}" for name, lines in failing.items() for line in lines
    )


def with_model(iteration):
    """Give a crafted iteration a model file, so stored predictions can name it."""
    iteration.artifact.save("model.pt", ContentFile(b"not loaded by these pages"), save=True)
    return iteration


def test_signed_out_pages_have_no_serious_violations(page):
    report: dict[str, list[str]] = {}
    page.goto("/accounts/login/")
    scan(page, "login", report)
    page.goto("/accounts/login/")
    page.fill("input[name=username]", "nobody")
    page.fill("input[name=password]", "wrong")
    page.click("button[type=submit]")
    page.wait_for_selector("form p.error")
    scan(page, "login-error", report)
    response = page.goto("/no-such-page/")
    assert response.status == 404
    scan(page, "404-signed-out", report)
    assert_clean(report)


def test_classification_project_pages_have_no_serious_violations(page, login):
    project = ProjectFactory(kind=Project.Kind.MULTICLASS, name="Colours")
    admin = MembershipFactory(
        project=project, role=Role.ADMIN, user__username="a11y", user__is_staff=True
    ).user
    red, green = TagFactory(project=project, name="red"), TagFactory(project=project, name="green")
    image = ImageTagFactory(image__project=project, image__is_tagged=True, tag=red).image
    ImageFactory(project=project)  # untagged
    first = with_model(make_iteration(project, number=1, tags=("red", "green"), rows=ROWS))
    second = with_model(make_iteration(project, number=2, tags=("red", "green"), rows=ROWS[:8]))
    for it_tag, tag in zip(first.tags.order_by("index"), (red, green), strict=True):
        it_tag.tag = tag
        it_tag.save(update_fields=["tag"])
    publish_iteration(iteration=first, name="prod", by=admin)
    crafted_prediction(project, first, [0.45, 0.55])
    crafted_prediction(project, first, [0.95, 0.05])
    create_key(project=project, name="existing", by=admin)

    login(admin)
    report: dict[str, list[str]] = {}
    pages = {
        "project-list": reverse("labeling:project-list"),
        "project-create": reverse("labeling:project-create"),
        "gallery": reverse("labeling:project-detail", args=[project.id]),
        "upload": reverse("labeling:image-upload", args=[project.id]),
        "tagging": reverse("labeling:image-tag", args=[project.id, image.id]),
        "train": reverse("training:train", args=[project.id]),
        "performance": reverse("training:iteration-performance", args=[project.id, first.id]),
        "performance-tab": reverse("training:performance", args=[project.id]),
        "iterations": reverse("training:iteration-list", args=[project.id]),
        "compare": reverse("training:iteration-compare", args=[project.id])
        + f"?a={first.id}&b={second.id}",
        "predictions": reverse("predictions:prediction-list", args=[project.id]),
        "quick-test": reverse("predictions:quick-test", args=[project.id]),
        "keys": reverse("predictions:key-list", args=[project.id]),
        "api-keys": reverse("labeling:api-keys"),
        "settings": reverse("labeling:project-settings", args=[project.id]),
        "datasets": reverse("labeling:datasets", args=[project.id]),
        "customvision-import": reverse("labeling:customvision-import"),
        "404-no-route": "/no-such-page/",
        "404-no-project": reverse("labeling:project-detail", args=[project.id + 1000]),
    }
    for name, url in pages.items():
        page.goto(url)
        scan(page, name, report)

    # Reviewing a stored prediction (the tagging view in review mode), and the keyboard help.
    # The tab opens the current (latest) iteration; the stored predictions are iteration 1's.
    page.goto(f"{pages['predictions']}?iteration={first.pk}")
    page.get_by_test_id("prediction-thumb").first.locator("a.thumb-link").click()
    page.get_by_test_id("tagging-stage").wait_for()
    scan(page, "review", report)
    page.goto(pages["tagging"])
    page.get_by_test_id("keymap-button").click()
    page.locator("#keymap").wait_for()
    scan(page, "tagging-keys-help", report)

    # The keys page right after creating one: the secret is shown once, with its copy button.
    page.goto(pages["keys"])
    page.get_by_test_id("key-create").get_by_label("Name").fill("Mobile app")
    page.get_by_test_id("key-create").get_by_role("button", name="Create key").click()
    page.get_by_test_id("issued-key").wait_for()
    scan(page, "keys-issued", report)
    page.goto(pages["api-keys"])
    page.get_by_label("Name").fill("Notebook")
    page.get_by_test_id("create-key").click()
    page.get_by_test_id("issued-key").wait_for()
    scan(page, "api-keys-issued", report)
    assert_clean(report)


def test_detection_project_pages_have_no_serious_violations(page, login):
    admin = UserFactory(username="a11y-det")
    project = MembershipFactory(user=admin, role=Role.ADMIN, project__kind="detection").project
    tag = TagFactory(project=project, name="red")
    image = ImageFactory(project=project, width=40, height=30, is_tagged=True)
    RegionFactory(image=image, tag=tag)
    iteration = make_detection_iteration(project, tags=CRAFTED_TAGS, rows=CRAFTED_ROWS)

    login(admin)
    report: dict[str, list[str]] = {}
    pages = {
        "detection-gallery": reverse("labeling:project-detail", args=[project.id]),
        "box-editor": reverse("labeling:image-boxes", args=[project.id, image.id]),
        "detection-performance": reverse(
            "training:iteration-performance", args=[project.id, iteration.id]
        ),
    }
    for name, url in pages.items():
        page.goto(url)
        scan(page, name, report)
    assert_clean(report)


def test_error_pages_have_no_serious_violations(page, login, monkeypatch):
    from django.core.exceptions import PermissionDenied

    admin = UserFactory(username="a11y-errors")
    login(admin)
    report: dict[str, list[str]] = {}
    for name, error in (("403", PermissionDenied()), ("500", RuntimeError("crash"))):

        def fail(user, error=error):
            raise error

        # The live server runs in this process: the project list now fails this way.
        monkeypatch.setattr("labeling.views.projects.can_create_projects", fail)
        response = page.goto("/")
        assert response.status == int(name)
        scan(page, name, report)
    assert_clean(report)
