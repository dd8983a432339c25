"""`python -m project.up` end to end, as a user runs it: a real subprocess with its own data dir.

Each test starts the whole thing (migrations, embedded Redis, uvicorn, two Celery workers, beat)
on a free port, so they are slow (tens of seconds on 2 cores), but nothing else proves that the
pieces start, talk to each other and stop together.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from websockets.sync.client import connect as ws_connect

BASE_DIR = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 180  # two cores shared with the rest of the suite: be patient, then fail

# Always SQLite in a tmp data dir (DATABASE_URL is removed): nothing to learn on PostgreSQL.
pytestmark = [pytest.mark.slow, pytest.mark.sqlite_only]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def process_table() -> dict[int, tuple[int, str]]:
    """{pid: (parent pid, state)} of every process, read from /proc."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # exited while we looked
            continue
        # The command name may hold spaces and parentheses: split after its last ")".
        state, ppid = stat[stat.rindex(")") + 2 :].split()[:2]
        table[int(entry.name)] = (int(ppid), state)
    return table


def descendants(pid: int) -> set[int]:
    table = process_table()
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, (ppid, _) in table.items() if ppid in frontier} - found
        found |= frontier
    return found


def alive(pids: set[int]) -> set[int]:
    table = process_table()
    return {pid for pid in pids if pid in table and table[pid][1] != "Z"}  # zombies are dead


@dataclass
class Up:
    process: subprocess.Popen[bytes]
    port: int
    data_dir: Path
    log: Path

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=10) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()

    def wait_until(self, what: str, predicate, timeout_s: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while not predicate():
            if self.process.poll() is not None:
                pytest.fail(f"up exited ({self.process.returncode}) before {what}:\n{self.output}")
            if time.monotonic() > deadline:
                pytest.fail(f"Timed out waiting for {what}:\n{self.output[-5000:]}")
            time.sleep(0.25)

    def healthy(self) -> bool:
        try:
            return self.get("/healthz")[0] == 200
        except OSError:  # not listening yet
            return False

    def child(self, marker: str) -> int:
        """The pid of up's direct child whose command line contains `marker`."""
        for pid in descendants(self.process.pid):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
                ppid = process_table()[pid][0]
            except (OSError, KeyError):
                continue
            if ppid == self.process.pid and marker.encode() in cmdline:
                return pid
        raise AssertionError(f"no child of up runs {marker!r}")


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Callable[[str], Up]]:
    """`launch(name)`: start `python -m project.up` with its own data dir and a free port."""
    started: list[Up] = []

    def start(name: str) -> Up:
        data_dir = tmp_path / name  # short: the Redis socket path must stay under 108 bytes
        log = tmp_path / f"{name}.log"
        port = free_port()
        env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "DATABASE_URL"}}
        env.update(
            HOST="127.0.0.1",
            PORT=str(port),
            LOUPE_DATA_DIR=str(data_dir),
            MEDIA_ROOT=str(data_dir / "media"),
            LOUPE_ADMIN_PASSWORD="up-test-password",
        )
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "project.up"],
                cwd=BASE_DIR,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C of the test run is ours to handle
            )
        started.append(Up(process, port, data_dir, log))
        return started[-1]

    yield start
    for running in started:
        if running.process.poll() is None:  # a failed test: leave nothing behind
            leftovers = descendants(running.process.pid)
            running.process.kill()
            for pid in leftovers:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            running.process.wait()


@pytest.fixture
def up(launch: Callable[[str], Up]) -> Up:
    return launch("a")


def test_up_serves_http_and_websockets_then_sigterm_stops_every_child(up: Up):
    up.wait_until("/healthz to answer 200 (web, broker and both workers up)", up.healthy)

    status, body = up.get("/healthz")
    health = json.loads(body)
    assert health["checks"] == {"database": "ok", "broker": "ok", "worker": "ok"}
    assert sorted(name.split("-")[0] for name in health["workers"]) == ["default", "train"]
    assert "Loupe is running at http://127.0.0.1:" in up.output
    assert "Created admin account: admin" in up.output
    assert (up.data_dir / "redis.sock").is_socket()

    # Pages and static files are served without DEBUG (WhiteNoise, collected static files).
    status, page = up.get("/accounts/login/")
    assert status == 200
    css = page.decode().split('href="/static/css/')[1].split('"')[0]
    assert up.get(f"/static/css/{css}")[0] == 200

    with ws_connect(f"ws://127.0.0.1:{up.port}/ws/ping/", open_timeout=10) as ws:
        ws.send(json.dumps({"n": 1}))
        assert json.loads(ws.recv(timeout=10)) == {"pong": {"n": 1}}

    children = descendants(up.process.pid)
    assert len(children) >= 6  # redis, web, two workers with their pool processes, beat
    up.process.send_signal(signal.SIGTERM)

    assert up.process.wait(timeout=60) == 0
    assert alive(children) == set(), up.output[-3000:]
    assert not (up.data_dir / "redis.sock").exists()
    assert "exited unexpectedly" not in up.output


def test_a_killed_worker_is_reported_and_everything_stops(up: Up):
    up.wait_until("the train worker to start", lambda: _has_child(up, "--queues train"))
    up.wait_until("the web server to answer", lambda: _says_running(up))
    children = descendants(up.process.pid)
    worker = up.child("--queues train")

    os.kill(worker, signal.SIGKILL)

    assert up.process.wait(timeout=60) == 1
    assert f"worker-train (pid {worker}) exited unexpectedly with exit code -9 (SIGKILL)" in (
        up.output
    )
    assert alive(children) == set(), up.output[-3000:]
    assert not (up.data_dir / "redis.sock").exists()


def test_two_instances_run_side_by_side_and_share_no_data_dir(launch: Callable[[str], Up]):
    first, second = launch("a"), launch("b")
    for running in (first, second):
        running.wait_until("the web server to answer", lambda r=running: _says_running(r))
    assert first.port != second.port
    assert first.get("/accounts/login/")[0] == second.get("/accounts/login/")[0] == 200
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "DATABASE_URL"}}
    env.update(LOUPE_DATA_DIR=str(first.data_dir), PORT=str(free_port()))

    third = subprocess.run(
        [sys.executable, "-m", "project.up"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert third.returncode == 1
    assert f"Another Loupe is already running with LOUPE_DATA_DIR={first.data_dir}" in (
        third.stderr
    )
    for running in (first, second):
        assert running.process.poll() is None  # untouched
        assert (running.data_dir / "redis.sock").is_socket()
        running.process.send_signal(signal.SIGINT)  # what Ctrl-C sends
        assert running.process.wait(timeout=60) == 0


def _says_running(up: Up) -> bool:
    return "Loupe is running at" in up.output


def _has_child(up: Up, marker: str) -> bool:
    try:
        up.child(marker)
    except AssertionError:
        return False
    return True
