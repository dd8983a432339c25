"""What `python -m project.up` starts from: the environment read into Config, and the checks made
before anything starts (one instance per data dir, a free port, host names that will answer).
Any problem is an UpError: one line for the user, exit status 1.
"""

from __future__ import annotations

import fcntl
import ipaddress
import os
import socket
from dataclasses import dataclass
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent


class UpError(Exception):
    """A start-up problem the user can fix; printed as one line, exit status 1."""


@dataclass(frozen=True)
class Config:
    host: str
    port: int
    data_dir: Path
    redis_url: str
    worker_concurrency: int
    access_log: bool

    @classmethod
    def from_env(cls, environ: dict[str, str]) -> Config:
        raw_dir = environ.get("LOUPE_DATA_DIR") or str(BASE_DIR / "var")
        try:
            port = int(environ.get("PORT") or 8000)
            concurrency = int(environ.get("LOUPE_WORKER_CONCURRENCY") or 2)
        except ValueError as err:
            raise UpError(
                f"PORT and LOUPE_WORKER_CONCURRENCY must be whole numbers ({err})."
            ) from None
        return cls(
            host=environ.get("HOST") or "127.0.0.1",
            port=port,
            data_dir=Path(raw_dir).expanduser().resolve(),
            redis_url=environ.get("REDIS_URL", ""),
            worker_concurrency=concurrency,
            access_log=environ.get("LOUPE_ACCESS_LOG", "").lower() in {"1", "true", "yes", "on"},
        )

    @property
    def redis_socket(self) -> Path:
        # Same path as settings.REDIS_SOCKET, which the children read.
        return self.data_dir / "redis.sock"

    @property
    def url(self) -> str:
        shown = {"0.0.0.0": "127.0.0.1", "::": "[::1]"}.get(self.host, self.host)
        if ":" in shown and not shown.startswith("["):
            shown = f"[{shown}]"
        return f"http://{shown}:{self.port}/"


def lock_data_dir(config: Config) -> int:
    """Hold an exclusive lock on LOUPE_DATA_DIR for the life of this process (the OS drops it
    when we exit, even on SIGKILL), so two instances never share a database or a Redis socket."""
    fd = os.open(config.data_dir / "up.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise UpError(
            f"Another Loupe is already running with LOUPE_DATA_DIR={config.data_dir}; "
            "stop it or choose another LOUPE_DATA_DIR."
        ) from None
    return fd


def check_port_free(config: Config) -> None:
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((config.host, config.port))
        except OSError as err:
            raise UpError(
                f"Cannot listen on {config.host}:{config.port} ({err.strerror}); "
                "set PORT (and HOST) to a free address."
            ) from None


def port_open(config: Config) -> bool:
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(config.host, config.host)
    try:
        with socket.create_connection((host, config.port), timeout=0.5):
            return True
    except OSError:
        return False


def is_loopback(host: str) -> bool:
    """Whether `host` (HOST: a name or an address) is reachable from this machine only."""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def hosts_warning(config: Config, environ: dict[str, str]) -> str | None:
    """The warning for serving on a non-loopback address while LOUPE_ALLOWED_HOSTS is unset."""
    if is_loopback(config.host) or environ.get("LOUPE_ALLOWED_HOSTS", "").strip(", "):
        return None
    return (
        f"loupe up: warning: serving on {config.host}:{config.port} but LOUPE_ALLOWED_HOSTS is "
        "not set, so only localhost, 127.0.0.1 and [::1] are accepted as host names: requests "
        "for this machine's name or network address get 400. Set LOUPE_ALLOWED_HOSTS to the "
        "names users type (e.g. LOUPE_ALLOWED_HOSTS=loupe.example.com)."
    )
