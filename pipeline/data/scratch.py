"""A data set folder outside the prepared one, made ready to score in a temporary folder.

The real-photo check set, or a user's ``evaluate --data`` folder, is ingested and its references
resized exactly as the ``prepare`` and ``resize_templates`` stages do, into a scratch folder that
lives as long as the returned object; the stages' own outputs are never touched.
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

from pipeline.config import DataConfig, Params
from pipeline.data.dataset import Sample, load_split
from pipeline.data.ingest import path_formatter
from pipeline.paths import Paths
from pipeline.prepare import prepare
from pipeline.resize_templates import resize_templates


class ScratchSet:
    """The samples of ``folder`` (layout ``fmt``) with references at ``template_size``.

    Use as a context manager, or call :meth:`close`: the files live until then. Inputs that
    ``data.on_error: skip`` drops are listed in ``rejected_out`` (None: not kept).
    """

    def __init__(self, folder: Path, fmt: str, params: Params, template_size: int,
                 rejected_out: Path | None = None) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="needle-scratch-")
        try:
            scratch = Paths(Path(self._tmp.name))
            prepare(scratch, DataConfig(source=str(folder.resolve()), format=fmt, on_error=params.data.on_error,
                                        frame_stride=params.data.frame_stride), rejected_out=rejected_out)
            resize_templates(scratch, replace(params.templates, size=template_size))
            # Frames inside the project are named as the val split's are (relative), so outputs that
            # list them (frames.csv, predictions.csv) do not depend on where the clone lives.
            shown = path_formatter(Path.cwd())
            self.samples: list[Sample] = [replace(s, image=shown(Path(s.image))) for s in load_split(scratch, None)]
        except BaseException:
            self._tmp.cleanup()
            raise

    def close(self) -> None:
        self._tmp.cleanup()

    def __enter__(self) -> ScratchSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
