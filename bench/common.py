"""Helpers shared by the benchmarks: run the real Loupe stack, talk to its API, record results.

    from bench.common import LoupeServer, append_result, machine_line

    with LoupeServer.start() as server:          # `python -m project.up` on a free port, tmp data
        api = server.api()                       # httpx.Client with the admin's API token
        project = api.post("/api/projects/", json={"name": "Bench", "kind": "multiclass",
                                                   "domain": "general_compact"}).json()
        ...
    append_result("Issue 2: upload", "## Upload ...markdown...")

`LoupeServer.start()` runs the stack exactly as the README's run command does (migrations, the
first admin account, embedded Redis on a unix socket, uvicorn, Celery workers, beat) against a
fresh temporary LOUPE_DATA_DIR, waits until /healthz says the database, the broker and a worker
answer, and on exit stops it with SIGINT (the supervisor then stops its children in order) and
removes the data directory. Everything it starts is in one process group, which is killed if
the supervisor does not finish within its grace period.
"""

from __future__ import annotations

import datetime
import os
import platform
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

BASE_DIR = Path(__file__).resolve().parent.parent
RESULTS = BASE_DIR / "bench" / "RESULTS.md"
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LoupeServer:
    url: str
    data_dir: Path
    admin_password: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @classmethod
    @contextmanager
    def start(
        cls, *, env: dict[str, str] | None = None, keep_data: bool = False
    ) -> Iterator[LoupeServer]:
        """Start `python -m project.up` on a free port with a fresh data directory."""
        # A short path: the Redis unix socket lives in it (sun_path is 107 bytes at most).
        data_dir = Path(tempfile.mkdtemp(prefix="loupe-bench-"))
        port = free_port()
        password = secrets.token_urlsafe(12)
        child_env = {
            **os.environ,
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "LOUPE_DATA_DIR": str(data_dir),
            "LOUPE_ADMIN_PASSWORD": password,
            **(env or {}),
        }
        log_path = data_dir / "up.log"
        log = log_path.open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "project.up"],
            cwd=BASE_DIR,
            env=child_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            process_group=0,
        )
        server = cls(f"http://127.0.0.1:{port}", data_dir, password, process, log_path)
        try:
            server.wait_healthy()
            yield server
        finally:
            server.stop()
            log.close()
            if not keep_data:
                shutil.rmtree(data_dir, ignore_errors=True)

    def wait_healthy(self, timeout_s: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        last = "no answer"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"project.up exited early:\n{self.log_tail()}")
            try:
                response = httpx.get(f"{self.url}/healthz", timeout=5)
                if response.status_code == 200:
                    return
                last = response.text
            except httpx.HTTPError as err:
                last = str(err)
            time.sleep(0.5)
        raise RuntimeError(f"Loupe did not become healthy in {timeout_s:g} s ({last}).")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def token(self, username: str = "admin", password: str | None = None) -> str:
        response = httpx.post(
            f"{self.url}/api/auth/token/",
            data={"username": username, "password": password or self.admin_password},
            timeout=30,
        )
        response.raise_for_status()
        return str(response.json()["token"])

    def api(self, timeout_s: float = 120.0) -> httpx.Client:
        """An HTTP client for the API, authenticated as the first admin (keep-alive)."""
        return httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Token {self.token()}"},
            timeout=timeout_s,
        )

    def cpu_seconds(self, match: str) -> float:
        """CPU time (user + system) used so far by this stack's processes whose command line
        contains `match` (e.g. "uvicorn", "worker"), children included.

        CPU time, unlike wall time, does not grow while a process waits for a core, so it stays
        comparable when other work shares the machine.
        """
        return sum(_cpu_s(pid) for pid in _descendants(self.process.pid) if match in _cmdline(pid))

    def manage(self, *args: str) -> str:
        """Run `manage.py <args>` against this server's data; returns its stdout."""
        env = {**os.environ, "LOUPE_DATA_DIR": str(self.data_dir)}
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=BASE_DIR,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        return result.stdout


def _descendants(root: int) -> list[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                # The command name (field 2) may contain spaces; fields after ")" are fixed.
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry.name)] = int(fields[1])
    found, frontier = [], [root]
    while frontier:
        pid = frontier.pop()
        children = [child for child, parent in parents.items() if parent == pid]
        found.extend(children)
        frontier.extend(children)
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # utime and stime are fields 14 and 15 of stat; index 11 and 12 after the command name.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (p95 of 20 values is the 19th smallest)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(fraction * len(ordered) + 0.5 - 1e-9)))
    return ordered[rank - 1]


def machine_line() -> str:
    return (
        f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"{'PostgreSQL' if os.environ.get('DATABASE_URL') else 'SQLite WAL'}, "
        f"{'external Redis' if os.environ.get('REDIS_URL') else 'embedded Redis'}"
    )


def command_line() -> str:
    argv = [".venv/bin/python", os.path.relpath(sys.argv[0], BASE_DIR), *sys.argv[1:]]
    return shlex.join(argv)


def append_result(issue_heading: str, section: str) -> None:
    """Append a section under `## <issue_heading>` in bench/RESULTS.md (made if missing).

    Sections are appended, never rewritten: the file is the history of measured figures.
    """
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    heading = f"## {issue_heading}"
    stamp = datetime.date.today().isoformat()
    entry = f"\n{section.strip()}\n\n_Recorded {stamp}._\n"
    if heading not in text:
        text = text.rstrip("\n") + f"\n\n{heading}\n{entry}"
    else:
        start = text.index(heading) + len(heading)
        following = text.find("\n## ", start)
        insert_at = len(text) if following == -1 else following
        text = text[:insert_at].rstrip("\n") + "\n" + entry + text[insert_at:]
    RESULTS.write_text(text)
