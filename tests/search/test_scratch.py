"""A trial's scratch folder outlives a worker that Ray kills; the next trial or run on the host removes it."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from search.runner._trial import SCRATCH_PREFIX, scratch_dir, sweep_orphaned_scratch

pytestmark = pytest.mark.skipif(os.name != "posix", reason="process ids are checked with POSIX signals")


def _exited_unreaped() -> subprocess.Popen:
    """A child process that has exited and is not reaped yet (a zombie: its pid still exists)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)  # waits for the exit, leaves the zombie
    return proc


def _folder(root: Path, name: str) -> Path:
    folder = root / name
    (folder / "epoch").mkdir(parents=True)
    (folder / "epoch" / "state.pt").write_bytes(b"\0" * 1024)
    return folder


def test_only_folders_of_dead_worker_processes_are_removed(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    zombie = _exited_unreaped()
    try:
        of_dead = _folder(tmp_path, f"{SCRATCH_PREFIX}{dead.pid}-k2j4x9a_")
        of_zombie = _folder(tmp_path, f"{SCRATCH_PREFIX}{zombie.pid}-q8w1e0rt")
        of_live = _folder(tmp_path, f"{SCRATCH_PREFIX}{os.getpid()}-a1b2c3d4")
        no_pid = _folder(tmp_path, f"{SCRATCH_PREFIX}0a3mtcsv")  # no process id in the name: not ours to judge
        not_ours = _folder(tmp_path, f"other-{dead.pid}-x")
        a_file = tmp_path / f"{SCRATCH_PREFIX}{dead.pid}-file"
        a_file.write_text("a file, not a scratch folder")
        assert sweep_orphaned_scratch(tmp_path) == 2
        assert not of_dead.exists() and not of_zombie.exists()
        assert of_live.is_dir() and no_pid.is_dir() and not_ours.is_dir() and a_file.is_file()
        assert sweep_orphaned_scratch(tmp_path) == 0
    finally:
        zombie.wait()


def test_a_new_trial_folder_is_named_with_its_worker_and_sweeps_dead_workers_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    left = _folder(tmp_path, f"{SCRATCH_PREFIX}{dead.pid}-k2j4x9a_")
    made = scratch_dir()
    assert made.parent == tmp_path and made.name.startswith(f"{SCRATCH_PREFIX}{os.getpid()}-") and made.is_dir()
    assert not left.exists()
    assert scratch_dir() != made and made.is_dir()  # a live worker's folder is kept
