"""MLflow tracking that never stops training.

The default store is ``sqlite:///<repo>/mlflow.db`` by absolute path, so runs that DVC executes in
temporary copies of the repo (``dvc exp run --queue``) land in the same database.
``MLFLOW_TRACKING_URI`` overrides it (e.g. a team server). Parallel queue workers share the SQLite
file: a call that finds it locked (or finds another process creating its tables) is retried with
backoff. If the store stays unreachable or locked (or is read-only), the tracker warns once, in
one line, and turns itself off; metrics stay in the stage's own output files. MLflow's, alembic's
and SQLAlchemy's loggers are silenced during each store call, so their tracebacks do not bury it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Iterator

log = logging.getLogger(__name__)

EXPERIMENT = "needle"

#: Seconds to wait before each retry of a call that met a busy SQLite store (about 30 s in all).
RETRY_DELAYS = (0.2, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0)
#: Messages of errors that go away when another writer finishes (SQLite locks, two processes
#: creating or migrating the tables of a new store at once).
_TRANSIENT = ("database is locked", "database table is locked", "already exists", "unique constraint failed",
              "duplicate column", "no such table", "no such column")
#: Loggers of MLflow and the libraries under it. A failing store makes them print a full traceback
#: (about 85 lines for a read-only mlflow.db) before the tracker's own one-line warning.
_STORE_LOGGERS = ("mlflow", "alembic", "sqlalchemy")


def repo_root(start: Path | None = None) -> Path:
    """The main repository's root, also from inside a DVC experiment's temporary copy.

    DVC runs ``--temp`` and queued experiments in ``<repo>/.dvc/tmp/exps/<tmpdir>``, a separate
    git checkout that is deleted afterwards; the shared ``mlflow.db`` belongs to ``<repo>``.
    """
    start = (start or Path.cwd()).resolve()
    parts = start.parts
    for i in range(len(parts) - 2):
        if parts[i : i + 3] == (".dvc", "tmp", "exps"):
            return Path(*parts[:i])
    try:
        top = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"], cwd=start, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return start
    return Path(top) if top else start


def default_tracking_uri(root: Path | None = None) -> str:
    """``MLFLOW_TRACKING_URI`` if set, else the repo's SQLite file by absolute path."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return f"sqlite:///{repo_root(root) / 'mlflow.db'}"


def git_commit(cwd: Path | None = None) -> str | None:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


class Tracker:
    """A thin, fault-tolerant wrapper over one MLflow run.

    Every call is a no-op once the store has failed (or when ``enabled`` is false, e.g. on
    non-zero DDP ranks). ``run_id`` is None until a run was started successfully.
    """

    def __init__(self, tracking_uri: str, enabled: bool = True) -> None:
        self.tracking_uri = tracking_uri
        self.enabled = enabled
        self.run_id: str | None = None
        self._mlflow = None

    # -- plumbing ---------------------------------------------------------------------------------
    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        if not self.enabled:
            return None
        for attempt, delay in enumerate((*RETRY_DELAYS, None)):
            try:
                with _quiet_store_logs():
                    return fn()
            except Exception as exc:  # any store failure: retry if transient, else warn once, keep going
                if delay is not None and _is_transient(exc):
                    log.info("MLflow store busy during %s (%s); retry %d in %.1f s",
                         what, _one_line(exc), attempt + 1, delay)
                    time.sleep(delay)
                    continue
                self.enabled = False
                log.warning(
                    "MLflow tracking at %s failed during %s (%s); training goes on, metrics are kept "
                    "in the stage's output files only", self.tracking_uri, what, _one_line(exc),
                )
                return None
        return None

    def start(self, run_name: str | None, params: dict[str, Any], tags: dict[str, str], run_id: str | None = None) -> str | None:
        """Start (or, with ``run_id``, re-open) the run and log params and tags."""
        # Fail fast against an unreachable server instead of MLflow's long default retry loop.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")

        def _connect():
            import mlflow

            self._mlflow = mlflow
            # Opening a SQLite store creates or migrates its tables; parallel queue workers doing
            # that at once corrupt the migration, so they take turns (a file lock beside the db).
            with _store_setup_lock(self.tracking_uri):
                mlflow.set_tracking_uri(self.tracking_uri)
                if run_id is None:
                    mlflow.set_experiment(EXPERIMENT)
            return True

        # One call per step, so a retried step never repeats one that already went through.
        if not self._call("start", _connect):
            return None
        if run_id is not None:
            run = self._call("start", lambda: self._mlflow.start_run(run_id=run_id))
        else:
            run = self._call("start", lambda: self._mlflow.start_run(run_name=run_name))
            self._call("log_params", lambda: self._mlflow.log_params({k: _param_value(v) for k, v in params.items()}))
            self._call("set_tags", lambda: self._mlflow.set_tags({k: v for k, v in tags.items() if v is not None}))
        self.run_id = run.info.run_id if run is not None and self.enabled else None
        return self.run_id

    def set_tags(self, tags: dict[str, str]) -> None:
        """Set (or overwrite, unlike params) tags of the open run, e.g. what a resume resolved."""
        self._call("set_tags", lambda: self._mlflow.set_tags(tags))

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        clean = {k: float(v) for k, v in metrics.items() if v is not None}
        self._call("log_metrics", lambda: self._mlflow.log_metrics(clean, step=step))

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self._call("log_artifact", lambda: self._mlflow.log_artifact(str(path), artifact_path))

    def log_figure(self, figure, name: str) -> None:
        self._call("log_figure", lambda: self._mlflow.log_figure(figure, name))

    def end(self, status: str = "FINISHED") -> None:
        self._call("end", lambda: self._mlflow.end_run(status=status))


def _store_setup_lock(uri: str) -> contextlib.AbstractContextManager:
    """An exclusive lock for setting up the SQLite store at ``uri`` (no-op for other stores)."""
    if not uri.startswith("sqlite:///"):
        return contextlib.nullcontext()
    from filelock import FileLock  # a torch dependency

    db = Path(uri[len("sqlite:///"):])
    db.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(db) + ".lock", timeout=120)


@contextlib.contextmanager
def _quiet_store_logs() -> Iterator[None]:
    """Silence :data:`_STORE_LOGGERS` for one store call; its failure is reported by the tracker."""
    loggers = [logging.getLogger(name) for name in _STORE_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _one_line(exc: BaseException) -> str:
    """``Type: message`` of the innermost cause, first line only (SQLAlchemy appends the SQL)."""
    root = exc
    while root.__cause__ is not None:
        root = root.__cause__
    lines = str(root).strip().splitlines()
    return f"{type(root).__name__}: {lines[0] if lines else ''}".rstrip(": ")


def _is_transient(exc: BaseException) -> bool:
    text = f"{exc} {exc.__cause__ or ''}".lower()
    return any(marker in text for marker in _TRANSIENT)


def _param_value(value: Any) -> Any:
    return str(value) if isinstance(value, (list, tuple, dict)) else value


def git_dirty(cwd: Path | None = None) -> bool | None:
    """Whether the work tree has uncommitted changes to tracked files (None: not a git checkout)."""
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                             capture_output=True, text=True, check=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return bool(out.strip())


def run_name(params: dict[str, Any], tags: dict[str, str | None]) -> str | None:
    """The MLflow run name: DVC's experiment name when DVC runs one, so MLflow and DVC agree; else
    ``<commit>[-dirty]-<params digest>`` (``3f2a9c1-dirty-5e0b7d``), which tells runs of other code
    or params apart. ``tags``: :func:`dvc_tags`. None outside git: MLflow then picks one."""
    if tags.get("dvc_exp_name"):
        return tags["dvc_exp_name"]
    if not tags.get("git_commit"):
        return None
    digest = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:6]
    dirty = "-dirty" if tags.get("git_dirty") == "true" else ""
    return f"{tags['git_commit'][:7]}{dirty}-{digest}"


def dvc_tags(cwd: Path | None = None) -> dict[str, str | None]:
    """Where a run comes from: commit, uncommitted changes, DVC experiment (None: unknown)."""
    dirty = git_dirty(cwd)
    return {
        "git_commit": git_commit(cwd),
        "git_dirty": None if dirty is None else str(dirty).lower(),
        "dvc_exp_name": os.environ.get("DVC_EXP_NAME"),
        "dvc_baseline_rev": os.environ.get("DVC_EXP_BASELINE_REV"),
    }
