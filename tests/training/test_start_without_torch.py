"""Starting a training is the web process's work and must not import torch: importing it
(and timm) took 10-20 s of a busy 2-core host inside the request that started the first
training (bench/customvision_quickstart.py). Run in a fresh interpreter with its own data
directory, since this test process has torch loaded already."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import io, json, sys
    import django
    django.setup()
    from django.core.files.base import File
    from django.core.management import call_command
    call_command("migrate", verbosity=0)
    import project.asgi  # the web process's application
    from django.contrib.auth import get_user_model
    from PIL import Image
    from labeling.services.ingest import ingest_images
    from labeling.services.projects import create_project, create_tag
    from training.services.iterations import start_iteration

    def png(colour, n):
        buffer = io.BytesIO()
        Image.new("RGB", (16, 16), (colour[0], colour[1], n)).save(buffer, format="PNG")
        buffer.seek(0)
        return File(buffer, name=f"{colour}_{n}.png")

    admin = get_user_model().objects.create_superuser("admin", "a@example.com", "pw-12345678")
    project = create_project(name="P", kind="multiclass", domain="general", by=admin)
    for colour in ((200, 0), (0, 200)):
        tag = create_tag(project=project, name=str(colour), by=admin)
        files = [png(colour, n) for n in range(5)]
        ingest_images(project=project, files=files, by=admin, tag_ids=[tag.pk])
    iteration = start_iteration(project=project, by=admin)
    print(json.dumps({"status": iteration.status, "backbone": iteration.backbone,
                      "torch": "torch" in sys.modules, "timm": "timm" in sys.modules}))
    """
)


def test_starting_a_training_does_not_import_torch(tmp_path):
    # Its own SQLite under tmp_path: on the PostgreSQL pass DATABASE_URL names the shared
    # database, where a second run found the first run's "admin" already there.
    env = {
        **{k: v for k, v in os.environ.items() if k != "DATABASE_URL"},
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "LOUPE_DATA_DIR": str(tmp_path),
        "REDIS_URL": "redis://127.0.0.1:1/0",  # no broker: the send fails fast and is logged
    }
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=ROOT,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["status"] == "queued" and result["backbone"] == "lite2-levels"
    assert result["torch"] is False and result["timm"] is False
