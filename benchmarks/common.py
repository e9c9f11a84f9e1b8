"""What every benchmark section shares: median timing, result tables, number formats, the machine."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import torch

from pipeline.engine.amp import resolve_precision
from pipeline.engine.cpu import cpu_info

#: A warm-up call that took longer than this ends the warm-up (see :func:`measure`).
WARM_ENOUGH_S = 1.0


@dataclass(frozen=True)
class Timing:
    """Wall times of repeated calls, in seconds."""

    times: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def spread(self) -> float:
        """(max - min) / median: how much the repeats disagree (other load on the machine)."""
        return (max(self.times) - min(self.times)) / max(self.median, 1e-12)


def sync(device: torch.device) -> None:
    """Wait for queued GPU work, so a timer measures the work and not its launch."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(
    fn: Callable[[], Any], warmup: int, repeats: int, device: torch.device | None = None,
    max_seconds: float | None = None, min_repeats: int = 3,
) -> Timing:
    """Call ``fn`` up to ``warmup`` times untimed (allocator, oneDNN primitive caches, lazy init),
    then up to ``repeats`` times timed, each call on its own. Warm-up stops after a call of over
    ``WARM_ENOUGH_S`` (first-call costs are a small share of such a call). With ``max_seconds``,
    timing stops once that much time is spent and ``min_repeats`` calls are done, so slow cases
    get fewer repeats. (:func:`measure_interleaved` with one call.)"""
    return measure_interleaved({"fn": fn}, warmup, repeats, device, max_seconds, min_repeats)["fn"]


def measure_interleaved(
    fns: dict[str, Callable[[], Any]], warmup: int, rounds: int, device: torch.device | None = None,
    max_seconds: float | None = None, min_rounds: int = 3,
) -> dict[str, Timing]:
    """Time several calls whose *ratio* is the figure: round by round, each call once per round
    in turn, so that a slow spell of the machine (other load, clock changes) hits all of them
    alike instead of whichever happened to be timed then, as back-to-back :func:`measure` runs
    would. Warm-up as in :func:`measure`, per call. With ``max_seconds``, rounds stop once that
    much time is spent (all calls together) and ``min_rounds`` rounds are done."""
    dev = device or torch.device("cpu")
    for fn in fns.values():
        for _ in range(warmup):
            start = time.perf_counter()
            fn()
            sync(dev)
            if time.perf_counter() - start > WARM_ENOUGH_S:
                break
    times: dict[str, list[float]] = {name: [] for name in fns}
    spent = 0.0
    for done in range(1, max(1, rounds) + 1):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            sync(dev)
            times[name].append(time.perf_counter() - start)
            spent += times[name][-1]
        if max_seconds is not None and spent >= max_seconds and done >= min(min_rounds, rounds):
            break
    return {name: Timing(tuple(t)) for name, t in times.items()}


@dataclass
class Table:
    """One section's result: a markdown table, notes under it and the raw numbers for JSON."""

    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    raw: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, cells: Sequence[Any], **raw: Any) -> None:
        if len(cells) != len(self.columns):
            raise ValueError(f"{self.title}: row has {len(cells)} cells for {len(self.columns)} columns")
        self.rows.append([str(c) for c in cells])
        self.raw.append(raw)

    def column(self, name: str) -> list[str]:
        i = self.columns.index(name)
        return [row[i] for row in self.rows]

    def markdown(self) -> str:
        # Right-align every column but the first, as docs/benchmarks.md does for numbers.
        lines = [f"### {self.title}", "", "| " + " | ".join(self.columns) + " |",
                 "|---|" + "---:|" * (len(self.columns) - 1)]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        if self.notes:
            lines.append("")
            lines += [f"- {note}" for note in self.notes]
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {"title": self.title, "columns": self.columns, "rows": self.rows, "raw": self.raw, "notes": self.notes}


def repeats_note(what: str, repeats: int, max_seconds: float | None) -> str:
    """How a median was taken, e.g. ``median of 10 steps (at least 3; fewer where 10 would take over 60 s)``."""
    if max_seconds is None or repeats <= 3:
        return f"median of {repeats} {what}"
    return f"median of {repeats} {what} (at least 3; fewer where {repeats} would take over {max_seconds:g} s)"


def ratio(x: float | None, base: float | None) -> str:
    """``x / base`` as ``1.9×``; ``n/a`` when either is missing."""
    if x is None or base is None or base == 0:
        return "n/a"
    return f"{x / base:.2f}×"


def si(value: float | None, unit: str = "") -> str:
    """``1.23e11`` -> ``123 G`` + unit: three significant digits and an SI prefix."""
    if value is None:
        return "n/a"
    for factor, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}".rstrip()


def fmt(value: float | None, digits: int = 3) -> str:
    """Three significant digits without scientific notation for the usual ranges."""
    if value is None:
        return "n/a"
    if value >= 100:
        return f"{value:.0f}"
    return f"{value:.{digits}g}"


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def precision_line(device: torch.device) -> str:
    """What the CPU runs natively and what ``amp: auto`` resolves to on ``device``."""
    auto = resolve_precision("auto", device)
    return f"CPU: {cpu_info().describe()}; amp: auto resolves to {auto.name} on {device.type}"


def machine() -> dict[str, Any]:
    """The machine and software a run measured, so figures can be compared like for like."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "cpu": cpu_info().model,
        "cpu_native_bf16": cpu_info().native_bf16,
        "cpu_bf16_flags": list(cpu_info().bf16_flags),
        "amp_auto": {d: resolve_precision("auto", torch.device(d)).name for d in ("cpu", "cuda")},
        "cores_usable": cores,
        "cores_reported": os.cpu_count(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "timm": _version("timm"),
        "onnxruntime": _version("onnxruntime"),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "date": dt.date.today().isoformat(),
    }
    try:
        info["load_average_1min"] = round(os.getloadavg()[0], 2)  # > cores: other jobs shared the CPU
    except OSError:
        pass
    return info


def machine_lines(info: dict[str, Any]) -> list[str]:
    return [
        f"machine: {info['platform']}; CPU: {info['cpu']} ({info['cpu_capability']}, "
        f"{'native bf16' if info['cpu_native_bf16'] else 'no native bf16'}; amp auto: {info['amp_auto']['cpu']}); "
        f"{info['cores_usable']} cores usable ({info['cores_reported']} reported); "
        f"GPU: {info['gpu'] or 'none'}",
        f"software: Python {info['python']}, torch {info['torch']} (threads: {info['torch_threads']} intra-op, "
        f"{info['torch_interop_threads']} inter-op), timm {info['timm']}, onnxruntime {info['onnxruntime']}",
        f"date: {info['date']}; 1-min load average at the end: {info.get('load_average_1min', 'n/a')}",
    ]


def single_section_parser(module: str, doc: str, quick: str) -> argparse.ArgumentParser:
    """The command line every one-table benchmark shares: ``--quick`` (``quick`` says what it
    does), ``--threads`` and ``--out``; a benchmark adds its own options."""
    from pathlib import Path

    ap = argparse.ArgumentParser(prog=f"python -m benchmarks.{module}", description=doc.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help=f"{quick}: check that it runs, not figures")
    ap.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    ap.add_argument("--out", type=Path, help="also write the table and raw numbers as JSON here")
    return ap


def run_single_section(name: str, title: str, quick: bool, out: Any, section: Callable[[], Table]) -> Table:
    """What a one-table benchmark's ``main`` does: header, a load warning, the table, the machine,
    and with ``out`` (a path) the table and raw numbers as JSON under ``sections[name]``."""
    import json
    import sys

    from benchmarks.speed import load_warning  # imports the whole suite: only for the command line
    from pipeline.io import write_text

    print(f"# {title}: {'quick (few repeats: not for the docs)' if quick else 'full'}", flush=True)
    busy = load_warning()
    if busy:
        print(busy + "\n", flush=True)
    started = time.perf_counter()
    table = section()
    print(table.markdown() + "\n", flush=True)
    info = machine()
    info["wall_seconds"] = round(time.perf_counter() - started, 1)
    print("\n".join(machine_lines(info)) + f"\nwall time: {info['wall_seconds']:.0f} s")
    if out:
        payload = {"mode": "quick" if quick else "full", "argv": sys.argv[1:], "machine": info,
                   "sections": {name: table.to_json()}}
        out.parent.mkdir(parents=True, exist_ok=True)
        write_text(out, json.dumps(payload, indent=2, default=str) + "\n")
        print(f"results: {out}")
    return table
