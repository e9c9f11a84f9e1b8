"""Runs left RUNNING by a dead process end as KILLED; a stage stopped by SIGTERM or failing ends its run."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from pipeline.engine.stale_runs import process_gone, process_tag
from pipeline.engine.tracking import Tracker
from tests.pipeline_repo import REPO, env

#: A process that opens a run, says so, then waits to be killed (argv: uri, marker file, mode).
_HOLDER = """
import sys, time
from pathlib import Path
from pipeline.cli import run_stage
from pipeline.engine.tracking import Tracker

def main():
    t = Tracker(sys.argv[1])
    assert t.start("held", {"a": 1}, {})
    Path(sys.argv[2]).write_text(t.run_id)
    if sys.argv[3] == "fail":
        raise RuntimeError("boom")
    time.sleep(600)

run_stage(main)
"""


def _client(uri):
    import mlflow

    return mlflow.tracking.MlflowClient(uri)


def _hold(tmp_path, uri, mode="wait"):
    marker = tmp_path / f"run-id-{mode}"
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, uri, str(marker), mode], cwd=tmp_path,
                            env={**env(), "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 120
    while not (marker.is_file() and marker.read_text()):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"the run holder did not start: {proc.communicate()[1][-3000:]}")
        time.sleep(0.2)
    return proc, marker.read_text()


def test_process_tags_tell_live_from_dead_processes():
    assert not process_gone(process_tag())
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    tag = process_tag(dead.pid)
    dead.wait()
    assert process_gone(tag)
    host, pid, started = tag.rsplit(":", 2)
    assert not process_gone(f"another-host:{pid}:{started}")  # nothing known about another host's processes
    assert not process_gone("garbage")


def test_a_run_killed_with_sigkill_is_marked_killed_when_the_next_run_starts(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc, run_id = _hold(tmp_path, uri)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert _client(uri).get_run(run_id).info.status == "RUNNING"  # nobody could end it
    tracker = Tracker(uri)
    assert tracker.start("next", {}, {})
    assert _client(uri).get_run(run_id).info.status == "KILLED"
    assert _client(uri).get_run(tracker.run_id).info.status == "RUNNING"  # a live process's run is left alone
    tracker.end()


@pytest.mark.parametrize("mode, status, code", [("wait", "KILLED", 143), ("fail", "FAILED", 1)])
def test_a_stage_stopped_by_sigterm_or_an_error_ends_its_run(tmp_path, mode, status, code):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc, run_id = _hold(tmp_path, uri, mode)
    if mode == "wait":
        proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err[-3000:]
    run = _client(uri).get_run(run_id)
    assert run.info.status == status and run.info.end_time is not None
