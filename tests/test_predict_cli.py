"""``python -m pipeline.predict``: predictions.csv format, drawn images, clear errors."""

from __future__ import annotations

import re
import runpy
import sys
import warnings
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from pipeline.cli import UserError
from pipeline.config import to_raw
from pipeline.detector import build_detector
from tests.models import model_config
from pipeline.engine.checkpoint import save_checkpoint
from pipeline.inference import Detector
from pipeline.predict import main
from tests.datasets import truncate, write_image, write_video

FRAMES = {"a.jpg": (256, 192), "b.png": (128, 96), "c.jpg": (300, 140)}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    cfg = model_config(search_size=[128, 96], head={"box_prior": 24.0})
    path = tmp_path_factory.mktemp("ckpt") / "best.pt"
    save_checkpoint(path, {"model": build_detector(cfg).state_dict(), "model_config": to_raw(cfg),
                           "template_size": 32, "epoch": 0})
    return path


@pytest.fixture
def data(tmp_path) -> tuple[Path, Path]:
    """A folder of 2 reference photos (different sizes) and a folder of 3 frames (+ a non-image)."""
    refs, frames = tmp_path / "refs", tmp_path / "frames"
    write_image(refs / "ref_1.jpg", (48, 40), seed=1)
    write_image(refs / "ref_2.png", (20, 30), seed=2)
    for i, (name, size) in enumerate(FRAMES.items()):
        write_image(frames / name, size, seed=10 + i)
    (frames / "notes.txt").write_text("not an image")
    return refs, frames


def run(checkpoint: Path, refs, search, out: Path, *extra: str) -> None:
    refs = refs if isinstance(refs, list) else [refs]
    search = search if isinstance(search, list) else [search]
    main(["--checkpoint", str(checkpoint), "--templates", *map(str, refs), "--search", *map(str, search),
          "--out", str(out), *extra])


def test_predictions_csv_and_visualizations(checkpoint, data, tmp_path, capsys):
    refs, frames = data
    out = tmp_path / "out"
    run(checkpoint, refs, frames, out, "--score-threshold", "0", "--max-detections", "3", "--visualize")
    captured = capsys.readouterr()
    assert re.fullmatch(r"3 images: \d+\.\d ms/frame\n", captured.out)
    assert "frame/s" not in captured.err  # not a terminal: no progress bar
    table = pd.read_csv(out / "predictions.csv")
    assert list(table.columns) == ["image", "x1", "y1", "x2", "y2", "score"]
    assert set(table["image"]) == {str(frames / name) for name in FRAMES}  # threshold 0: every frame has a hit
    assert table.groupby("image").size().max() <= 3
    # as written: boxes to 0.01 px, scores to 1e-4 (no float32 tails like 100.18000030517578)
    text = pd.read_csv(out / "predictions.csv", dtype=str)
    for column, places in (("x1", 2), ("y1", 2), ("x2", 2), ("y2", 2), ("score", 4)):
        decimals = text[column].str.partition(".")[2].str.len()
        assert (decimals <= places).all(), text[column].tolist()
    # one row per detection, equal to the API's answer, in each image's own pixels
    det = Detector.from_checkpoint(checkpoint, score_threshold=0.0, max_detections=3, amp="auto")  # --amp's default
    det.set_templates(sorted(refs.iterdir()))
    for name, (w, h) in FRAMES.items():
        rows = table[table["image"] == str(frames / name)]
        found = det.predict(frames / name)
        assert len(rows) == len(found.scores)
        np.testing.assert_allclose(rows[["x1", "y1", "x2", "y2"]].to_numpy(), found.boxes, atol=0.01)
        np.testing.assert_allclose(rows["score"].to_numpy(), found.scores, atol=1e-4)
        assert (rows[["x1", "x2"]].to_numpy() <= w).all() and (rows[["y1", "y2"]].to_numpy() <= h).all()
        drawn = cv2.imread(str(out / f"{Path(name).stem}_pred.jpg"))
        assert drawn is not None and drawn.shape[:2] == (h, w)


def test_files_threshold_and_flip_tta(checkpoint, data, tmp_path):
    refs, frames = data
    out = tmp_path / "out"
    run(checkpoint, [refs / "ref_1.jpg"], [frames / "a.jpg", frames / "b.png"], out, "--score-threshold", "1",
        "--flip-tta", "--device", "cpu")
    table = pd.read_csv(out / "predictions.csv")
    assert list(table.columns) == ["image", "x1", "y1", "x2", "y2", "score"] and len(table) == 0
    assert not list(out.glob("*_pred.jpg"))  # no --visualize


def test_amp_off_is_fp32_and_fp16_needs_cuda(checkpoint, data, tmp_path):
    from pipeline.config import ConfigError

    refs, frames = data
    run(checkpoint, refs, frames / "a.jpg", tmp_path / "out", "--score-threshold", "0", "--amp", "off")
    det = Detector.from_checkpoint(checkpoint, score_threshold=0.0)  # the API's default: fp32
    det.set_templates(sorted(refs.iterdir()))
    table = pd.read_csv(tmp_path / "out" / "predictions.csv")
    np.testing.assert_allclose(table["score"].to_numpy(), det.predict(frames / "a.jpg").scores, atol=1e-4)
    with pytest.raises(ConfigError, match="--amp: fp16 needs a CUDA device"):
        run(checkpoint, refs, frames, tmp_path / "fp16", "--amp", "fp16", "--device", "cpu")
    assert not (tmp_path / "fp16").exists()


@pytest.mark.parametrize(
    "case, culprit",
    [
        ("missing checkpoint", "nothing.pt"),
        ("missing template", "ref_9.jpg"),
        ("corrupt template", "ref_1.jpg"),
        ("corrupt search image", "b.png"),
        ("truncated search image", "a.jpg: cannot read image"),
        ("missing search", "gone"),
        ("template folder without images", "empty"),
    ],
)
def test_bad_input_is_a_user_error_naming_the_file(checkpoint, data, tmp_path, case, culprit):
    refs, frames = data
    ckpt, search = checkpoint, frames
    if case == "missing checkpoint":
        ckpt = tmp_path / "nothing.pt"
    elif case == "missing template":
        refs = refs / "ref_9.jpg"
    elif case == "corrupt template":
        truncate(refs / "ref_1.jpg", 0.3)
    elif case == "corrupt search image":
        (frames / "b.png").write_bytes(b"\x89PNG garbage")
    elif case == "truncated search image":  # OpenCV alone decodes it, grey where the data ends
        truncate(frames / "a.jpg", 0.5)
    elif case == "missing search":
        search = tmp_path / "gone"
    else:
        refs = tmp_path / "empty"
        refs.mkdir()
    with pytest.raises(UserError, match=culprit):
        run(ckpt, refs, search, tmp_path / "out")
    assert not (tmp_path / "out" / "predictions.csv").exists()


def test_cli_prints_error_and_exits_2(data, tmp_path, monkeypatch, capsys):
    """``python -m pipeline.predict`` (run in-process: a subprocess would spend ~10 s importing torch)."""
    refs, frames = data
    argv = ["pipeline.predict", "--checkpoint", str(tmp_path / "missing.pt"), "--templates", str(refs),
            "--search", str(frames), "--out", str(tmp_path / "out")]
    monkeypatch.setattr(sys, "argv", argv)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # runpy: module already imported by this file
        with pytest.raises(SystemExit) as exit_info:
            runpy.run_module("pipeline.predict", run_name="__main__")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == f"error: {tmp_path / 'missing.pt'}: checkpoint not found"
    assert "Traceback" not in err


@pytest.mark.parametrize("mode", ["search", "video"])
def test_unwritable_out_fails_first_naming_it(checkpoint, data, tmp_path, monkeypatch, mode):
    """The check comes before any frame is read (a regular file as the parent: unwritable for root too)."""
    refs, frames = data
    (tmp_path / "a-file").write_text("")
    out = tmp_path / "a-file" / "out"

    def no_frames(*args, **kwargs):
        raise AssertionError("frames were read before --out was checked")

    monkeypatch.setattr(Detector, "predict", no_frames)
    video = write_video(tmp_path / "clip.mp4", 3)
    what = ["--search", str(frames)] if mode == "search" else ["--video", str(video)]
    with pytest.raises(UserError, match=f"^{tmp_path / 'a-file' / 'out'}: --out cannot be written "
                                        f"\\({tmp_path / 'a-file'} is not a folder\\)$"):
        main(["--checkpoint", str(checkpoint), "--templates", str(refs), *what, "--out", str(out)])


def test_the_checkpoint_threshold_is_the_default_and_the_flag_overrides_it(checkpoint, data, tmp_path, caplog):
    from pipeline.engine.checkpoint import load_checkpoint

    refs, frames = data
    run(checkpoint, refs, frames, tmp_path / "all", "--score-threshold", "0")
    scores = pd.read_csv(tmp_path / "all" / "predictions.csv")["score"]
    t = float(scores.max())
    calibrated = tmp_path / "calibrated.pt"
    save_checkpoint(calibrated, {**load_checkpoint(checkpoint),
                                 "presence": {"score_threshold": t, "metric": "f1", "value": 0.5, "frames": 4}})
    assert Detector.from_checkpoint(calibrated).score_threshold == t
    run(calibrated, refs, frames, tmp_path / "cal")
    kept = pd.read_csv(tmp_path / "cal" / "predictions.csv")["score"]
    assert 0 < len(kept) < len(scores) and (kept >= t - 1e-4).all()  # the CSV rounds scores to 4 decimals
    run(calibrated, refs, frames, tmp_path / "flag", "--score-threshold", "0")
    assert len(pd.read_csv(tmp_path / "flag" / "predictions.csv")) == len(scores)
    # an older checkpoint: 0.3, said once in the log
    with caplog.at_level("INFO"):
        assert Detector.from_checkpoint(checkpoint).score_threshold == 0.3
    assert caplog.text.count("no calibrated presence threshold") == 1


def test_video_temporal_thresholds_follow_the_checkpoint(checkpoint, data, tmp_path, caplog):
    from pipeline.engine.checkpoint import load_checkpoint

    refs, _ = data
    calibrated = tmp_path / "calibrated.pt"
    save_checkpoint(calibrated, {**load_checkpoint(checkpoint),
                                 "presence": {"score_threshold": 0.6, "metric": "f1", "value": 0.5, "frames": 4}})
    video = write_video(tmp_path / "clip.mp4", 3)
    params = tmp_path / "params.yaml"
    params.write_text("temporal: {method: smooth, min_on_frames: 1}\n")
    with caplog.at_level("INFO"):
        main(["--checkpoint", str(calibrated), "--templates", str(refs), "--video", str(video), "--out",
              str(tmp_path / "v"), "--params", str(params)])
        main(["--checkpoint", str(calibrated), "--templates", str(refs), "--video", str(video), "--out",
              str(tmp_path / "w"), "--params", str(params), "--score-threshold", "0.3"])
    assert "temporal: on at 0.6, off below 0.4" in caplog.text
    assert "temporal: on at 0.3, off below 0.2" in caplog.text
    assert (tmp_path / "v" / "submission.json").is_file()


def test_a_terminal_gets_a_progress_bar(checkpoint, data, tmp_path):
    """tqdm draws on stderr when it is a terminal (here a pseudo-terminal)."""
    import fcntl
    import os
    import pty
    import struct
    import subprocess
    import sys
    import termios

    refs, frames = data
    main_fd, child_fd = pty.openpty()
    fcntl.ioctl(child_fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # a 120-column terminal
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.predict", "--checkpoint", str(checkpoint), "--templates",
                             str(refs), "--search", str(frames), "--out", str(tmp_path / "out"), "--amp", "off"],
                            stdout=subprocess.PIPE, stderr=child_fd, text=True,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    os.close(child_fd)
    chunks = []
    while True:  # read while it runs, so a full terminal buffer never blocks it
        try:
            chunk = os.read(main_fd, 65536)
        except OSError:  # the process closed its end and everything was read
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(main_fd)
    stdout = proc.communicate(timeout=300)[0]
    terminal = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 0, terminal[-3000:]
    assert "predict: 100%" in terminal and "3/3" in terminal
    assert "ms/frame" in stdout
