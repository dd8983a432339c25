"""SQLite under the default settings: two processes writing at once queue, they don't fail.

The web server and a worker are separate processes writing one SQLite file. Each writer here does
read-then-write transactions (the pattern of every compare-and-set service), the case where a
deferred transaction must upgrade its read lock and SQLite answers "database is locked" at once,
without waiting. The settings' IMMEDIATE transactions, WAL and busy_timeout must make both run to
the end, with no update lost.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parents[2]
WRITES_PER_PROCESS = 150

WRITER = textwrap.dedent(
    """
    import os, sys, time
    import django
    django.setup()
    from django.db import connection, transaction

    go = sys.argv[1]
    open(sys.argv[2], "w").close()  # ready
    while not os.path.exists(go):
        time.sleep(0.01)
    for _ in range(int(sys.argv[3])):
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SELECT value FROM counter WHERE id = 1")
                (value,) = cursor.fetchone()
                cursor.execute("UPDATE counter SET value = %s WHERE id = 1", [value + 1])
    """
)


def _env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "MEDIA_ROOT"}}
    env.update(LOUPE_DATA_DIR=str(data_dir), DJANGO_SETTINGS_MODULE="project.settings")
    return env


@pytest.mark.slow
@pytest.mark.sqlite_only
def test_two_processes_writing_at_once_do_not_hit_database_is_locked(tmp_path):
    data_dir = tmp_path / "data"
    env = _env(data_dir)
    setup = (
        "import django; django.setup(); from django.db import connection\n"
        "with connection.cursor() as c:\n"
        "    c.execute('CREATE TABLE counter (id INTEGER PRIMARY KEY, value INTEGER)')\n"
        "    c.execute('INSERT INTO counter VALUES (1, 0)')\n"
        "    c.execute('PRAGMA journal_mode'); print(c.fetchone()[0])\n"
    )
    made = subprocess.run(
        [sys.executable, "-c", setup], env=env, cwd=BASE_DIR, capture_output=True, text=True
    )
    assert made.returncode == 0, made.stderr
    assert made.stdout.strip() == "wal"

    go = tmp_path / "go"
    writers = []
    for n in range(2):
        ready = tmp_path / f"ready-{n}"
        argv = [sys.executable, "-c", WRITER, str(go), str(ready), str(WRITES_PER_PROCESS)]
        writers.append(
            (ready, subprocess.Popen(argv, env=env, cwd=BASE_DIR, stderr=subprocess.PIPE))
        )
    deadline = time.monotonic() + 120
    while not all(ready.exists() for ready, _ in writers):
        assert time.monotonic() < deadline, "the writer processes did not start"
        assert all(p.poll() is None for _, p in writers), "a writer died while starting"
        time.sleep(0.05)
    go.touch()  # both start writing at the same moment

    for _, process in writers:
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr.decode()
        assert b"database is locked" not in stderr

    import sqlite3

    with sqlite3.connect(data_dir / "db.sqlite3") as db:
        (total,) = db.execute("SELECT value FROM counter WHERE id = 1").fetchone()
    assert total == 2 * WRITES_PER_PROCESS  # serialized: no lost update
