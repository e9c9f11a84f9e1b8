"""MLflow tracking that never stops training.

The default store is ``sqlite:///<repo>/mlflow.db`` by absolute path, so runs that DVC executes in
temporary copies of the repo (``dvc exp run --queue``) land in the same database.
``MLFLOW_TRACKING_URI`` overrides it (e.g. a team server). Parallel queue workers share the SQLite
file: a call that finds it locked (or finds another process creating its tables) is retried with
backoff. If the store stays unreachable or locked (or is read-only), the tracker warns once, in
one line, and turns itself off; metrics stay in the stage's own output files. MLflow's, alembic's
and SQLAlchemy's loggers are silenced during each store call, so their tracebacks do not bury it.

A new experiment keeps its artifacts in ``mlartifacts/`` beside the SQLite file
(:func:`artifact_location`; ``NEEDLE_MLFLOW_ARTIFACTS`` overrides it), not in ``mlruns/`` of
whatever folder the first run happened to start in. A run records the process that has it open
(:mod:`pipeline.engine.stale_runs`); opening a run ends the runs that died RUNNING, and
:func:`end_open_runs` ends this process's open runs as FAILED or KILLED when a stage stops early.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from pipeline.engine.stale_runs import PROCESS_TAG, end_stale_runs, process_tag

log = logging.getLogger(__name__)

EXPERIMENT = "needle"
#: Environment variable: where a new experiment keeps its artifacts (a folder or any artifact URI
#: MLflow takes, e.g. ``s3://bucket/needle``). MLflow stores it as an absolute URI.
ARTIFACTS_ENV = "NEEDLE_MLFLOW_ARTIFACTS"

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

    def apply(self, what: str, fn: Callable[[Any], Any]) -> Any:
        """``fn(mlflow)`` against the open run, as fault-tolerant as every other call (None when
        the tracker is off or the call failed); ``what`` names it in the warning."""
        if self.run_id is None:
            return None
        return self._call(what, lambda: fn(self._mlflow))

    def start(self, run_name: str | None, params: dict[str, Any], tags: dict[str, str], run_id: str | None = None,
              system_metrics: bool = False) -> str | None:
        """Start (or, with ``run_id``, re-open) the run and log params and tags; with
        ``system_metrics``, MLflow samples CPU, memory (and GPU) use while the run is open."""
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
                client = mlflow.tracking.MlflowClient()
                experiment = client.get_experiment_by_name(EXPERIMENT)
                if experiment is None and run_id is None:
                    client.create_experiment(EXPERIMENT, artifact_location=artifact_location(self.tracking_uri))
                    experiment = client.get_experiment_by_name(EXPERIMENT)
                if run_id is None:
                    mlflow.set_experiment(experiment_id=experiment.experiment_id)
            return experiment or True

        # One call per step, so a retried step never repeats one that already went through.
        experiment = self._call("start", _connect)
        if not experiment:
            return None
        if experiment is not True:
            self._end_stale_runs(experiment.experiment_id)
        if run_id is not None:
            run = self._call("start", lambda: self._mlflow.start_run(run_id=run_id, log_system_metrics=system_metrics))
        else:
            run = self._call("start", lambda: self._mlflow.start_run(run_name=run_name,
                                                                     log_system_metrics=system_metrics))
            self._call("log_params", lambda: self._mlflow.log_params({k: _param_value(v) for k, v in params.items()}))
            self._call("set_tags", lambda: self._mlflow.set_tags({k: v for k, v in tags.items() if v is not None}))
        self.run_id = run.info.run_id if run is not None and self.enabled else None
        if self.run_id is not None:
            _OPEN.append(self)
            self.set_tags({PROCESS_TAG: process_tag()})
        return self.run_id

    def _end_stale_runs(self, experiment_id: str) -> None:
        """Mark the runs that died RUNNING KILLED; a failure here only costs that."""
        try:
            with _quiet_store_logs():
                end_stale_runs(self._mlflow.tracking.MlflowClient(), experiment_id)
        except Exception as exc:
            log.info("could not check for runs left RUNNING (%s)", _one_line(exc))

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
        """End the run as ``status`` (FINISHED, FAILED, KILLED)."""
        if self in _OPEN:
            _OPEN.remove(self)
        if self.run_id is not None:
            self._call("end", lambda: self._mlflow.end_run(status=status))


#: Trackers of this process with a run open, oldest first.
_OPEN: list[Tracker] = []


def end_open_runs(status: str) -> None:
    """End every run this process has open as ``status`` (a stage that failed or was stopped)."""
    for tracker in reversed(list(_OPEN)):
        tracker.end(status)


def artifact_location(tracking_uri: str) -> str | None:
    """Where a new experiment keeps its artifacts: ``NEEDLE_MLFLOW_ARTIFACTS`` if set, else
    ``mlartifacts/`` beside a SQLite store's file; None (the server decides) for other stores."""
    env = os.environ.get(ARTIFACTS_ENV)
    if env:
        return env
    if not tracking_uri.startswith("sqlite:///"):
        return None
    db = tracking_uri[len("sqlite:///"):].split("?")[0].removeprefix("file:")
    return str(Path(db).resolve().parent / "mlartifacts")


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
