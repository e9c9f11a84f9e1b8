"""The resize-templates figure (:mod:`benchmarks.resize_templates`) as a section of ``benchmarks.speed``:
naive full decode vs the stage with 1 and N workers, same photos, same run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import Table, fmt
from benchmarks.resize_templates import make_photo, mean_abs_diff, naive, timed
from pipeline.config import TemplatesConfig
from pipeline.resize_templates import Job, make_templates


@dataclass(frozen=True)
class ResizeSettings:
    count: int = 12
    side: int = 2992
    size: int = 384
    workers: int = 2
    repeats: int = 5


def resize_section(settings: ResizeSettings, scratch: Path) -> Table:
    """Templates/s of the three methods (median of ``repeats`` after a page-cache warm-up read)."""
    s = settings
    src = scratch / "photos"
    src.mkdir(parents=True, exist_ok=True)
    files = [src / f"{i:02d}.jpg" for i in range(s.count)]
    for i, path in enumerate(files):
        make_photo(path, s.side, seed=i)
    mb = sum(p.stat().st_size for p in files) / len(files) / 1e6
    for path in files:  # page cache: the first method is not charged for the disk
        path.read_bytes()
    jobs = [Job("bench", k, p.name, p, f"bench/{k}.jpg") for k, p in enumerate(files)]
    out = {name: scratch / name for name in ("naive", "stage1", "stageN")}
    for d in out.values():
        d.mkdir(exist_ok=True)
    cfg1 = TemplatesConfig(size=s.size, workers=1, jpeg_quality=95)
    cfg_n = TemplatesConfig(size=s.size, workers=s.workers, jpeg_quality=95)
    rows = [
        ("naive: full decode + LANCZOS, 1 process", timed(lambda: naive(files, out["naive"], s.size, 95), s.repeats)),
        ("stage: draft decode, 1 worker", timed(lambda: make_templates(jobs, out["stage1"], cfg1), s.repeats)),
        (f"stage: draft decode, {s.workers} workers", timed(lambda: make_templates(jobs, out["stageN"], cfg_n), s.repeats)),
    ]
    diff = mean_abs_diff(out["naive"], [out["stageN"] / j.rel for j in jobs])
    table = Table("Resize templates", ["method", "seconds", "templates/s", "speed-up"])
    base = rows[0][1]
    for name, sec in rows:
        table.add([name, f"{sec:.2f}", fmt(s.count / sec), f"{base / sec:.1f}×"],
                  method=name, seconds=sec, templates_per_s=s.count / sec)
    table.notes += [
        f"{s.count} synthetic photos {s.side}x{s.side} JPEG q95 (mean {mb:.1f} MB) -> {s.size}x{s.size}; "
        f"median of {s.repeats} runs (pool start-up included for {s.workers} workers)",
        f"mean |naive - stage| per pixel: {diff:.2f} (0-255 scale)",
    ]
    return table
