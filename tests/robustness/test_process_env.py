"""The environment `project.up` gives its children (web server, workers, beat)."""

from __future__ import annotations

from pathlib import Path

from project.up import child_env
from project.up_config import Config


def _config(tmp_path: Path) -> Config:
    return Config.from_env({"LOUPE_DATA_DIR": str(tmp_path)})


def test_children_get_two_malloc_arenas(monkeypatch, tmp_path):
    # bench/memory.py: the web process peaked at 2363 MB with glibc's default arenas, 1490 MB
    # with two, through the same corpus of large images.
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    assert child_env(_config(tmp_path))["MALLOC_ARENA_MAX"] == "2"


def test_an_admins_own_arena_setting_wins(monkeypatch, tmp_path):
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert child_env(_config(tmp_path))["MALLOC_ARENA_MAX"] == "4"
