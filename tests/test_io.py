"""``pipeline.io``: whether a folder can take the files a command will write."""

from __future__ import annotations

import os

import pytest

from pipeline.io import unwritable_reason


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
