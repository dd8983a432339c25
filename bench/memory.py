"""The web process's memory through a corpus of large and bad images (issue 16, item 9).

    .venv/bin/python bench/memory.py [--no-record]

What it does:
1. Fits a real classifier in this process (bench.prediction_api.build_artifact: EfficientNet-
   Lite0, the production engine) and starts the whole stack as `make run` does
   (bench.common.LoupeServer: uvicorn, Celery workers, embedded Redis, SQLite WAL, fresh data
   directory); seeds a project with that model published and a prediction key.
2. Warms the web process with one small prediction (the model is loaded), and reads its RSS.
3. Sends the corpus, generated in memory, through every entry point that decodes in the web
   process: the prediction API (stored and not), the upload API (the whole corpus in one
   request, and four 49 MP PNGs in one request), the quick test page (a logged-in form post),
   and four concurrent predictions of the largest accepted PNG.
   Before those, right after warm-up, the whole bad-input corpus of the robustness tests
   (tests/robustness/bad_inputs.py: 37 images, one a plain control, and 40 archives, each a
   few kB): each image alone through the upload API, the prediction API (stored and not) and
   the quick test page, each archive through the dataset import API (into a fresh project of
   the kind its format needs), then each import job polled until it ends. One row per entry
   point counts the answers by status class; its peak is the bad-input corpus's alone.
4. Prints each request's status and the uvicorn process's peak RSS (VmHWM from
   /proc/<pid>/status, the kernel's high-water mark, so no spike between samples is missed).
Goal: peak under 600 MB; every answer a 2xx or a 4xx with a reason, never a 500.

Two passes, each in its own interpreter and its own fresh stack, side by side in one run:
"torch" seeds the iteration as one trained before serving files existed (no serving file: the
web process predicts with the torch model, as every prediction did before), "serving" writes
the iteration's serving file as a training's end does (training.services.serving: ONNX
Runtime, no torch in the web process). Each pass also says whether libtorch was ever mapped
into the web process. (In the torch pass a worker writes the missing file meanwhile and the
web process switches to it LEGACY_RECHECK_S later; torch, once imported, stays in the process,
so the peak is still the torch path's.)
"""

from __future__ import annotations

import argparse
import io
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

import json  # noqa: E402

import httpx  # noqa: E402

from bench.common import (  # noqa: E402  (run as a script: the repo root is put on the path)
    LoupeServer,
    _cmdline,
    _descendants,
    append_result,
    command_line,
    machine_line,
)
from bench.prediction_api import (  # noqa: E402
    PUBLISH_NAME,
    build_artifact,
    connect_django,
    seed,
)
from tests.robustness.bad_inputs import (  # noqa: E402  (no Django: the generator alone)
    BadArchive,
    BadImage,
    archive_corpus,
    image_corpus,
)

GOAL_MB = 600


def _png(width: int, height: int, mode: str = "RGB") -> bytes:
    from PIL import Image as PILImage

    buffer = io.BytesIO()
    PILImage.new(mode, (width, height), (90, 140, 200)[: len(mode)]).save(
        buffer, format="PNG", compress_level=1
    )
    return buffer.getvalue()


def _jpeg(width: int, height: int) -> bytes:
    import numpy as np
    from PIL import Image as PILImage

    # A gradient with a little noise: a photo-like 1-3 MB file, not a flat few kB.
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None, None]
    noise = np.random.default_rng(0).normal(0, 6, (height, 1, 3)).astype(np.float32)
    pixels = (x * 0.6 + y * 0.3 + noise).clip(0, 255).astype("uint8")
    buffer = io.BytesIO()
    PILImage.fromarray(np.broadcast_to(pixels, (height, width, 3)).copy()).save(
        buffer, "JPEG", quality=80
    )
    return buffer.getvalue()


def _bomb_png(width: int, height: int) -> bytes:
    """A valid 1x1 PNG whose header claims width x height (a decompression-bomb header)."""
    data = bytearray(_png(1, 1))
    ihdr = 8 + 8  # signature, then the IHDR chunk's length and type
    data[ihdr : ihdr + 8] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[12 : ihdr + 13])) & 0xFFFFFFFF
    data[ihdr + 13 : ihdr + 17] = struct.pack(">I", crc)
    return bytes(data)


def corpus() -> dict[str, bytes]:
    png49 = _png(7000, 7000)
    jpeg12 = _jpeg(4000, 3000)
    return {
        "png-49MP-7000x7000.png": png49,
        "png-24MP-6000x4000.png": _png(6000, 4000),
        "png-24MP-RGBA.png": _png(6000, 4000, "RGBA"),
        "jpeg-12MP-4000x3000.jpg": jpeg12,
        "jpeg-49MP-7000x7000.jpg": _jpeg(7000, 7000),
        "bomb-100000x100000.png": _bomb_png(100_000, 100_000),
        "bomb-7000x7000-header.png": _bomb_png(7000, 7000),
        "truncated-49MP.png": png49[: len(png49) // 2],
        "truncated-12MP.jpg": jpeg12[: len(jpeg12) // 2],
        "zero-bytes.png": b"",
    }


def web_pid(server: LoupeServer) -> int:
    pids = [p for p in _descendants(server.process.pid) if "uvicorn" in _cmdline(p)]
    if len(pids) != 1:
        raise RuntimeError(f"Expected one uvicorn process, found {pids}.")
    return pids[0]


def memory_mb(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) of `pid` in MB."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss = int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1))
    hwm = int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1))
    return rss / 1024, hwm / 1024


def _reason(response: httpx.Response) -> str:
    if response.headers.get("content-type", "").startswith("application/json"):
        body = response.json()
        if isinstance(body, dict):
            return str(body.get("reason") or body.get("code") or "")
    return ""


def predict(server: LoupeServer, world: dict, data: bytes, *, store: bool) -> httpx.Response:
    suffix = "" if store else "/nostore"
    url = (
        f"{server.url}/api/predict/{world['project'].pk}/classify/iterations/"
        f"{PUBLISH_NAME}/image{suffix}"
    )
    headers = {"Prediction-Key": world["key"], "Content-Type": "application/octet-stream"}
    return httpx.post(url, content=data, headers=headers, timeout=300)


def upload(server: LoupeServer, world: dict, files: dict[str, bytes]) -> httpx.Response:
    token = server.token("bench", "bench-password")
    return httpx.post(
        f"{server.url}/api/projects/{world['project'].pk}/images/upload/",
        files=[("files", (name, data)) for name, data in files.items()],
        headers={"Authorization": f"Token {token}"},
        timeout=600,
    )


def quick_tester(server: LoupeServer) -> httpx.Client:
    """A browser-like session logged in as the project's admin."""
    client = httpx.Client(base_url=server.url, timeout=300, follow_redirects=False)
    page = client.get("/accounts/login/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    client.post(
        "/accounts/login/",
        data={"username": "bench", "password": "bench-password", "csrfmiddlewaretoken": token},
        headers={"Referer": f"{server.url}/accounts/login/"},
    )
    return client


def quick_test(client: httpx.Client, world: dict, name: str, data: bytes) -> httpx.Response:
    url = f"/projects/{world['project'].pk}/predictions/quick-test/"
    token = client.cookies.get("csrftoken")
    return client.post(
        url,
        data={"iteration": str(world["iteration"].pk), "store": "on"},
        files={"image": (name, data)},
        headers={"X-CSRFToken": token, "Referer": f"{client.base_url}{url}"},
    )


# --- The bad-input corpus ----------------------------------------------------------------------

CORPUS = "bad-input corpus"
_BOUNDARY = "----loupe-bench-boundary"
# Jobs run in the import worker; a corpus archive is a few kB, so each ends in seconds.
JOBS_TIMEOUT_S = 300


def _multipart(fields: dict[str, str], field: str, filename: str | bytes, data: bytes) -> dict:
    """A multipart body written by hand: a corpus file name may be empty, hold a NUL or not be
    UTF-8, and each must reach the server as the corpus has it."""
    raw = filename if isinstance(filename, bytes) else filename.encode("utf-8", "surrogateescape")
    quoted = raw.replace(b"\\", b"\\\\").replace(b'"', b"%22")
    head = f"--{_BOUNDARY}\r\nContent-Disposition: form-data; "
    parts = [f'{head}name="{name}"\r\n\r\n{value}\r\n'.encode() for name, value in fields.items()]
    parts.append(
        f'{head}name="{field}"; filename="'.encode()
        + quoted
        + b'"\r\nContent-Type: application/octet-stream\r\n\r\n'
        + data
        + b"\r\n"
    )
    return {
        "content": b"".join(parts) + f"--{_BOUNDARY}--\r\n".encode(),
        "headers": {"Content-Type": f"multipart/form-data; boundary={_BOUNDARY}"},
    }


def _status_class(response: httpx.Response | None) -> str:
    return "no answer" if response is None else f"{response.status_code // 100}xx"


def _send(call: Callable[..., httpx.Response], *args: object) -> httpx.Response | None:
    """call(*args)'s answer, or None when the connection dropped (counted, never raised)."""
    try:
        return call(*args)
    except httpx.HTTPError as err:
        print(f"  no answer: {type(err).__name__}: {err}", flush=True)
        return None


def _image_entry_points(
    server: LoupeServer, world: dict, tester: httpx.Client, token: str
) -> dict[str, Callable[[BadImage], httpx.Response]]:
    """Each entry point that takes an image, sending one corpus image alone."""
    project_id = world["project"].pk
    quick_url = f"/projects/{project_id}/predictions/quick-test/"

    def upload_api(bad: BadImage) -> httpx.Response:
        body = _multipart({}, "files", bad.filename, bad.data)
        body["headers"]["Authorization"] = f"Token {token}"
        return httpx.post(
            f"{server.url}/api/projects/{project_id}/images/upload/", **body, timeout=300
        )

    def quick_test_page(bad: BadImage) -> httpx.Response:
        body = _multipart(
            {"iteration": str(world["iteration"].pk), "store": "on"},
            "image",
            bad.filename,
            bad.data,
        )
        body["headers"]["X-CSRFToken"] = tester.cookies.get("csrftoken")
        body["headers"]["Referer"] = f"{server.url}{quick_url}"
        return tester.post(quick_url, **body)

    return {
        "upload API": upload_api,
        "predict (nostore)": lambda bad: predict(server, world, bad.data, store=False),
        "predict (store)": lambda bad: predict(server, world, bad.data, store=True),
        "quick test page": quick_test_page,
    }


def _import_projects(world: dict) -> dict[str, object]:
    """A fresh project of each kind the archives' formats need, the bench user its admin."""
    from labeling.models import Membership, Project, Role

    projects = {}
    for kind in (Project.Kind.MULTICLASS, Project.Kind.DETECTION):
        project = Project.objects.create(
            name=f"Bench imports ({kind})", kind=kind, owner=world["user"]
        )
        Membership.objects.create(project=project, user=world["user"], role=Role.ADMIN)
        projects[kind] = project
    detection = ("coco", "voc", "yolo")
    return {
        fmt: projects[Project.Kind.DETECTION if fmt in detection else Project.Kind.MULTICLASS]
        for fmt in (*detection, "csv", "folders")
    }


def import_api(
    server: LoupeServer, project: object, token: str, archive: BadArchive
) -> httpx.Response:
    return httpx.post(
        f"{server.url}/api/projects/{project.pk}/imports/",
        data={"format": archive.format, "contents": "labels" if archive.labels_only else "images"},
        files={"archive": (archive.upload_name, archive.data)},
        headers={"Authorization": f"Token {token}"},
        timeout=300,
    )


def _wait_for_jobs(server: LoupeServer, token: str, jobs: list[tuple[int, str]]) -> Counter:
    """Each job's final state (done, failed), or "still running" after JOBS_TIMEOUT_S."""
    states: Counter = Counter()
    deadline = time.monotonic() + JOBS_TIMEOUT_S
    for project_id, job_id in jobs:
        url = f"{server.url}/api/projects/{project_id}/imports/{job_id}/"
        while True:
            body = httpx.get(url, headers={"Authorization": f"Token {token}"}, timeout=60).json()
            if body["is_finished"] or time.monotonic() > deadline:
                states[body["state"] if body["is_finished"] else "still running"] += 1
                break
            time.sleep(0.5)
    return states


def bad_input_corpus(
    server: LoupeServer, world: dict, tester: httpx.Client, note: Callable[..., Counter]
) -> dict[str, Counter]:
    """The whole bad-input corpus through the web process's entry points; `note` records one
    row per entry point. Returns the answers' status classes per entry point."""
    token = server.token("bench", "bench-password")
    classes: dict[str, Counter] = {}
    images = image_corpus()
    for entry, send in _image_entry_points(server, world, tester, token).items():
        answers = [(bad.id, _send(send, bad)) for bad in images]
        classes[entry] = note(entry, f"{len(images)} images", answers)
    archives = archive_corpus()
    projects = _import_projects(world)
    answers, jobs = [], []
    for archive in archives:
        project = projects[archive.format]
        response = _send(import_api, server, project, token, archive)
        answers.append((archive.id, response))
        if response is not None and response.status_code == 202:
            jobs.append((project.pk, response.json()["job_id"]))
    states = _wait_for_jobs(server, token, jobs)
    finished = ", ".join(f"{state} {n}" for state, n in sorted(states.items()))
    classes["import API"] = note(
        "import API", f"{len(archives)} archives", answers, f"; jobs {finished}"
    )
    classes["import jobs"] = states
    return classes


PASSES = ("torch", "serving")


def one_pass(mode: str, env: dict[str, str]) -> dict:
    """The corpus through a fresh stack whose iteration is served as `mode` says (PASSES)."""
    artifact = build_artifact()
    files = corpus()
    # Pages render through the manifest storage: collect this checkout's static files into a
    # private directory, so a stale ./staticfiles cannot fail the quick test page.
    static_root = tempfile.mkdtemp(prefix="loupe-static-")
    env = {**env, "LOUPE_STATIC_ROOT": static_root}
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"],
        cwd=BASE_DIR,
        env={**os.environ, **env},
        check=True,
    )
    rows: list[tuple[str, str, int, str, float]] = []
    with LoupeServer.start(env=env) as server:
        connect_django(server.data_dir)
        world = seed(artifact)
        if mode == "serving":  # what a training's end writes (training.services.finish)
            from training.ml.export import load_model_artifact
            from training.services.serving import write_serving_file

            write_serving_file(world["iteration"].artifact.name, load_model_artifact(artifact))
        pid = web_pid(server)
        warm = predict(server, world, _jpeg(640, 480), store=False)
        assert warm.status_code == 200, warm.text
        baseline, _ = memory_mb(pid)

        def note(entry: str, name: str, response: httpx.Response) -> None:
            peak = memory_mb(pid)[1]
            if response.status_code >= 500 and not any(row[2] >= 500 for row in rows):
                print(f"First 5xx; the server's log:\n{server.log_tail(60)}", flush=True)
            rows.append((entry, name, response.status_code, _reason(response), peak))
            print(
                f"[{mode}] {entry:<22} {name:<28} {response.status_code} "
                f"{_reason(response):<22} peak {peak:6.0f} MB",
                flush=True,
            )

        def note_corpus(
            entry: str, name: str, answers: list[tuple[str, httpx.Response | None]], extra: str = ""
        ) -> Counter:
            peak = memory_mb(pid)[1]
            counts = Counter(_status_class(response) for _, response in answers)
            for input_id, response in answers:
                if response is None or response.status_code >= 500:
                    code = response.status_code if response is not None else "no answer"
                    print(f"[{mode}] {entry} {input_id}: {code}", flush=True)
            if (counts["5xx"] or counts["no answer"]) and not any(r[2] >= 500 for r in rows):
                print(f"First 5xx; the server's log:\n{server.log_tail(60)}", flush=True)
            # A dropped connection counts as the worst answer (599).
            worst = max(response.status_code if response else 599 for _, response in answers)
            summary = ", ".join(f"{c} {n}" for c, n in sorted(counts.items()))
            rows.append((f"{CORPUS}: {entry}", name, worst, f"worst of {summary}{extra}", peak))
            print(
                f"[{mode}] {CORPUS}: {entry:<18} {name:<12} {summary}{extra}; peak {peak:6.0f} MB",
                flush=True,
            )
            return counts

        # First, right after warm-up: the peak it leaves is the bad-input corpus's alone.
        tester = quick_tester(server)
        corpus_classes = bad_input_corpus(server, world, tester, note_corpus)
        corpus_peak = memory_mb(pid)[1]

        for name, data in files.items():
            note("predict (nostore)", name, predict(server, world, data, store=False))
        for name, data in files.items():
            note("predict (store)", name, predict(server, world, data, store=True))
        note("upload API", f"all {len(files)} in one request", upload(server, world, files))
        four = {f"big{n}.png": _png(7000, 7000 - n) for n in range(4)}
        note("upload API", "4 x 49 MP PNG in one request", upload(server, world, four))
        for name, data in files.items():
            note("quick test", name, quick_test(tester, world, name, data))

        answers: list[httpx.Response] = []
        png24 = files["png-24MP-6000x4000.png"]
        threads = [
            threading.Thread(
                target=lambda: answers.append(predict(server, world, png24, store=False))
            )
            for _ in range(4)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for response in answers:
            note("predict x4 concurrent", "png-24MP-6000x4000.png", response)
        _, peak = memory_mb(pid)
        torch_loaded = "libtorch" in Path(f"/proc/{pid}/maps").read_text()

    shutil.rmtree(static_root, ignore_errors=True)
    return {
        "rows": rows,
        "baseline": baseline,
        "peak": peak,
        "torch": torch_loaded,
        "corpus": corpus_classes,
        "corpus_peak": corpus_peak,
    }


def run(record: bool, env: dict[str, str]) -> None:
    results: dict[str, dict] = {}
    for mode in PASSES:  # each in a fresh interpreter: Django is set up once per process
        done = subprocess.run(
            [sys.executable, __file__, "--pass", mode]
            + [f"--env={key}={value}" for key, value in env.items()],
            cwd=BASE_DIR,
            capture_output=True,
            text=True,
            check=False,
        )
        sys.stdout.write(done.stdout[: done.stdout.rfind("\n{")])
        if done.returncode != 0:
            raise SystemExit(f"The {mode} pass failed:\n{done.stderr[-4000:]}")
        results[mode] = json.loads(done.stdout[done.stdout.rfind("\n{") :])
    before, after = results["torch"], results["serving"]
    errors = sum(
        row[2] >= 500 for r in results.values() for row in r["rows"] if CORPUS not in row[0]
    )
    errors += sum(
        counts.get("5xx", 0) + counts.get("no answer", 0)
        for r in results.values()
        for counts in r["corpus"].values()
    )
    requests = sum(
        n
        for entry, counts in before["corpus"].items()
        if entry != "import jobs"
        for n in counts.values()
    )
    extra = "".join(f", {k}={v}" for k, v in env.items())
    summary = (
        f"Web process peak RSS: torch path {before['peak']:.0f} MB, serving file (ONNX Runtime, "
        f"no torch) {after['peak']:.0f} MB (x{after['peak'] / before['peak']:.2f}; goal < "
        f"{GOAL_MB} MB). After warm-up: {before['baseline']:.0f} MB vs "
        f"{after['baseline']:.0f} MB. libtorch mapped in the web process: "
        f"{'yes' if before['torch'] else 'no'} vs {'yes' if after['torch'] else 'no'}. "
        f"Through the bad-input corpus alone ({requests} requests, first after warm-up): "
        f"{before['corpus_peak']:.0f} MB vs {after['corpus_peak']:.0f} MB. "
        f"{errors} responses of 5xx."
    )
    print(f"\n{summary}")
    if record:
        table = "\n".join(
            f"| {entry} | {name} | {status} {reason} / {new[2]} {new[3]} | {row_peak:.0f} "
            f"| {new[4]:.0f} |"
            for (entry, name, status, reason, row_peak), new in zip(
                before["rows"], after["rows"], strict=True
            )
        )
        append_result(
            "Issue 16: reliability and security",
            f"""### Web-process memory, torch vs serving file (bench/memory.py)

`{command_line()}` on {machine_line()}{extra}. The whole stack as `make run` starts it, twice:
an iteration with no serving file (the torch path, as before) and one with its serving file
(ONNX Runtime, no torch in the web process). Peak RSS is the uvicorn process's VmHWM.

| entry point | image | answer: torch / serving | peak so far (MB): torch | serving |
|---|---|---|---|---|
{table}

**{summary}**""",
        )


# --engines: what a prediction's model costs a fresh process, torch or not (each in its own
# interpreter, so one's pages never count in another's peak).
_ENGINE_PROBES = {
    "bare: Python + numpy + Pillow": "import numpy, PIL.Image",
    "import torch": "import torch",
    "today's path: LoadedModel (torch + ONNX Runtime), one prediction": """
from predictions.model_cache import LoadedModel
model = LoadedModel(open(sys.argv[1], 'rb').read(), threads=1)
model.run(PIL.Image.new('RGB', (640, 480), (30, 200, 40)))
""",
    "torch-free: ONNX Runtime session from an exported file, one forward": """
import onnxruntime as ort
options = ort.SessionOptions()
options.intra_op_num_threads = 1
session = ort.InferenceSession(sys.argv[2], options, providers=['CPUExecutionProvider'])
session.run(None, {'pixels': numpy.zeros((1, 224, 224, 3), numpy.uint8)})
""",
}


def engines() -> list[tuple[str, float]]:
    """Peak RSS (MB) of each probe, run in a fresh interpreter."""
    from training.ml.backbones import get_backbone
    from training.ml.features import build_feature_extractor
    from training.ml.inference import PixelInput, onnx_bytes

    with tempfile.TemporaryDirectory() as folder:
        artifact, onnx_file = Path(folder) / "model.pt", Path(folder) / "lite0.onnx"
        artifact.write_bytes(build_artifact())
        spec = get_backbone("lite0")
        model = PixelInput(build_feature_extractor("lite0").eval(), spec).eval()
        onnx_file.write_bytes(onnx_bytes(model, spec.input_size))
        rows = []
        for name, code in _ENGINE_PROBES.items():
            script = (
                "import re, sys\nimport numpy, PIL.Image\n"
                + code
                # VmHWM: this interpreter's own peak (ru_maxrss keeps the forking parent's).
                + "\nstatus = open('/proc/self/status').read()"
                + "\nprint(int(re.search(r'VmHWM:\\s+(\\d+)', status).group(1)) / 1024)"
            )
            done = subprocess.run(
                [sys.executable, "-c", script, str(artifact), str(onnx_file)],
                cwd=BASE_DIR,
                capture_output=True,
                text=True,
                check=True,
                env={**os.environ, "MALLOC_ARENA_MAX": "2"},
            )
            rows.append((name, float(done.stdout.split()[-1])))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--no-record", action="store_true", help="print only")
    parser.add_argument(
        "--engines",
        action="store_true",
        help="only the peak RSS of a fresh process running a prediction's model, torch or not",
    )
    parser.add_argument("--pass", dest="mode", choices=PASSES, help=argparse.SUPPRESS)
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        help="KEY=VALUE for the server (e.g. MALLOC_ARENA_MAX=2)",
    )
    args = parser.parse_args()
    if args.engines:
        for name, mb in engines():
            print(f"{name:70s} {mb:6.0f} MB")
        return
    env = dict(item.split("=", 1) for item in args.env)
    if args.mode:  # one pass, for run(): its rows as JSON on the last line
        print("\n" + json.dumps(one_pass(args.mode, env)), flush=True)
        return
    run(record=not args.no_record, env=env)


if __name__ == "__main__":
    main()
