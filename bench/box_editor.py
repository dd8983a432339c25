"""Box editor figure (issue 4): time from pressing N to the next image shown, on a local server.

    .venv/bin/python bench/box_editor.py [--images 60] [--presses 50]

What it does, in a fresh temporary LOUPE_DATA_DIR (SQLite in WAL mode, the default):
1. migrate + collectstatic; one detection project with 3 tags and N distinct 1024x768 JPEGs
   (about 100-200 kB each, like photos), none with boxes yet, and one annotator.
2. Starts the web server exactly as `python -m project.up` does (uvicorn with its argv).
3. Headless Chromium (/usr/bin/chromium via Playwright) logs in, opens the editor on the newest
   image and presses N (next image without boxes) again and again. The editor measures in the
   page: from the key press (Date.now() kept in sessionStorage) to the animation frame after the
   next page's image is decoded and set on the SVG (`data-nav-ms` on the editor). Every press
   first draws a box on the current image, so N also waits for a real save.
Prints p50/p95 and appends them, with the command, to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime
import io
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

CHROMIUM = os.environ.get("LOUPE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSWORD = "bench-password-1"
TARGET_P95_MS = 100


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def prepare_environment(data_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("DATABASE_URL", None)
    env.update(
        LOUPE_DATA_DIR=str(data_dir),
        LOUPE_STATIC_ROOT=str(data_dir / "static"),
        DJANGO_SETTINGS_MODULE="project.settings",
        PYTHONUNBUFFERED="1",
    )
    manage = [sys.executable, str(BASE_DIR / "manage.py")]
    for argv in (["migrate", "--noinput", "-v", "0"], ["collectstatic", "--noinput", "-v", "0"]):
        subprocess.run(manage + argv, env=env, check=True, cwd=BASE_DIR)
    os.environ.update(env)
    import django

    django.setup()
    return env


def _jpeg(n: int) -> bytes:
    import numpy as np
    from PIL import Image as PILImage

    rng = np.random.default_rng(n)
    # Smooth gradients plus noise: compresses like a photo, not like a flat colour.
    y, x = np.mgrid[0:768, 0:1024]
    base = np.stack(
        [(x * (n % 7 + 1)) % 256, (y * (n % 5 + 1)) % 256, ((x + y) * (n % 3 + 1)) % 256], axis=-1
    )
    pixels = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype("uint8")
    buffer = io.BytesIO()
    PILImage.fromarray(pixels).save(buffer, format="JPEG", quality=80)
    return buffer.getvalue()


def seed(n_images: int) -> dict[str, object]:
    import hashlib

    from django.contrib.auth import get_user_model
    from django.core.files.base import ContentFile

    from labeling.models import Image, Membership, Project, Role, Tag

    user = get_user_model().objects.create_user("bench", password=PASSWORD)
    project = Project.objects.create(name="Bench boxes", kind=Project.Kind.DETECTION, owner=user)
    Membership.objects.create(project=project, user=user, role=Role.ANNOTATOR)
    for name in ("car", "person", "bike"):
        Tag.objects.create(project=project, name=name)
    sizes = []
    for n in range(n_images):
        data = _jpeg(n)
        sizes.append(len(data))
        Image.objects.create(
            project=project,
            file=ContentFile(data, name=f"bench-{n}.jpg"),
            original_name=f"bench-{n}.jpg",
            format="JPEG",
            sha256=hashlib.sha256(data).hexdigest(),
            size_bytes=len(data),
            width=1024,
            height=768,
        )
    newest = project.images.order_by("-pk").first()
    return {"project": project, "newest": newest, "mean_kb": statistics.mean(sizes) / 1024}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    from project.up import Config, service_commands

    config = Config.from_env({**env, "HOST": "127.0.0.1", "PORT": str(port)})
    name, argv = service_commands(config)[0]
    assert name == "web", name
    server = subprocess.Popen(argv, env=env, cwd=BASE_DIR, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return server
        if server.poll() is not None:
            raise SystemExit(f"The web server exited with {server.returncode}.")
        time.sleep(0.2)
    server.terminate()
    raise SystemExit("The web server did not start within 60 s.")


def press_n(base_url: str, data: dict[str, object], presses: int) -> list[float]:
    from playwright.sync_api import sync_playwright

    project, newest = data["project"], data["newest"]
    timings: list[float] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(base_url=base_url, viewport={"width": 1280, "height": 900})
        page.goto("/accounts/login/")
        page.fill("input[name=username]", "bench")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url("**/")
        page.goto(f"/projects/{project.pk}/images/{newest.pk}/boxes/")
        page.wait_for_selector("[data-box-editor][data-ready='1']")
        for _ in range(presses):
            # Draw a box (and let it save) so the image leaves the "without boxes" list.
            box = page.locator(".box-canvas").bounding_box()
            x0, y0 = box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.3
            page.mouse.move(x0, y0)
            page.mouse.down()
            page.mouse.move(x0 + 120, y0 + 80, steps=3)
            page.mouse.up()
            page.wait_for_selector("[data-testid=save-status]:text('Saved.')")
            url = page.url
            page.keyboard.press("n")
            page.wait_for_function("u => location.href !== u", arg=url)
            page.wait_for_selector("[data-box-editor][data-nav-ms]")
            timings.append(float(page.get_attribute("[data-box-editor]", "data-nav-ms")))
        browser.close()
    return timings


def report(data: dict[str, object], timings: list[float], command: str) -> str:
    p50, p95 = statistics.median(timings), percentile(timings, 95)
    verdict = "meets" if p95 <= TARGET_P95_MS else "MISSES"
    return "\n".join(
        [
            f"## Box editor: N to the next image shown ({datetime.date.today().isoformat()})",
            "",
            f"Command: `{command}`",
            "",
            f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
            f"{platform.python_version()}; uvicorn as `python -m project.up` starts it, "
            "SQLite WAL, headless Chromium. Images: 1024x768 JPEG, "
            f"{data['mean_kb']:.0f} kB on average; each press first draws a box and waits for "
            "its save.",
            "",
            "| measure | n | p50 ms | p95 ms | target |",
            "|---|---|---|---|---|",
            f"| key N → next image decoded and shown | {len(timings)} | {p50:.1f} | {p95:.1f} | "
            f"p95 ≤ {TARGET_P95_MS} ms ({verdict}) |",
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=60)
    parser.add_argument("--presses", type=int, default=50)
    args = parser.parse_args()
    if args.presses >= args.images:
        parser.error("--presses must be below --images")
    with tempfile.TemporaryDirectory(prefix="loupe-bench-boxes-") as tmp:
        env = prepare_environment(Path(tmp))
        data = seed(args.images)
        port = free_port()
        server = start_server(env, port)
        try:
            timings = press_n(f"http://127.0.0.1:{port}", data, args.presses)
        finally:
            server.terminate()
            server.wait(timeout=10)
    command = "bench/box_editor.py " + " ".join(sys.argv[1:])
    text = report(data, timings, f".venv/bin/python {command.strip()}")
    print(text)
    with open(BASE_DIR / "bench" / "RESULTS.md", "a") as results:
        results.write("\n" + text)


if __name__ == "__main__":
    main()
