"""ScratchSet: an outside data set made ready to score, leaving the stages' outputs alone."""

from __future__ import annotations

from pathlib import Path

from pipeline.config import parse_params
from pipeline.data.frames import read_rgb
from pipeline.data.scratch import ScratchSet
from tests.datasets import make_cpn_dataset


def test_frames_inside_the_project_keep_relative_names(tmp_path, monkeypatch):
    make_cpn_dataset(tmp_path / "raw")
    monkeypatch.chdir(tmp_path)
    with ScratchSet(Path("raw"), "cpn", parse_params({}), 32) as data:
        assert data.samples
        for s in data.samples:
            assert s.image.startswith("raw/"), s.image  # not /tmp/.../raw: outputs are clone-independent
            assert read_rgb(s.image).ndim == 3 and all(Path(t).is_file() for t in s.templates)
        scratch = Path(data.samples[0].templates[0]).parents[2]
    assert not scratch.exists()  # the resized references are gone with the set
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw"]  # nothing written beside the data
