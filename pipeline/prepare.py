"""Stage ``prepare``: any supported data set (or the built-in demo) -> the canonical manifest.

Writes ``data/prepared/`` (``manifest.csv``, ``rejected.csv``, ``demo/``, ``references/`` or
``frames/`` when generated) in one atomic step, and ``data/stats.json``. Nothing else.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pipeline.cli import UserError, run_stage
from pipeline.config import DataConfig, load_params
from pipeline.data.demo import generate_demo
from pipeline.data.ingest import ingest, path_formatter
from pipeline.io import atomic_dir, write_csv, write_json
from pipeline.paths import Paths

log = logging.getLogger(__name__)


def resolve_source(data: DataConfig, demo_dir: Path, prepared: Path) -> tuple[Path, str]:
    """The folder and format to read: demo data generated into ``demo_dir``, or the user's."""
    if data.source == "demo":
        layout = data.demo.layout
        if data.format not in ("auto", layout):
            raise UserError(
                f"data.format: {data.format!r} does not apply to the demo data ({layout}); "
                "data.demo.layout picks cpn or video"
            )
        log.info("generating demo data (%s layout)", layout)
        generate_demo(demo_dir, data.demo, data.seed)
        return demo_dir, layout
    source = Path(data.source).expanduser()
    if source.resolve().is_relative_to(prepared.resolve()):
        raise UserError(f"data.source: {source} is inside {prepared}, which every run replaces")
    return source, data.format


def prepare(paths: Paths, data: DataConfig) -> dict:
    """Read (or generate) the data set described by ``data`` into ``paths.prepared`` in one atomic
    step and write ``paths.data_stats``; returns the stats."""
    with atomic_dir(paths.prepared) as staged:
        # Everything is written into the staging folder, which becomes paths.prepared at the end.
        def staged_path(final: Path) -> Path:
            return staged / final.relative_to(paths.prepared)

        source, fmt = resolve_source(data, staged_path(paths.demo_root), paths.prepared)
        result = ingest(
            source,
            fmt,
            on_error=data.on_error,
            val_fraction=data.val_fraction,
            seed=data.seed,
            crop_dir=staged_path(paths.reference_crops),
            frames_dir=staged_path(paths.video_frames),
            frame_stride=data.frame_stride,
            path_str=path_formatter(paths.root, {staged: paths.prepared}),
        )
        write_csv(staged_path(paths.manifest), result.manifest)
        write_csv(staged_path(paths.rejected), result.rejected)
    write_json(paths.data_stats, result.stats)
    log.info(
        "%s data: %d train / %d val frames, %d rejected -> %s",
        result.format,
        result.stats["train"]["frames"],
        result.stats["val"]["frames"],
        result.stats["rejected"],
        paths.manifest,
    )
    return result.stats


def main() -> None:
    paths = Paths()
    prepare(paths, load_params(paths.params).data)


if __name__ == "__main__":
    run_stage(main)
