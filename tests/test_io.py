"""``pipeline.io``: leftovers of a killed writer are removed by the next write of the same path, and
whether a folder can take the files a command will write."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pipeline.io import atomic_dir, unwritable_reason, write_text

REPO = Path(__file__).resolve().parents[1]


def _killed_writer(target: Path, kind: str) -> None:
    """Run a real writer of ``target`` that dies (kill -9 style) with its temp file half written."""
    script = textwrap.dedent(f"""
        import os, sys
        from pathlib import Path
        from pipeline.io import atomic_dir, atomic_path
        target = Path({str(target)!r})
        if {kind!r} == "file":
            with atomic_path(target) as tmp:
                tmp.write_bytes(b"half a checkp")
                os._exit(9)
        with atomic_dir(target) as tmp:
            (tmp / "manifest.csv").write_text("split,obj")
            os._exit(9)
    """)
    proc = subprocess.run([sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 9


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


def test_next_write_removes_a_killed_writers_temp_file(tmp_path: Path):
    target = tmp_path / "models" / "last.pt"
    _killed_writer(target, "file")
    assert len(list(target.parent.glob(".last.pt.*.tmp"))) == 1
    write_text(target, "new")
    assert target.read_text() == "new"
    assert sorted(p.name for p in target.parent.iterdir()) == ["last.pt"]


def test_next_run_removes_a_killed_runs_staging_folder(tmp_path: Path):
    target = tmp_path / "data" / "prepared"
    _killed_writer(target, "dir")
    assert len(list(target.parent.glob(".prepared.*"))) == 1
    with atomic_dir(target) as tmp:
        (tmp / "manifest.csv").write_text("x")
    assert sorted(p.name for p in target.parent.iterdir()) == ["prepared"]


@pytest.mark.parametrize("name", ["last.pt", "prepared"])
def test_only_dead_leftovers_of_the_same_path_are_removed(tmp_path: Path, name: str):
    dead, live = _dead_pid(), os.getppid()  # the parent (pytest's runner) is alive
    suffix = ".tmp" if name.endswith(".pt") else ""
    stale = [f".{name}.{dead}-abcd_123{suffix}", f".{name}.abcdefgh{suffix}"]  # the latter: older naming
    kept = [
        f".{name}.{live}-abcd_123{suffix}",  # a concurrent writer's live temp file
        f".best.pt.{dead}-abcd_123.tmp",  # another path's leftover
        f".{name}.notes",
        f".{name}.old",
        f"{name}.{dead}-abcd_123{suffix}",
    ]
    for entry in stale + kept:
        (tmp_path / entry).write_text("x")
    if suffix:
        write_text(tmp_path / name, "new")
    else:
        with atomic_dir(tmp_path / name) as tmp:
            (tmp / "f").write_text("x")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([name, *kept])


def test_writable_folders_new_or_existing(tmp_path):
    assert unwritable_reason(tmp_path) is None
    assert unwritable_reason(tmp_path / "new" / "deeper") is None  # created later, beside tmp_path
    assert not (tmp_path / "new").exists()  # the check itself creates nothing
    assert list(tmp_path.iterdir()) == []  # and leaves no probe file behind


def test_a_file_in_the_way_is_named(tmp_path):
    (tmp_path / "a-file").write_text("")
    assert unwritable_reason(tmp_path / "a-file") == f"{tmp_path / 'a-file'} is not a folder"
    # the parent is a regular file: no permission bit involved, so this holds for root too
    assert unwritable_reason(tmp_path / "a-file" / "out") == f"{tmp_path / 'a-file'} is not a folder"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_is_named(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        reason = unwritable_reason(locked / "out")
    finally:
        locked.chmod(0o700)
    assert reason is not None and reason.startswith(f"cannot write in {locked} (")
