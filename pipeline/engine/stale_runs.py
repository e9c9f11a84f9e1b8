"""Runs left RUNNING by a process that died (SIGKILL, power loss) are marked KILLED.

Each run records the process that has it open in the tag :data:`PROCESS_TAG`,
``<host>:<pid>:<process start time>`` (the start time tells a reused pid from the original
process). When a tracker opens a run, :func:`end_stale_runs` ends the experiment's RUNNING runs
whose process is gone from this host. Runs of other hosts, and runs without the tag, are left alone.
"""

from __future__ import annotations

import logging
import os
import socket

import psutil

log = logging.getLogger(__name__)

PROCESS_TAG = "needle.process"


def process_tag(pid: int | None = None) -> str:
    """``<host>:<pid>:<start time, whole seconds>`` of ``pid`` (default: this process)."""
    pid = os.getpid() if pid is None else pid
    return f"{socket.gethostname()}:{pid}:{int(psutil.Process(pid).create_time())}"


def process_gone(tag: str) -> bool:
    """Whether the process that ``tag`` (:func:`process_tag`) names has ended. False for
    another host's process or a tag that does not parse: nothing known, nothing ended."""
    parts = tag.rsplit(":", 2)
    if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
        return False
    host, pid, started = parts[0], int(parts[1]), int(parts[2])
    if host != socket.gethostname():
        return False
    try:
        return abs(int(psutil.Process(pid).create_time()) - started) > 1  # another process took the pid
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:
        return False


def end_stale_runs(client, experiment_id: str) -> list[str]:
    """Mark the RUNNING runs of ``experiment_id`` whose process is gone KILLED; their ids."""
    runs = client.search_runs([experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=1000)
    ended = []
    for run in runs:
        tag = run.data.tags.get(PROCESS_TAG)
        if tag and process_gone(tag):
            client.set_terminated(run.info.run_id, status="KILLED")
            ended.append(run.info.run_id)
            log.info("MLflow run %s (%s) was left RUNNING by a process that is gone; marked KILLED",
                     run.info.run_name, run.info.run_id)
    return ended
