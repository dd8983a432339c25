"""The README's REST API example (curl: token, train, poll, publish) runs as written against a
live server with a real worker, so the README stays true."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from labeling.models import Role
from tests.factories import MembershipFactory, ProjectFactory, TagFactory, UserFactory
from tests.training.conftest import COLOURS, add_images
from training.models import Iteration

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_example() -> str:
    section = README.read_text().split("## REST API", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert match, "the README's REST API section has no sh example"
    return match.group(1)


@pytest.mark.slow
@pytest.mark.worker
def test_the_readme_curl_example_trains_and_publishes(live_server, celery_worker_redis, settings):
    if not (shutil.which("curl") and shutil.which("jq")):
        pytest.skip("the example needs curl and jq")
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    settings.LOUPE_FEATURE_CACHE_DIR = settings.MEDIA_ROOT / "features"
    admin = UserFactory(username="admin")
    admin.set_password("secret")
    admin.save()
    project = ProjectFactory()
    MembershipFactory(project=project, user=admin, role=Role.ADMIN)
    for i, name in enumerate(("red", "green")):
        add_images(project, [TagFactory(project=project, name=name)], 6, colour=COLOURS[i], seed=i)
    script = readme_example()
    # The example's server and project are the reader's; here they are the test's.
    script = script.replace("http://localhost:8000", live_server.url)
    script = script.replace("/projects/1", f"/projects/{project.pk}")
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    iteration = Iteration.objects.get(project=project)
    assert iteration.status == Iteration.Status.COMPLETED, iteration.failure_message
    assert iteration.published_name == "prod"
    assert '"published_name": "prod"' in done.stdout
