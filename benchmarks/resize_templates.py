"""Benchmark of the ``resize_templates`` stage against a naive full-decode resize.

    python -m benchmarks.resize_templates [--count 12] [--side 2992] [--size 384] [--workers 2]

Writes ``--count`` synthetic ``--side`` x ``--side`` JPEG photos (smooth noise, shapes, sensor
grain; quality 95, so they compress like camera photos) to a temp dir, then times in one run:

* naive: full-resolution decode, LANCZOS resize to ``--size``, pad, save; one process;
* stage, 1 worker: :func:`pipeline.resize_templates.make_templates` (draft decode), inline;
* stage, N workers: the same with a pool of ``--workers`` processes (pool start-up included).

Each is run ``--repeats`` times after one warm-up read of all files (page cache); the median is
reported. Also prints the mean absolute pixel difference between naive and stage outputs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import PIL
from PIL import Image, ImageDraw, features

from pipeline.config import TemplatesConfig
from pipeline.data.imageio import pad_to_square
from pipeline.engine.cpu import cpu_info
from pipeline.resize_templates import Job, make_templates


def make_photo(path: Path, side: int, seed: int) -> None:
    """A photo-like JPEG: smooth colour field, a few hard-edged shapes, fine grain."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
    img = Image.fromarray(coarse).resize((side, side), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(img)
    for _ in range(12):
        x0, y0 = rng.integers(0, side, 2)
        w, h = rng.integers(side // 20, side // 4, 2)
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape((int(x0), int(y0), int(x0 + w), int(y0 + h)), fill=colour)
    # Grain is what makes real photos expensive to decode (many non-zero DCT coefficients).
    arr = np.asarray(img, np.int16) + rng.normal(0, 4, (side, side, 3)).astype(np.int16)
    Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(path, "JPEG", quality=95)


def naive(files: list[Path], out_dir: Path, size: int, quality: int) -> None:
    """What one would write first: decode everything, resize, pad, save."""
    for k, path in enumerate(files):
        with Image.open(path) as img:
            rgb = img.convert("RGB")
        w, h = rgb.size
        scale = size / max(w, h)
        rgb = rgb.resize((round(w * scale), round(h * scale)), Image.Resampling.LANCZOS)
        pad_to_square(rgb, "constant", 0).save(out_dir / f"{k}.jpg", quality=quality, subsampling=0)


def timed(fn, repeats: int) -> float:
    """Median wall time of ``fn()`` in seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def mean_abs_diff(a_dir: Path, b_paths: list[Path]) -> float:
    diffs = []
    for k, b in enumerate(b_paths):
        a = np.asarray(Image.open(a_dir / f"{k}.jpg"), np.int16)
        diffs.append(np.abs(a - np.asarray(Image.open(b), np.int16)).mean())
    return float(np.mean(diffs))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=12)
    ap.add_argument("--side", type=int, default=2992)
    ap.add_argument("--size", type=int, default=384)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="needle-bench-") as tmp:
        tmp_dir = Path(tmp)
        src = tmp_dir / "photos"
        src.mkdir()
        files = [src / f"{i:02d}.jpg" for i in range(args.count)]
        for i, path in enumerate(files):
            make_photo(path, args.side, seed=i)
        mb = sum(p.stat().st_size for p in files) / len(files) / 1e6
        for path in files:  # warm the page cache so the first method is not charged for disk
            path.read_bytes()

        jobs = [Job("bench", k, p.name, p, f"bench/{k}.jpg") for k, p in enumerate(files)]
        out = {name: tmp_dir / name for name in ("naive", "stage1", "stageN")}
        for d in out.values():
            d.mkdir()
        cfg1 = TemplatesConfig(size=args.size, workers=1, jpeg_quality=95)
        cfgN = TemplatesConfig(size=args.size, workers=args.workers, jpeg_quality=95)
        rows = [
            ("naive: full decode + LANCZOS, 1 process",
             timed(lambda: naive(files, out["naive"], args.size, 95), args.repeats)),
            ("stage: draft decode, 1 worker",
             timed(lambda: make_templates(jobs, out["stage1"], cfg1), args.repeats)),
            (f"stage: draft decode, {args.workers} workers",
             timed(lambda: make_templates(jobs, out["stageN"], cfgN), args.repeats)),
        ]
        diff = mean_abs_diff(out["naive"], [out["stageN"] / j.rel for j in jobs])

    base = rows[0][1]
    print(f"{args.count} photos {args.side}x{args.side} JPEG q95 (mean {mb:.1f} MB) -> "
          f"{args.size}x{args.size}; median of {args.repeats} runs\n")
    print("| method | seconds | templates/s | speed-up |")
    print("|---|---:|---:|---:|")
    for name, sec in rows:
        print(f"| {name} | {sec:.2f} | {args.count / sec:.1f} | {base / sec:.1f}x |")
    print(f"\nmean |naive - stage| per pixel: {diff:.2f} (0-255 scale)")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"machine: {platform.platform()}; CPU: {cpu_info().describe()}; {cores} cores usable "
          f"({os.cpu_count()} reported); Python {platform.python_version()}; Pillow "
          f"{PIL.__version__} (libjpeg-turbo: {features.check_feature('libjpeg_turbo')})")
    print(f"date: {dt.date.today().isoformat()}")


if __name__ == "__main__":
    main()
