"""project.malloc: the web process keeps large freed blocks out of glibc's heap arenas.

The effect on RSS is measured by bench/memory.py (a whole stack, large PNGs on several request
threads); here, that the setting is made in a fresh web-like process, and left to an operator
who chose a threshold.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from project.malloc import return_large_frees_to_the_os

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.confstr("CS_GNU_LIBC_VERSION") is None,
    reason="glibc only",
)

_PEAK_AFTER_FREES = """
import re, threading
{setup}
def churn():
    for _ in range(3):
        block = bytearray(24 * 1024 * 1024)  # above glibc's default threshold: mmapped at first
        block[::4096] = b"x" * len(block[::4096])
        del block
threads = [threading.Thread(target=churn) for _ in range(2)]
for t in threads: t.start()
for t in threads: t.join()
hold = [bytearray(1024) for _ in range(10)]  # the heap's top stays in use
status = open("/proc/self/status").read()
print(int(re.search(r"VmRSS:\\s+(\\d+)", status).group(1)) // 1024)
"""


def _rss_after_churn(setup: str) -> int:
    env = {**os.environ, "MALLOC_ARENA_MAX": "2"}
    env.pop("MALLOC_MMAP_THRESHOLD_", None)
    done = subprocess.run(
        [sys.executable, "-c", _PEAK_AFTER_FREES.format(setup=setup)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return int(done.stdout.strip())


def test_the_threshold_is_set_in_glibc(monkeypatch):
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    assert return_large_frees_to_the_os() is True


def test_an_operators_threshold_is_left_alone(monkeypatch):
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "131072")
    assert return_large_frees_to_the_os() is False


def test_freed_large_blocks_leave_the_process():
    with_it = _rss_after_churn(
        "from project.malloc import return_large_frees_to_the_os\nreturn_large_frees_to_the_os()"
    )
    without = _rss_after_churn("")
    print(f"RSS after churn: {with_it} MB with the threshold, {without} MB without")
    # Without it, one 24 MB block stays in an arena after being freed.
    assert with_it + 16 <= without
