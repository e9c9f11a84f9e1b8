"""Stage ``resize_templates``: every object's reference photos as square JPEGs.

Reads ``data/prepared/manifest.csv`` and writes ``data/templates/<object_id>/<k>.jpg``
(``templates.size`` x ``templates.size``, longest side scaled to fit, padded, content centred)
plus ``data/templates/templates.csv`` (:data:`pipeline.data.manifest.TEMPLATE_COLUMNS`).
Objects are in sorted id order and each object's photos in sorted path order, ``k`` from 0.
"""

from __future__ import annotations

import logging
import re
import time
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from pipeline import io
from pipeline.cli import UserError, run_stage
from pipeline.config import TemplatesConfig, load_params
from pipeline.data import imageio
from pipeline.data.manifest import TEMPLATE_COLUMNS, read_manifest, template_list
from pipeline.paths import Paths

log = logging.getLogger("resize_templates")

_SAFE_NAME = re.compile(r"[A-Za-z0-9._-]+")


@dataclass(frozen=True)
class Job:
    """One template to make: read ``source`` (resolved ``file``), write ``out_dir/rel``."""

    object_id: str
    index: int
    source: str
    file: Path
    rel: str


def folder_name(object_id: str) -> str:
    """A file-system-safe folder name for ``object_id`` (the id itself when already safe)."""
    if _SAFE_NAME.fullmatch(object_id) and object_id not in (".", ".."):
        return object_id
    # Ids from foreign data sets may hold '/', spaces or unicode; the CRC keeps two ids that
    # clean to the same text apart.
    clean = re.sub(r"[^A-Za-z0-9._-]+", "_", object_id).strip("._") or "object"
    return f"{clean}-{zlib.crc32(object_id.encode()):08x}"


def collect_jobs(manifest: pd.DataFrame, root: Path) -> list[Job]:
    """Unique templates per object, sorted; relative sources are resolved against ``root``."""
    per_object: dict[str, set[str]] = {}
    for object_id, cell in zip(manifest["object_id"], manifest["templates"]):
        paths = template_list(cell) if isinstance(cell, str) else []
        per_object.setdefault(str(object_id), set()).update(paths)
    jobs = []
    for object_id in sorted(per_object):
        sources = sorted(per_object[object_id])
        if not sources:
            raise UserError(f"manifest: object {object_id!r} has no template photos")
        folder = folder_name(object_id)
        for k, source in enumerate(sources):
            file = Path(source) if Path(source).is_absolute() else root / source
            jobs.append(Job(object_id, k, source, file, f"{folder}/{k}.jpg"))
    return jobs


def make_template(job: Job, out_dir: Path, cfg: TemplatesConfig) -> tuple[int, int]:
    """Write one square template; return the source photo's displayed ``(width, height)``."""
    img = imageio.square_template(job.file, cfg.size, cfg.pad, cfg.pad_value)
    out = out_dir / job.rel
    out.parent.mkdir(parents=True, exist_ok=True)
    # 4:4:4 chroma: templates are small and colour is much of what tells look-alikes apart.
    img.save(out, "JPEG", quality=cfg.jpeg_quality, subsampling=0)
    return imageio.image_size(job.file)


def _make_template_args(args: tuple[Job, Path, TemplatesConfig]) -> tuple[int, int]:
    return make_template(*args)


def make_templates(jobs: list[Job], out_dir: Path, cfg: TemplatesConfig) -> list[tuple[int, int]]:
    """Write all templates with ``cfg.workers`` processes; source sizes in ``jobs`` order."""
    args = [(job, out_dir, cfg) for job in jobs]
    if cfg.workers == 1 or len(jobs) <= 1:
        return [_make_template_args(a) for a in args]
    # Processes, not threads: decoding is CPU-bound and not every PIL step releases the GIL.
    chunk = max(1, len(args) // (cfg.workers * 4))
    with ProcessPoolExecutor(max_workers=cfg.workers) as pool:
        return list(pool.map(_make_template_args, args, chunksize=chunk))


def template_table(jobs: list[Job], sizes: list[tuple[int, int]], prefix: str) -> pd.DataFrame:
    """``templates.csv`` rows; ``path`` is ``prefix/<rel>`` (relative to the repository root)."""
    rows = [
        (job.object_id, job.index, job.source, f"{prefix}/{job.rel}", w, h)
        for job, (w, h) in zip(jobs, sizes)
    ]
    return pd.DataFrame(rows, columns=TEMPLATE_COLUMNS)


def resize_templates(paths: Paths, cfg: TemplatesConfig) -> pd.DataFrame:
    """Square every reference photo of ``paths.manifest`` into ``paths.templates`` (atomically);
    returns the templates table."""
    if not paths.manifest.exists():
        raise UserError(f"{paths.manifest} not found; run the prepare stage first (dvc repro prepare)")
    try:
        manifest = read_manifest(paths.manifest)
    except ValueError as exc:  # wrong columns, empty or malformed CSV
        msg = str(exc)
        raise UserError(msg if str(paths.manifest) in msg else f"{paths.manifest}: {msg}") from None
    jobs = collect_jobs(manifest, paths.root)
    start = time.perf_counter()
    with io.atomic_dir(paths.templates) as tmp:
        sizes = make_templates(jobs, tmp, cfg)
        prefix = paths.templates.relative_to(paths.root).as_posix()
        table = template_table(jobs, sizes, prefix)
        io.write_csv(tmp / paths.templates_manifest.name, table)
    log.info(
        "%d templates of %d objects -> %s (%dx%d, %.1f s)",
        len(jobs), table["object_id"].nunique(), paths.templates, cfg.size, cfg.size,
        time.perf_counter() - start,
    )
    return table


def main() -> None:
    paths = Paths()
    resize_templates(paths, load_params(paths.params).templates)


if __name__ == "__main__":
    run_stage(main, __doc__)
