"""Queue the ablation study as DVC experiments (``python -m pipeline.ablate``).

    python -m pipeline.ablate [--fusion attention average] [--corr-kernel 1 3] [--iou-type giou ciou]
        [--seeds 0 1] [--epochs N] [--set KEY=VALUE ...] [--jobs N] [--run] [--dry-run]

Builds one ``dvc exp run --queue`` whose ``-S key=a,b`` sweeps (DVC's Hydra grid syntax) queue
every combination of ``model.fusion.type`` × ``model.correlation.kernel`` × ``train.iou_type`` × ``train.seed``,
prints it and runs it. ``dvc queue start -j N`` then runs the queue in the background (printed);
``--run`` instead runs it here and waits (``dvc exp run --run-all -j N``, the same workers
following their logs), then writes the runs to ``reports/runs.csv`` (``pipeline.export_runs``) and
refreshes ``reports/metrics.md`` when the workspace has evaluate outputs. Every queued run is a DVC experiment (``dvc exp show``) and an MLflow run in the main
repository's store (:mod:`pipeline.engine.tracking`); the report's ablation table groups them.

Every combination is validated against ``params.yaml`` before anything is queued, so a typo
(``--iou-type cio``) is one line naming the key, not a queue of failing runs.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import shlex
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from pipeline.cli import UserError, run_stage, stage_parser
from pipeline.config import ConfigError, parse_params, read_yaml
from pipeline.paths import Paths

#: The ablation study, with the values queued when no option narrows them.
DEFAULT_GRID: dict[str, tuple[str, ...]] = {
    "model.fusion.type": ("attention", "average"),
    "model.correlation.kernel": ("1", "3"),
    "train.iou_type": ("giou", "ciou"),
    "train.seed": ("0", "1"),
}


@dataclass(frozen=True)
class Study:
    """The grid (key -> values swept, as text) and the params fixed for every run."""

    grid: dict[str, tuple[str, ...]]
    fixed: tuple[tuple[str, str], ...] = ()

    @property
    def size(self) -> int:
        """Number of experiments the grid queues."""
        n = 1
        for values in self.grid.values():
            n *= len(values)
        return n

    def set_params(self) -> list[str]:
        """The ``-S`` values: one sweep (``key=a,b``) per grid key, then the fixed ones."""
        return [f"{k}={','.join(v)}" for k, v in self.grid.items()] + [f"{k}={v}" for k, v in self.fixed]


def dvc(*args: str) -> list[str]:
    """A DVC command run by this Python (as the README writes it: ``python -m dvc ...``)."""
    return [sys.executable, "-m", "dvc", *args]


def queue_command(study: Study) -> list[str]:
    return dvc("exp", "run", "--queue", *itertools.chain.from_iterable(("-S", s) for s in study.set_params()))


def start_command(jobs: int) -> list[str]:
    return dvc("queue", "start", "-j", str(jobs))


def run_all_command(jobs: int) -> list[str]:
    return dvc("exp", "run", "--run-all", "-j", str(jobs))


def shown(cmd: Sequence[str]) -> str:
    """``cmd`` as a user would type it (``python`` for this interpreter)."""
    return shlex.join(["python", *cmd[1:]] if cmd and cmd[0] == sys.executable else cmd)


def _set_key(raw: dict, key: str, value: object) -> None:
    node = raw
    *parents, last = key.split(".")
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[last] = value


def validate(study: Study, params_file: Path) -> None:
    """Parse ``params_file`` with every combination applied (values read as YAML, as DVC writes
    them); the first invalid one is a :class:`ConfigError` naming the key."""
    try:
        base = read_yaml(params_file.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise UserError(f"{params_file}: cannot read it ({exc})") from None
    keys = list(study.grid)
    for combination in itertools.product(*study.grid.values()):
        raw = copy.deepcopy(base)
        for key, value in [*zip(keys, combination), *study.fixed]:
            _set_key(raw, key, read_yaml(value))
        try:
            parse_params(raw)
        except ConfigError as exc:
            raise ConfigError(f"{params_file} with {', '.join(f'{k}={v}' for k, v in zip(keys, combination))}: "
                              f"{exc}") from None


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = stage_parser(__doc__, "python -m pipeline.ablate")
    for flag, key in (("--fusion", "model.fusion.type"), ("--corr-kernel", "model.correlation.kernel"),
                      ("--iou-type", "train.iou_type"), ("--seeds", "train.seed")):
        ap.add_argument(flag, nargs="+", default=list(DEFAULT_GRID[key]), metavar="V",
                        help=f"values of {key} ({' '.join(DEFAULT_GRID[key])})")
    ap.add_argument("--epochs", type=int, help="train.epochs of every run (default: params.yaml's)")
    ap.add_argument("--set", "-S", action="append", default=[], metavar="KEY=VALUE", dest="fixed",
                    help="another param fixed for every run, e.g. train.max_samples=64 (repeatable)")
    ap.add_argument("--jobs", "-j", type=int, default=1, help="experiments run in parallel (1)")
    ap.add_argument("--run", action="store_true", help="also run the queue here and wait for it")
    ap.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    args = ap.parse_args(argv)
    if args.jobs < 1:
        ap.error("--jobs must be >= 1")
    if args.epochs is not None and args.epochs < 1:
        ap.error("--epochs must be >= 1")
    for item in args.fixed:
        if "=" not in item or not item.split("=", 1)[0]:
            ap.error(f"--set {item!r}: expected KEY=VALUE")
    return args


def study_from_args(args: argparse.Namespace) -> Study:
    grid = {"model.fusion.type": args.fusion, "model.correlation.kernel": args.corr_kernel,
            "train.iou_type": args.iou_type, "train.seed": args.seeds}
    for key, values in grid.items():
        if any("," in v or not v for v in values):
            raise UserError(f"{key}: values are given space-separated, each non-empty (got {' '.join(values)!r})")
    fixed = [tuple(item.split("=", 1)) for item in args.fixed]
    if args.epochs is not None:
        fixed.append(("train.epochs", str(args.epochs)))
    swept = [k for k, _ in fixed if k in grid]
    if swept:
        raise UserError(f"--set {swept[0]}: that key is swept; use its own option")
    # dict.fromkeys: a value given twice is queued once
    return Study({k: tuple(dict.fromkeys(v)) for k, v in grid.items()}, tuple(fixed))  # type: ignore[arg-type]


def _call(cmd: list[str], cwd: Path) -> None:
    print(f"$ {shown(cmd)}", flush=True)
    if subprocess.run(cmd, cwd=cwd).returncode != 0:
        raise UserError(f"`{shown(cmd)}` failed (its output is above)")


def failed_experiments(cwd: Path) -> list[str]:
    """Names of the queue's failed tasks, from ``dvc queue status``."""
    out = subprocess.run(dvc("queue", "status"), cwd=cwd, capture_output=True, text=True).stdout
    return [line.split()[1] for line in out.splitlines() if line.split()[-1:] == ["Failed"] and len(line.split()) > 2]


def main(argv: Sequence[str] | None = None, paths: Paths | None = None) -> None:
    args = parse_args(argv)
    paths = paths or Paths()
    study = study_from_args(args)
    validate(study, paths.params)
    print(f"# ablation study: {study.size} experiments "
          f"({' × '.join(f'{k} {len(v)}' for k, v in study.grid.items())})", flush=True)
    queue, start = queue_command(study), start_command(args.jobs)
    if args.dry_run:
        print(shown(queue))
        print(shown(start))
        return
    _call(queue, paths.root)
    if not args.run:
        print(f"queued; run them with\n  {shown(start)}\nthen watch with `python -m dvc queue status`, compare "
              "with `python -m dvc exp show` (a short view: docs/reports.md), and refresh the report with "
              "`python -m pipeline.export_runs && python -m pipeline.report`")
        return
    _call(run_all_command(args.jobs), paths.root)
    failed = failed_experiments(paths.root)
    if failed:
        raise UserError(f"{len(failed)} experiment(s) failed: {', '.join(failed)} "
                        f"(see `python -m dvc queue logs {failed[0]}`)")
    _call([sys.executable, "-m", "pipeline.export_runs"], paths.root)  # the runs a clone's report shows
    if paths.evaluation.metrics.is_file():
        _call([sys.executable, "-m", "pipeline.report"], paths.root)
    else:
        print(f"done; {paths.evaluation.metrics} is not in the workspace, so the report was not refreshed: "
              "`python -m dvc exp apply <name>` (or `dvc repro`), then `python -m pipeline.report`")


if __name__ == "__main__":
    run_stage(main)
