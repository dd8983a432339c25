"""Gallery and tagging figures (issue 2): gallery pages at 20,000 images, tag saves, and the
tagging page in headless Chromium.

    .venv/bin/python bench/gallery_and_tagging.py [--images 20000] [--requests 200] [--keys 60]

What it does:
1. collectstatic into a temporary STATIC_ROOT, then starts the whole stack as `make run` does
   (`python -m project.up` via bench.common.LoupeServer: fresh temporary LOUPE_DATA_DIR, SQLite
   in WAL mode, embedded Redis, uvicorn, Celery workers, beat).
2. Seeds one multiclass project straight into its database (bulk_create): N images sharing one
   file, half of the older ones tagged over 5 tags; the newest 100 are untagged and each has its
   own 640x480 JPEG, so the Chromium walk really fetches a new image per key.
3. In-process (Django test client, same database): queries per gallery page, wall and CPU time.
4. Over loopback HTTP: a trivial view (the login page: the baseline of the ratios), gallery pages
   (first, middle, tag filter first and middle, untagged middle), one tag save (toggle), one tag
   save with auto-advance (save + render the next image), each with uvicorn's CPU per request.
5. Headless Chromium (/usr/bin/chromium via Playwright): the tagging page's load event, and from a
   tag key press (multiclass, auto-advance) to the next image shown (new image element complete,
   measured in the page from the key event's timestamp to the animation frame that has it).
Prints a table and appends it, with the command, to bench/RESULTS.md (bench.common.append_result).
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

from bench.common import (  # noqa: E402  (run as a script: the repo root is put on the path)
    LoupeServer,
    append_result,
    command_line,
    machine_line,
    percentile,
)

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
DISTINCT_IMAGES = 100  # newest images, each with its own file: the Chromium walk goes over them
PASSWORD = "bench-password-1"
HTMX = {"HX-Request": "true", "HX-Target": "tagging-stage"}


def summary(values_ms: list[float]) -> dict[str, float]:
    return {
        "p50": statistics.median(values_ms),
        "p95": percentile(values_ms, 0.95),
        "n": len(values_ms),
    }


# --- Setup -------------------------------------------------------------------------------------


def collect_static(static_root: Path) -> None:
    """The manifest static storage (DEBUG off, as `make run`) needs collectstatic first."""
    env = {**os.environ, "LOUPE_STATIC_ROOT": str(static_root)}
    subprocess.run(
        [sys.executable, str(BASE_DIR / "manage.py"), "collectstatic", "--noinput", "-v", "0"],
        env=env,
        check=True,
        cwd=BASE_DIR,
    )


def connect_django(data_dir: Path, static_root: Path) -> None:
    """Use the running server's database from this process (seeding, query counts)."""
    os.environ.update(
        LOUPE_DATA_DIR=str(data_dir),
        LOUPE_STATIC_ROOT=str(static_root),
        DJANGO_SETTINGS_MODULE="project.settings",
    )
    import django

    django.setup()


def _jpeg(n: int) -> bytes:
    import numpy as np
    from PIL import Image as PILImage

    rng = np.random.default_rng(n)
    base = np.linspace(0, 255, 640, dtype=np.float32)[None, :, None]
    pixels = base * rng.uniform(0.3, 1, size=(1, 1, 3)) + rng.normal(0, 25, (480, 640, 3))
    buffer = io.BytesIO()
    PILImage.fromarray(pixels.clip(0, 255).astype("uint8")).save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def seed(n_images: int) -> dict[str, object]:
    from django.conf import settings
    from django.contrib.auth import get_user_model

    from labeling.models import Image, ImageTag, Membership, Project, Role, Tag

    user = get_user_model().objects.create_user("bench", password=PASSWORD)
    project = Project.objects.create(name="Bench", kind=Project.Kind.MULTICLASS, owner=user)
    Membership.objects.create(project=project, user=user, role=Role.REVIEWER)
    tags = [Tag.objects.create(project=project, name=f"tag{n}") for n in range(1, 6)]
    media = Path(settings.MEDIA_ROOT)
    (media / "images").mkdir(parents=True, exist_ok=True)
    (media / "thumbnails").mkdir(parents=True, exist_ok=True)
    shared = _jpeg(0)
    (media / "images" / "shared.jpg").write_bytes(shared)
    (media / "thumbnails" / "shared.jpg").write_bytes(shared)
    rows = []
    n_plain = n_images - DISTINCT_IMAGES
    for i in range(n_images):
        name = "images/shared.jpg"
        if i >= n_plain:
            name = f"images/distinct-{i}.jpg"
            (media / name).write_bytes(_jpeg(i + 1))
        rows.append(
            Image(
                project=project,
                file=name,
                thumbnail="thumbnails/shared.jpg",
                sha256=f"{i:064x}",
                format="JPEG",
                size_bytes=len(shared),
                width=640,
                height=480,
                is_tagged=i < n_plain and i % 2 == 0,
                original_name=f"bench{i}.jpg",
            )
        )
    Image.objects.bulk_create(rows, batch_size=2000)
    ids = list(Image.objects.filter(project=project).order_by("pk").values_list("pk", flat=True))
    labels = [
        ImageTag(image_id=image_id, tag=tags[(i // 2) % 5])
        for i, image_id in enumerate(ids[:n_plain])
        if i % 2 == 0
    ]
    ImageTag.objects.bulk_create(labels, batch_size=2000)
    return {"project": project, "user": user, "tags": tags, "ids": ids, "n_plain": n_plain}


def gallery_urls(data: dict[str, object]) -> dict[str, str]:
    project, tags, ids = data["project"], data["tags"], data["ids"]
    middle = ids[len(ids) // 2]
    base = f"/projects/{project.pk}/"
    return {
        "first page": base,
        "middle page": f"{base}?after={middle}",
        "tag filter, first page": f"{base}?tag={tags[2].pk}",
        "tag filter, middle page": f"{base}?tag={tags[2].pk}&after={middle}",
        "untagged, middle page": f"{base}?filter=untagged&after={middle}",
    }


def in_process_figures(data: dict[str, object], requests: int) -> dict[str, dict[str, float]]:
    """Queries per page and view time without HTTP (Django test client, same database)."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client()
    client.force_login(data["user"])
    result = {}
    for name, url in gallery_urls(data).items():
        for _ in range(5):
            assert client.get(url).status_code == 200
        with CaptureQueriesContext(connection) as queries:
            client.get(url)
        n_queries = len(queries)  # now: the next request's start clears the query log
        times = []
        cpu_start = time.process_time()
        for _ in range(requests):
            start = time.perf_counter()
            client.get(url)
            times.append((time.perf_counter() - start) * 1000)
        cpu_ms = (time.process_time() - cpu_start) * 1000 / requests
        result[name] = {**summary(times), "queries": n_queries, "cpu": cpu_ms}
    return result


# --- HTTP against the running stack ------------------------------------------------------


def http_login(base_url: str):
    import httpx

    client = httpx.Client(base_url=base_url, timeout=30)
    client.get("/accounts/login/")
    response = client.post(
        "/accounts/login/",
        data={
            "username": "bench",
            "password": PASSWORD,
            "csrfmiddlewaretoken": client.cookies["csrftoken"],
        },
        headers={"Referer": base_url + "/accounts/login/"},
    )
    assert response.status_code == 302, response.status_code
    return client


SERVER: LoupeServer | None = None  # the running stack, for the web server's CPU time


def server_cpu_ms() -> float:
    """CPU time (user + system) the web server (uvicorn) has used so far, in ms."""
    assert SERVER is not None
    return SERVER.cpu_seconds("uvicorn") * 1000


def timed(call: Callable[[], object], repeat: int, warmup: int = 10) -> dict[str, float]:
    """Wall time per call (p50, p95) and the server's mean CPU time per call.

    On a shared, busy machine the wall time includes waiting for a core; the CPU time is what
    the request itself costs the server.
    """
    for _ in range(warmup):
        call()
    times = []
    cpu_before = server_cpu_ms()
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    return {**summary(times), "cpu": (server_cpu_ms() - cpu_before) / repeat}


def http_figures(base_url: str, data: dict[str, object], requests: int) -> dict[str, dict]:
    import httpx

    figures: dict[str, dict] = {}
    anonymous = httpx.Client(base_url=base_url, timeout=30)
    figures["baseline: login page"] = timed(lambda: anonymous.get("/accounts/login/"), requests)
    client = http_login(base_url)

    def get(url: str) -> None:
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code)

    for name, url in gallery_urls(data).items():
        figures[f"gallery {name}"] = timed(lambda url=url: get(url), requests)

    project, tags, ids, n_plain = data["project"], data["tags"], data["ids"], data["n_plain"]
    untagged = [image_id for i, image_id in enumerate(ids[:n_plain]) if i % 2 == 1]
    headers = {**HTMX, "X-CSRFToken": client.cookies["csrftoken"]}

    def saver(pool: list[int], query: str, advance: bool) -> Callable[[], None]:
        it = iter(pool)

        def save() -> None:
            image_id = next(it)
            body = {"tag": tags[image_id % 5].pk, "version": 1}
            if advance:
                body["advance"] = "1"
            response = client.post(
                f"/projects/{project.pk}/images/{image_id}/tags/{query}", data=body, headers=headers
            )
            assert response.status_code == 200, response.status_code

        return save

    n = requests + 10
    figures["tag save (toggle)"] = timed(saver(untagged[-n:], "", False), requests)
    figures["tag save + next image (auto-advance)"] = timed(
        saver(untagged[-2 * n : -n][::-1], "?filter=untagged", True), requests
    )
    image_id = ids[len(ids) // 2]
    figures["tagging page (HTML only)"] = timed(
        lambda: get(f"/projects/{project.pk}/images/{image_id}/"), requests
    )
    return figures


# --- Headless Chromium -------------------------------------------------------------------------

KEY_HOOK = """() => {
  window.__times = []; window.__shown = 0; window.__ready = 0;
  document.addEventListener('keydown', (event) => {
    const t0 = event.timeStamp;  // same clock as performance.now()
    if (document.querySelector('[data-tagging-keys]').dataset.nextStage === 'ready') {
      window.__ready += 1;
    }
    const before = document.getElementById('tagging-stage').dataset.imageId;
    const poll = () => {
      const img = document.getElementById('stage-image');
      if (img && img.dataset.imageId !== before && img.complete && img.naturalWidth > 0) {
        window.__times.push(performance.now() - t0); window.__shown += 1; return;
      }
      requestAnimationFrame(poll);
    };
    requestAnimationFrame(poll);
  }, true);
}"""


def browser_figures(base_url: str, data: dict[str, object], keys: int) -> dict[str, dict]:
    from playwright.sync_api import sync_playwright

    project, ids = data["project"], data["ids"]
    distinct = ids[-DISTINCT_IMAGES:][::-1]  # newest first, the untagged filter's order
    figures: dict[str, dict] = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True
        )
        page = browser.new_context(
            base_url=base_url, viewport={"width": 1280, "height": 900}
        ).new_page()
        page.goto("/accounts/login/")
        page.fill("input[name=username]", "bench")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url("**/")

        loads = []
        for image_id in ids[1000:1021]:
            page.goto(f"/projects/{project.pk}/images/{image_id}/", wait_until="load")
            loads.append(
                page.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd")
            )
        figures["tagging page load event (first, cold cache)"] = {
            "p50": loads[0],
            "p95": loads[0],
            "n": 1,
        }
        figures["tagging page load event (warm)"] = summary(loads[1:])

        page.goto(
            f"/projects/{project.pk}/images/{distinct[0]}/?filter=untagged", wait_until="load"
        )
        page.evaluate(KEY_HOOK)
        for n in range(min(keys, DISTINCT_IMAGES - 1)):
            # A person looks at an image for a moment before the key; the preload uses it.
            page.wait_for_timeout(200)
            page.keyboard.press(str(n % 5 + 1))
            page.wait_for_function(f"window.__shown >= {n + 1}", timeout=10_000)
        figures["key press → next image shown"] = {
            **summary(page.evaluate("window.__times")),
            "prefetched": page.evaluate("window.__ready"),
        }
        page.wait_for_function(
            "document.querySelector('[data-tagging-keys]').dataset.pendingSaves === '0'"
        )
        browser.close()
    return figures


# --- Report ------------------------------------------------------------------------------------


def report(
    n_images: int, in_process: dict, http: dict, browser: dict, command: str, load: str
) -> str:
    base = http["baseline: login page"]["p95"]
    keys = browser["key press → next image shown"]
    lines = [
        f"### Gallery and tagging at {n_images:,} images ({machine_line()})",
        "",
        f"Command: `{command}`",
        "",
        "Server: the whole stack as `make run` starts it (`python -m project.up`: uvicorn, "
        "Celery workers, beat, embedded Redis); times over loopback HTTP (client-side, so they "
        "include uvicorn and the HTTP client); the baseline is a "
        "trivial view (the login page) timed in the same run. Load average (1 min) at the start "
        f"and end of the timed part: {load} (other work shares these cores; the server CPU "
        "column is the request's own cost).",
        "",
        "| figure | p50 ms | p95 ms | p95 / baseline p95 | server CPU ms/request | goal |",
        "|---|---:|---:|---:|---:|---|",
    ]
    goals = {
        "gallery": "p95 ≤ 50 ms",
        "tag save (toggle)": "p95 ≤ 30 ms",
        "tagging page load event (warm)": "≤ 500 ms",
        "tagging page load event (first, cold cache)": "≤ 500 ms",
        "key press → next image shown": "p95 ≤ 100 ms",
    }
    for name, fig in {**http, **browser}.items():
        goal = next((g for k, g in goals.items() if name.startswith(k)), "")
        ratio = (
            ""
            if name.startswith("tagging page load") or name.startswith("key")
            else (f"{fig['p95'] / base:.2f}")
        )
        cpu = f"{fig['cpu']:.1f}" if "cpu" in fig else ""
        lines.append(f"| {name} | {fig['p50']:.1f} | {fig['p95']:.1f} | {ratio} | {cpu} | {goal} |")
    lines += [
        "",
        "In-process (Django test client, no HTTP): database queries, wall time and CPU time "
        "per gallery page.",
        "",
        "| gallery page | queries | p50 ms | p95 ms | CPU ms/request |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, fig in in_process.items():
        lines.append(
            f"| {name} | {fig['queries']} | {fig['p50']:.1f} | {fig['p95']:.1f} "
            f"| {fig['cpu']:.1f} |"
        )
    lines += [
        "",
        f"Key presses: {keys['n']} (tag keys 1-5, multiclass, auto-advance, untagged "
        f"filter, 200 ms between presses); the next stage was already fetched for "
        f"{keys['prefetched']} of them, the others took the one-request path.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    global SERVER
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--keys", type=int, default=60)
    parser.add_argument("--no-results", action="store_true", help="do not append RESULTS.md")
    args = parser.parse_args()

    static_root = Path(tempfile.mkdtemp(prefix="loupe-bench-static-"))
    try:
        collect_static(static_root)
        with LoupeServer.start(env={"LOUPE_STATIC_ROOT": str(static_root)}) as server:
            SERVER = server
            connect_django(server.data_dir, static_root)
            started = time.perf_counter()
            data = seed(args.images)
            print(f"seeded {args.images} images in {time.perf_counter() - started:.1f} s")
            load_start = os.getloadavg()[0]
            in_process = in_process_figures(data, args.requests)
            http = http_figures(server.url, data, args.requests)
            browser = browser_figures(server.url, data, args.keys)
            load = f"{load_start:.1f} → {os.getloadavg()[0]:.1f}"
    finally:
        shutil.rmtree(static_root, ignore_errors=True)
    text = report(args.images, in_process, http, browser, command_line(), load)
    print(text)
    if not args.no_results:
        append_result("Issue 2: gallery and tagging", text)


if __name__ == "__main__":
    main()
