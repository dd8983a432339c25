"""The Train tab in real Chromium while a training runs and when it ends (issue 11, item 5).

The websocket is Playwright's stand-in (`route_web_socket`) playing the server's part with the
messages `training.services.progress.iteration_state` sends (tests/training/test_progress_socket.py
covers the real consumer); the page itself is the real one from the live server.
"""

from __future__ import annotations

import json
import os
import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import expect

from tests.factories import MembershipFactory
from tests.training.conftest import make_iteration
from training.models import Iteration

PROGRESS_SOCKET = re.compile(r".*/ws/projects/\d+/iterations/\d+/$")


def shot(page, name: str) -> None:
    if os.environ.get("LOUPE_SCREENSHOT_DIR"):
        page.screenshot(path=f"{os.environ['LOUPE_SCREENSHOT_DIR']}/{name}.png", full_page=True)


def state(iteration: Iteration, **fields: object) -> str:
    message = {
        "iteration_id": iteration.id,
        "status": "training",
        "status_label": "Training",
        "fraction": 0.0,
        "phase": "",
        "failure_reason": "",
        "failure_message": "",
        "elapsed_s": 0,
        "budget_s": iteration.budget_s,
        "epoch": None,
        "epochs": None,
    }
    message.update(fields)
    return json.dumps(message)


def socket_of(page, sockets: list[object]) -> object:
    """The page's progress socket, once its module has opened it."""
    for _ in range(50):
        if sockets:
            return sockets[-1]
        page.wait_for_timeout(100)
    raise AssertionError("the page opened no progress socket")


@pytest.mark.django_db(transaction=True)
def test_train_tab_follows_a_run_and_links_to_its_performance_when_it_ends(page, login):
    admin = MembershipFactory(role="admin", user__username="train-admin")
    project = admin.project
    make_iteration(project, number=1, status="completed", finished=timezone.now())
    iteration = make_iteration(
        project,
        number=2,
        status="queued",
        training_type="advanced",
        budget_s=600,
        progress_phase="Waiting for a worker",
        metrics={},
    )
    sockets: list[object] = []
    page.route_web_socket(
        re.compile(r".*/ws/projects/\d+/iterations/\d+/$"), lambda ws: sockets.append(ws)
    )
    login(admin.user)
    page.goto(reverse("training:train", args=[project.id]))
    expect(page.get_by_test_id("progress-status")).to_have_text("Queued")
    expect(page.get_by_test_id("recent-status-2")).to_have_text("Queued")
    expect(page.get_by_test_id("progress-timing")).to_contain_text("Waiting for a worker for")
    expect(page.get_by_test_id("train-button")).to_be_disabled()

    ws = socket_of(page, sockets)
    ws.send(state(iteration, phase="embedding 0/61", fraction=0.0, elapsed_s=3))
    # The card and the list agree: both say Training while the phase says embedding.
    expect(page.get_by_test_id("progress-phase")).to_have_text("embedding 0/61")
    expect(page.get_by_test_id("progress-status")).to_have_text("Training")
    expect(page.get_by_test_id("recent-status-2")).to_have_text("Training")

    ws.send(state(iteration, phase="epoch 3/20", fraction=0.25, elapsed_s=120, epoch=3, epochs=20))
    timing = page.get_by_test_id("progress-timing")
    expect(timing).to_contain_text("Elapsed 2:0")
    expect(timing).to_contain_text("about 6 min left")
    expect(timing).to_contain_text("budget left 7:5")
    expect(timing).to_contain_text("epoch 3 of 20 planned")
    expect(page.get_by_test_id("progress-bar")).to_have_attribute("aria-valuenow", "25")
    # Between pushes the elapsed time keeps counting.
    expect(timing).to_contain_text(re.compile(r"Elapsed 2:0[2-9]"), timeout=5000)
    shot(page, "train-running")

    Iteration.objects.filter(pk=iteration.pk).update(
        status="completed",
        started=timezone.now() - timedelta(seconds=400),
        finished=timezone.now(),
        metrics={"precision": 0.9, "recall": 0.8, "map": 0.85, "per_tag": []},
    )
    ws.send(state(iteration, status="completed", status_label="Completed", fraction=1.0))
    ended = page.get_by_test_id("progress-ended")
    expect(ended).to_contain_text("Training ended")
    expect(ended).to_contain_text("after 6:40")
    expect(page.get_by_test_id("recent-status-2")).to_have_text("Completed")
    expect(page.get_by_test_id("train-button")).to_be_enabled()
    shot(page, "train-ended")
    page.get_by_test_id("see-performance").click()
    expect(page).to_have_url(
        reverse("training:iteration-performance", args=[project.id, iteration.id])
    )


@pytest.mark.django_db(transaction=True)
def test_iterations_list_shows_the_live_status_of_a_running_iteration(page, login):
    admin = MembershipFactory(role="admin", user__username="list-admin")
    iteration = make_iteration(
        admin.project, status="queued", progress_phase="Waiting for a worker", metrics={}
    )
    sockets: list[object] = []
    page.route_web_socket(
        re.compile(r".*/ws/projects/\d+/iterations/\d+/$"), lambda ws: sockets.append(ws)
    )
    login(admin.user)
    page.goto(reverse("training:iteration-list", args=[admin.project_id]))
    expect(page.get_by_test_id("status-1")).to_have_text("Queued")
    socket_of(page, sockets).send(
        state(iteration, phase="embedding 5/61", fraction=0.05, elapsed_s=10)
    )
    expect(page.get_by_test_id("status-1")).to_have_text("Training")
    expect(page.get_by_test_id("phase-1")).to_have_text("embedding 5/61")


@pytest.mark.django_db(transaction=True)
def test_admin_cancels_a_running_training_from_the_train_tab(page, login):
    """Default settings: the Cancel button asks first, then the page shows the cancelled run."""
    admin = MembershipFactory(role="admin", user__username="cancel-admin")
    iteration = make_iteration(
        admin.project,
        status="training",
        started=timezone.now(),
        progress_phase="epoch 1/20",
        metrics={},
    )
    page.route_web_socket(PROGRESS_SOCKET, lambda ws: None)
    login(admin.user)
    page.goto(reverse("training:train", args=[admin.project_id]))
    expect(page.get_by_test_id("train-button")).to_be_disabled()
    dialogs: list[str] = []

    def dismiss_then_accept(dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss() if len(dialogs) == 1 else dialog.accept()

    page.on("dialog", dismiss_then_accept)
    cancel = page.get_by_test_id("cancel-training")
    cancel.focus()
    page.keyboard.press("Enter")  # dismissed: nothing changes
    page.wait_for_timeout(300)
    iteration.refresh_from_db()
    assert iteration.status == "training" and dialogs[0].startswith("Cancel Iteration 1?")
    cancel.focus()
    page.keyboard.press("Enter")  # accepted
    expect(page.get_by_test_id("progress-status")).to_have_text("Failed")
    expect(page.get_by_test_id("failure")).to_contain_text("Cancelled by cancel-admin.")
    expect(page.get_by_test_id("train-button")).to_be_enabled()
    iteration.refresh_from_db()
    assert iteration.status == "failed" and iteration.failure_reason == "cancelled"
    shot(page, "train-cancelled")
