"""Embedding map figures (issue 13): layout time, frame rate at 20,000 points, labels per minute.

    .venv/bin/python bench/embedding_map.py [--layout-points 20000] [--fps-points 20000]
        [--images 200] [--no-write]

In a throwaway SQLite database, served by Django's live-server thread (static files from the
finders), driven by headless Chromium (/usr/bin/chromium via Playwright, the app's defaults):
1. Layout: `training.ml.layout.layout_2d` (what the `training.lay_out_map` task calls) on
   `--layout-points` synthetic 1,280-d embeddings in 10 clusters, timed.
2. Frame rate: a project of `--fps-points` images with a stored map (that layout); the Map page
   is opened and, for 3 s each, the view is panned (pointer drags in pan mode) and zoomed (wheel)
   by events dispatched from a requestAnimationFrame loop through the page's own handlers; the
   frames the page drew per second are counted (goal >= 30).
3. Labels per minute: a generated 10-class set (`bench.data.photo_classes`: views of 10 photos)
   uploaded twice, embedded by the real backbone and laid out by the worker's function. A
   scripted annotator, who knows each image's class as a person looking at it would, tags
   (a) cluster by cluster on the map: a lasso around the convex hull of the class's points,
   the tag picked, submitted; images of other classes the lasso caught are then fixed one at a
   time in the tagging view (that time counts); (b) one image at a time in the tagging view
   (key 1-9, the tenth tag's button), auto-advance on. Both end with every image correctly
   tagged (checked in the database); labels per minute = images / wall minutes; ratio map/view.
   The annotator has no thinking time: the figures compare the tools' round trips, not people.
Prints the figures and appends them, with the command, to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))
# Playwright's sync API runs an event loop in this thread; the ORM calls between page actions
# are still synchronous (as in tests/browser/conftest.py).
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

from bench.active_learning import setup_django  # noqa: E402
from bench.common import append_result, command_line, machine_line  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
PASSWORD = "bench-password-1"
FPS_SECONDS = 3.0

# Frames drawn while the page's own pointer and wheel handlers pan or zoom on every frame.
FPS_LOOP = """async ([kind, seconds]) => {
  const target = document.querySelector('[data-map-lasso]');
  const box = target.getBoundingClientRect();
  const cx = box.left + box.width / 2, cy = box.top + box.height / 2;
  const fire = (type, x, y, extra = {}) => target.dispatchEvent(new PointerEvent(type, {
    bubbles: true, pointerId: 1, button: 0, buttons: 1, clientX: x, clientY: y, ...extra}));
  if (kind === 'pan') {
    document.querySelector('[data-map-mode=pan]').click();
    fire('pointerdown', cx, cy);
  }
  let frames = 0, step = 0;
  const start = performance.now();
  await new Promise((done) => {
    const tick = () => {
      frames += 1; step += 1;
      const a = step / 15;
      if (kind === 'pan') fire('pointermove', cx + 80 * Math.sin(a), cy + 60 * Math.cos(a));
      else target.dispatchEvent(new WheelEvent('wheel', {bubbles: true, cancelable: true,
        clientX: cx + 50, clientY: cy - 30, deltaY: step % 40 < 20 ? -40 : 40}));
      if (performance.now() - start < seconds * 1000) requestAnimationFrame(tick); else done();
    };
    requestAnimationFrame(tick);
  });
  if (kind === 'pan') fire('pointerup', cx, cy, {buttons: 0});
  return frames / ((performance.now() - start) / 1000);
}"""

PIXELS = """() => {
  const chart = Chart.getChart(document.querySelector('[data-map-canvas]'));
  const box = document.querySelector('[data-map-lasso]').getBoundingClientRect();
  const out = {};
  for (const set of chart.data.datasets) for (const p of set.data) {
    out[p.id] = [box.left + chart.scales.x.getPixelForValue(p.x),
                 box.top + chart.scales.y.getPixelForValue(p.y)];
  }
  return out;
}"""


def clustered_embeddings(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((10, 1280)).astype(np.float32) * 1.5
    return centres[rng.integers(0, 10, n)] + rng.standard_normal((n, 1280)).astype(np.float32)


# --- Server and browser -----------------------------------------------------------------------


def start_server():
    from django.conf import settings
    from django.contrib.staticfiles.handlers import StaticFilesHandler
    from django.test.testcases import LiveServerThread

    settings.ALLOWED_HOSTS = ["*"]
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    server = LiveServerThread("127.0.0.1", StaticFilesHandler, port=0)
    server.daemon = True
    server.start()
    server.is_ready.wait()
    if server.error:
        raise server.error
    return server, f"http://127.0.0.1:{server.port}"


def new_page(browser, base_url: str):
    page = browser.new_context(
        base_url=base_url, viewport={"width": 1280, "height": 900}
    ).new_page()
    page.set_default_timeout(60_000)
    page.goto("/accounts/login/")
    page.fill("input[name=username]", "bench")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/")
    return page


def open_map(page, project_id: int) -> float:
    started = time.perf_counter()
    page.goto(f"/projects/{project_id}/map/")
    page.locator("[data-embedding-map][data-ready=true]").wait_for()
    page.get_by_test_id("map-canvas").scroll_into_view_if_needed()
    return time.perf_counter() - started


# --- 1 and 2: layout time, frame rate ---------------------------------------------------------


def make_user():
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_user("bench", password=PASSWORD)


def fps_project(user, xy: np.ndarray) -> int:
    """A project of len(xy) images (one shared file) with a stored, current map at `xy`."""
    from django.conf import settings
    from django.utils import timezone

    from labeling.models import Image, ImageTag, Membership, Project, Role, Tag
    from training.models import EmbeddingMap
    from training.services.embedding_map import map_fingerprint

    project = Project.objects.create(name="Map fps", kind=Project.Kind.MULTICLASS, owner=user)
    Membership.objects.create(project=project, user=user, role=Role.ADMIN)
    tags = [Tag.objects.create(project=project, name=f"class {n}") for n in range(10)]
    media = Path(settings.MEDIA_ROOT)
    (media / "thumbnails").mkdir(parents=True, exist_ok=True)
    from PIL import Image as PILImage

    PILImage.new("RGB", (64, 48), (120, 160, 200)).save(media / "thumbnails" / "s.jpg")
    rows = [
        Image(
            project=project,
            file="images/s.jpg",
            thumbnail="thumbnails/s.jpg",
            sha256=f"{i:064x}",
            format="JPEG",
            size_bytes=1000,
            width=640,
            height=480,
            is_tagged=i % 3 != 0,
            original_name=f"b{i}.jpg",
        )
        for i in range(len(xy))
    ]
    Image.objects.bulk_create(rows, batch_size=2000)
    ids = list(project.images.order_by("pk").values_list("pk", flat=True))
    ImageTag.objects.bulk_create(
        [ImageTag(image_id=pk, tag=tags[i % 10]) for i, pk in enumerate(ids) if i % 3 != 0],
        batch_size=2000,
    )
    EmbeddingMap.objects.create(
        project=project,
        status=EmbeddingMap.Status.DONE,
        fingerprint=map_fingerprint(project),
        points={"ids": ids, "xy": np.round(xy, 5).tolist()},
        image_count=len(ids),
        finished=timezone.now(),
    )
    return project.pk


def frame_rates(browser, base_url: str, project_id: int) -> dict[str, float]:
    page = new_page(browser, base_url)
    load_s = open_map(page, project_id)
    page.wait_for_timeout(500)
    pan = page.evaluate(FPS_LOOP, ["pan", FPS_SECONDS])
    zoom = page.evaluate(FPS_LOOP, ["zoom", FPS_SECONDS])
    page.context.close()
    return {"load_s": load_s, "pan_fps": pan, "zoom_fps": zoom}


# --- 3: labels per minute ---------------------------------------------------------------------


def labels_projects(user, count: int) -> tuple[list[int], list[int], list[str], dict[int, int]]:
    """Two projects with the same generated images (10 classes), untagged, embedded and laid
    out by the worker's own function. Returns project ids, tag names and the class per image."""
    from django.core.files.base import ContentFile

    from bench.data import photo_classes
    from labeling.models import Image, Membership, Project, Role, Tag
    from training.services.embedding_map import current_map, run_map_layout

    items = photo_classes(Path(tempfile.gettempdir()), images=count, size=(160, 120))
    names = [f"class {n}" for n in range(10)]
    projects, truth = [], {}
    for label in ("map", "view"):
        project = Project.objects.create(
            name=f"Labels {label}", kind=Project.Kind.MULTICLASS, owner=user
        )
        Membership.objects.create(project=project, user=user, role=Role.ADMIN)
        tags = [Tag.objects.create(project=project, name=name) for name in names]
        for path, cls in items:
            data = path.read_bytes()
            image = Image.objects.create(
                project=project,
                file=ContentFile(data, name=path.name),
                sha256=hashlib.sha256(data).hexdigest(),
                format="JPEG",
                size_bytes=len(data),
                width=160,
                height=120,
                original_name=path.name,
            )
            truth[image.pk] = tags[cls].pk
        from labeling.services.thumbnails import make_thumbnails

        make_thumbnails(list(project.images.values_list("pk", flat=True)))
        current_map(project)
        run_map_layout(project.pk)
        projects.append(project.pk)
    return projects, names, truth


def _hull(points: np.ndarray) -> np.ndarray:
    """Convex hull (Andrew's monotone chain), pushed 8 px out from its centre."""
    pts = sorted(map(tuple, points.tolist()))
    if len(pts) < 3:
        pts = pts + [(p[0] + 1, p[1] + 1) for p in pts] + [(pts[0][0] - 1, pts[0][1] + 1)]

    def cross(o, a, b):
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower: list = []
    for p in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    upper: list = []
    for p in reversed(pts):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    hull = np.array(lower[:-1] + upper[:-1], dtype=float)
    centre = hull.mean(axis=0)
    direction = hull - centre
    norms = np.linalg.norm(direction, axis=1, keepdims=True)
    return hull + 8 * direction / np.maximum(norms, 1e-6)


def tag_in_view(page, project_id: int, image_ids: list[int], truth: dict, tag_names) -> None:
    """One image at a time in the tagging view: the tag's key (1-9) or the tenth tag's button."""
    from labeling.models import Tag

    key_of = {
        tag.pk: i for i, tag in enumerate(Tag.objects.filter(project_id=project_id).order_by("pk"))
    }
    page.goto(f"/projects/{project_id}/images/{image_ids[0]}/?filter=untagged")
    for n in range(len(image_ids)):
        stage = page.locator("#tagging-stage")
        current = int(stage.get_attribute("data-image-id"))
        index = key_of[truth[current]]
        if index < 9:
            page.keyboard.press(str(index + 1))
        else:
            page.get_by_test_id("tag-button").nth(index).click()
        if n + 1 < len(image_ids):
            # Locators, not wait_for_function: that evaluates a string, which the CSP refuses.
            page.locator(f"#tagging-stage:not([data-image-id='{current}'])").wait_for()
    page.locator("[data-tagging-keys][data-pending-saves='0']").wait_for()
    # The last key has no next image to show: done when its label is stored.
    from labeling.models import ImageTag

    deadline = time.perf_counter() + 60
    while not ImageTag.objects.filter(image_id=current, tag_id=truth[current]).exists():
        if time.perf_counter() > deadline:
            raise TimeoutError(f"image {current} was not tagged")
        time.sleep(0.01)


def tag_on_map(page, project_id: int, truth: dict, tag_names: list[str]) -> int:
    """Cluster by cluster: lasso each class's hull, tag, submit. Returns images fixed after."""
    from labeling.models import Tag

    open_map(page, project_id)
    tags = list(Tag.objects.filter(project_id=project_id).order_by("pk"))
    for tag in tags:
        pixels = page.evaluate(PIXELS)
        mine = [int(i) for i in pixels if truth[int(i)] == tag.pk]
        if not mine:
            continue
        hull = _hull(np.array([pixels[str(i)] for i in mine]))
        page.mouse.move(*hull[0])
        page.mouse.down()
        for x, y in [*hull[1:], hull[0]]:
            page.mouse.move(x, y, steps=3)
        page.mouse.up()
        page.get_by_test_id("map-tag-select").select_option(str(tag.pk))
        page.get_by_test_id("map-tag-submit").click()
        page.get_by_test_id("map-notice").filter(has_text="Tagged").wait_for()
        page.locator("[data-map-tag-form] [type=submit]:not([disabled])").wait_for()
    from labeling.models import ImageTag

    ids = set(project_images(project_id))
    labels = dict(ImageTag.objects.filter(image_id__in=ids).values_list("image_id", "tag_id"))
    wrong = sorted(i for i in ids if labels.get(i) != truth[i])
    for image_id in wrong:  # the lasso caught them with another class: fix one at a time
        tag_in_view(page, project_id, [image_id], truth, tag_names)
    return len(wrong)


def all_correct(project_id: int, truth: dict) -> bool:
    """Every image of the project carries exactly its class's tag."""
    from labeling.models import Image, ImageTag

    ids = set(Image.objects.filter(project_id=project_id).values_list("pk", flat=True))
    labels: dict[int, list[int]] = {}
    for image_id, tag_id in ImageTag.objects.filter(image_id__in=ids).values_list(
        "image_id", "tag_id"
    ):
        labels.setdefault(image_id, []).append(tag_id)
    wrong = {i: (labels.get(i), truth[i]) for i in sorted(ids) if labels.get(i) != [truth[i]]}
    if wrong:
        print(f"project {project_id}: {len(wrong)} wrong (got, wanted): {wrong}", flush=True)
    return not wrong


def project_images(project_id: int) -> list[int]:
    from labeling.models import Image

    return list(
        Image.objects.filter(project_id=project_id).order_by("pk").values_list("pk", flat=True)
    )


def labels_per_minute(browser, base_url: str, user, count: int) -> dict[str, float]:
    (map_id, view_id), names, truth = labels_projects(user, count)
    page = new_page(browser, base_url)
    started = time.perf_counter()
    fixed = tag_on_map(page, map_id, truth, names)
    map_s = time.perf_counter() - started
    assert all_correct(map_id, truth), "the map annotator left wrong labels"
    view_ids = project_images(view_id)[::-1]  # newest first: the untagged filter's order
    started = time.perf_counter()
    tag_in_view(page, view_id, view_ids, truth, names)
    view_s = time.perf_counter() - started
    assert all_correct(view_id, truth), "the tagging-view annotator left wrong labels"
    page.context.close()
    return {
        "images": count,
        "map_s": map_s,
        "view_s": view_s,
        "map_lpm": count / (map_s / 60),
        "view_lpm": count / (view_s / 60),
        "fixed": fixed,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--layout-points", type=int, default=20_000)
    parser.add_argument("--fps-points", type=int, default=20_000)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    setup_django(Path(tempfile.mkdtemp(prefix="loupe-map-bench-")))
    from playwright.sync_api import sync_playwright

    from training.ml.layout import layout_2d

    vectors = clustered_embeddings(max(args.layout_points, args.fps_points))
    started = time.perf_counter()
    xy = layout_2d(vectors[: args.layout_points], seed=0)
    layout_s = time.perf_counter() - started
    print(f"layout of {args.layout_points:,} points: {layout_s:.1f} s", flush=True)
    if args.fps_points > len(xy):
        extra = np.random.default_rng(1).uniform(-1, 1, (args.fps_points - len(xy), 2))
        xy = np.concatenate([xy, extra.astype(np.float32)])
    user = make_user()
    server, base_url = start_server()
    fps_id = fps_project(user, xy[: args.fps_points])
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True
        )
        fps = frame_rates(browser, base_url, fps_id)
        print(f"frame rate at {args.fps_points:,} points: {fps}", flush=True)
        if not args.images:  # frame rates only
            print(f"layout {layout_s:.1f} s; {fps}")
            return
        lpm = labels_per_minute(browser, base_url, user, args.images)
        print(f"labels per minute: {lpm}", flush=True)
        browser.close()
    server.terminate()
    table = "\n".join(
        [
            "| figure | value |",
            "|---|---|",
            f"| layout of {args.layout_points:,} points (`layout_2d`, one process) | "
            f"{layout_s:.1f} s |",
            f"| Map page load to drawn, {args.fps_points:,} points | {fps['load_s']:.2f} s |",
            f"| pan, frames drawn per second, {args.fps_points:,} points (goal >= 30) | "
            f"{fps['pan_fps']:.1f} |",
            f"| zoom, frames drawn per second, {args.fps_points:,} points (goal >= 30) | "
            f"{fps['zoom_fps']:.1f} |",
            f"| labels per minute, map (cluster by cluster; {lpm['fixed']} caught by a "
            f"neighbour's lasso, fixed in the tagging view) | {lpm['map_lpm']:.0f} "
            f"({lpm['images']} images in {lpm['map_s']:.1f} s) |",
            f"| labels per minute, tagging view (one image at a time) | {lpm['view_lpm']:.0f} "
            f"({lpm['images']} images in {lpm['view_s']:.1f} s) |",
            f"| ratio map / tagging view | {lpm['map_lpm'] / lpm['view_lpm']:.1f}x |",
        ]
    )
    print(table)
    if not args.no_write:
        append_result(
            "Issue 13: embedding map (bench/embedding_map.py)",
            f"`{command_line()}` on {machine_line()}, headless Chromium without GPU (Django's "
            "live-server thread). Layout on synthetic 1,280-d embeddings in 10 clusters; frame "
            "rates counted while the page's own handlers pan or zoom on every animation frame; "
            "labels per minute of a scripted annotator (no thinking time) on a generated 10-class "
            "set (bench.data.photo_classes), real backbone embeddings, every label checked in the "
            "database.\n\n" + table,
        )


if __name__ == "__main__":
    main()
