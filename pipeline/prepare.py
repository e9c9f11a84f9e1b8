"""Stage ``prepare``: any supported data set (or the built-in demo) -> the canonical manifest.

Writes ``data/prepared/`` (``manifest.csv``, ``rejected.csv``, ``demo/``, ``references/`` or
``frames/`` when generated) in one atomic step, and ``data/stats.json``. Nothing else. When
``data.on_error: skip`` rejects every input, ``data/prepared/`` holds only ``rejected.csv`` and
``data/stats.json`` is removed.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from pipeline.cli import UserError, run_stage
from pipeline.config import DataConfig, load_params
from pipeline.data.demo import generate_demo
from pipeline.data.ingest import NoUsableFrames, ingest, path_formatter
from pipeline.io import atomic_dir, write_csv, write_json
from pipeline.paths import Paths

log = logging.getLogger(__name__)


def resolve_source(data: DataConfig, demo_dir: Path, prepared: Path, photo_dir: Path | None = None) -> tuple[Path, str]:
    """The folder and format to read: demo data generated into ``demo_dir`` (textured from the
    photos in ``photo_dir`` where ``data.demo`` asks for them), or the user's."""
    if data.source == "demo":
        layout = data.demo.layout
        if data.format not in ("auto", layout):
            raise UserError(
                f"data.format: {data.format!r} does not apply to the demo data ({layout}); "
                "data.demo.layout picks cpn or video"
            )
        log.info("generating demo data (%s layout)", layout)
        try:
            generate_demo(demo_dir, data.demo, data.seed, photo_dir=photo_dir)
        except FileNotFoundError as exc:
            raise UserError(f"data.demo.photo_objects / photo_grounds: {exc}; or set both to 0 "
                            f"for a fully procedural demo") from None
        return demo_dir, layout
    source = Path(data.source).expanduser()
    if source.resolve().is_relative_to(prepared.resolve()):
        raise UserError(f"data.source: {source} is inside {prepared}, which every run replaces")
    return source, data.format


def prepare(paths: Paths, data: DataConfig, rejected_out: Path | None = None, photo_dir: Path | None = None) -> dict:
    """Read (or generate) the data set described by ``data`` into ``paths.prepared`` in one atomic
    step and write ``paths.data_stats``; returns the stats.

    ``rejected_out`` gets a copy of ``rejected.csv`` (and is the one messages name), for callers
    whose ``paths`` are temporary. When every input is rejected, ``paths.prepared`` is still
    replaced, holding only ``rejected.csv``, before the error is raised: the reasons stay
    readable and nothing of an earlier run is left to pass for this one's. ``photo_dir``: the
    OpenCV sample photos the demo's textures come from (``realset.source``).
    """
    rejected_name = str(rejected_out or paths.rejected)
    failure: NoUsableFrames | None = None
    with atomic_dir(paths.prepared) as staged:
        # Everything is written into the staging folder, which becomes paths.prepared at the end.
        def staged_path(final: Path) -> Path:
            return staged / final.relative_to(paths.prepared)

        source, fmt = resolve_source(data, staged_path(paths.demo_root), paths.prepared, photo_dir)
        try:
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
                rejected_name=rejected_name,
            )
        except NoUsableFrames as exc:
            failure = exc
            _write_rejected(exc.rejected, staged_path(paths.rejected), rejected_out)
        else:
            write_csv(staged_path(paths.manifest), result.manifest)
            _write_rejected(result.rejected, staged_path(paths.rejected), rejected_out)
    if failure is not None:
        paths.data_stats.unlink(missing_ok=True)  # it described the data this run replaced
        raise failure
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


def _write_rejected(rejected: pd.DataFrame, path: Path, copy: Path | None) -> None:
    write_csv(path, rejected)
    if copy is not None:
        write_csv(copy, rejected)


def main() -> None:
    paths = Paths()
    params = load_params(paths.params)
    prepare(paths, params.data, photo_dir=Path(params.realset.source).expanduser())


if __name__ == "__main__":
    run_stage(main, __doc__)
