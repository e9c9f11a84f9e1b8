"""Training crops and evaluation frames from real image files."""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from pipeline.cli import UserError
from pipeline.data.dataset import EvalDataset, Sample, TrainDataset, choose_crop, collate, crop, load_samples

W, H = 400, 240
BOX = (250.0, 100.0, 290.0, 130.0)


@pytest.fixture
def frame_sample(tmp_path):
    """A frame with a pure red 40x30 rectangle at BOX on grey, and two templates."""
    img = np.full((H, W, 3), 128, np.uint8)
    x1, y1, x2, y2 = map(int, BOX)
    img[y1:y2, x1:x2] = (0, 0, 255)  # BGR red
    cv2.imwrite(str(tmp_path / "f.png"), img)
    for k in range(2):
        cv2.imwrite(str(tmp_path / f"t{k}.png"), np.full((32, 32, 3), 60 * k, np.uint8))
    return Sample(str(tmp_path / "f.png"), "a", "a_s0", 0, BOX, (str(tmp_path / "t0.png"), str(tmp_path / "t1.png")), W, H)


def _red_box(search: torch.Tensor) -> tuple[float, float, float, float]:
    img = search.numpy()
    mask = (img[0] > 0.8) & (img[1] < 0.2) & (img[2] < 0.2)
    ys, xs = np.nonzero(mask)
    return xs.min(), ys.min(), xs.max() + 1, ys.max() + 1


def test_eval_frame_is_resized_and_box_scaled(frame_sample):
    item = EvalDataset([frame_sample], 16, (200, 120))[0]  # half size: reduced JPEG/PNG decode path
    assert item["search"].shape == (3, 120, 200)
    assert item["templates"].shape == (2, 3, 16, 16)
    torch.testing.assert_close(item["boxes"], torch.tensor(BOX) / 2)
    torch.testing.assert_close(item["scale"], torch.tensor([0.5, 0.5, 0.5, 0.5]))
    assert np.allclose(_red_box(item["search"]), np.array(BOX) / 2, atol=1)


@pytest.mark.parametrize("seed", range(5))
def test_training_crop_box_follows_the_pixels(frame_sample, seed):
    ds = TrainDataset([frame_sample], 16, (W, H), crop_size=96, background_crop_prob=0.0, augment=False, seed=seed)
    item = ds[0]
    assert item["search"].shape == (3, 96, 96) and bool(item["present"])
    assert np.allclose(_red_box(item["search"]), item["boxes"].numpy(), atol=1)


def test_same_seed_epoch_index_same_sample_and_epochs_differ(frame_sample):
    ds = TrainDataset([frame_sample] * 3, 16, (W, H), 96, 0.25, True, seed=7)
    a, b = ds[1], ds[1]
    torch.testing.assert_close(a["search"], b["search"])
    ds.set_epoch(1)
    assert not torch.equal(ds[1]["search"], a["search"])


def test_crop_helpers():
    rng = np.random.default_rng(0)
    for _ in range(50):
        x0, y0 = choose_crop(BOX, W, H, 96, 0.0, rng)
        assert x0 <= BOX[0] and x0 + 96 >= BOX[2] and y0 <= BOX[1] and y0 + 96 >= BOX[3]
    image = np.zeros((H, W, 3), np.uint8)
    _, kept = crop(image, BOX, 260, 100, 96)  # only 30/40 of the width inside -> 0.75 visible
    assert kept == (0.0, 0.0, 30.0, 30.0)
    _, dropped = crop(image, BOX, 280, 100, 96)  # 10/40 visible -> absent
    assert dropped is None


def test_collate_pads_templates_with_a_mask(frame_sample):
    one = Sample(frame_sample.image, "b", "b_s0", 0, None, frame_sample.templates[:1], W, H)
    ds = EvalDataset([frame_sample, one], 16, (W, H))
    batch = collate([ds[0], ds[1]])
    assert batch["templates"].shape == (2, 2, 3, 16, 16)
    assert batch["template_mask"].tolist() == [[True, True], [True, False]]
    assert batch["present"].tolist() == [True, False]
    assert torch.isnan(batch["boxes"][1]).all()
    assert batch["object"].tolist() == [0, 1]


def test_load_samples_joins_templates_and_names_missing_objects():
    manifest = pd.DataFrame([
        {"split": "train", "object_id": "a", "sequence_id": "a_s0", "frame_index": 3, "image": "f.jpg",
         "width": W, "height": H, "x1": 1.0, "y1": 2.0, "x2": 3.0, "y2": 4.0, "templates": "x.jpg"},
        {"split": "val", "object_id": "b", "sequence_id": "b_s0", "frame_index": 0, "image": "g.jpg",
         "width": W, "height": H, "x1": None, "y1": None, "x2": None, "y2": None, "templates": "y.jpg"},
    ])
    templates = pd.DataFrame([{"object_id": "a", "index": 1, "path": "a1.jpg"}, {"object_id": "a", "index": 0, "path": "a0.jpg"}])
    (sample,) = load_samples(manifest, templates, "train")
    assert sample.templates == ("a0.jpg", "a1.jpg") and sample.box == (1.0, 2.0, 3.0, 4.0)
    with pytest.raises(UserError, match="object 'b' .* has no resized templates"):
        load_samples(manifest, templates, "val")


def test_unreadable_frame_is_a_user_error(tmp_path, frame_sample):
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    bad = Sample(str(tmp_path / "bad.jpg"), "a", "a_s0", 0, None, frame_sample.templates, W, H)
    with pytest.raises(UserError, match="bad.jpg: cannot read image"):
        EvalDataset([bad], 16, (W, H))[0]


def test_identity_augmentation_recolours_crop_and_references_alike():
    from pipeline.data.augment import identity_augmentation

    aug = identity_augmentation(1.0, max_templates=2)
    crop = np.zeros((20, 30, 3), np.uint8)
    crop[5:10, 5:10] = (200, 40, 30)  # the target's colour
    crop[12:18, 20:28] = (30, 60, 220)  # a distractor's
    refs = [np.full((8, 8, 3), (200, 40, 30), np.uint8), np.full((6, 6, 3), (200, 40, 30), np.uint8)]
    changed = 0
    for seed in range(8):
        aug.set_random_seed(seed)
        out = aug(image=crop, template0=refs[0], template1=refs[1])
        target, distractor = out["image"][7, 7], out["image"][15, 24]
        assert (out["template0"][3, 3] == target).all() and (out["template1"][2, 2] == target).all()
        assert not (target == distractor).all()  # still tells the two apart
        changed += int(not (target == crop[7, 7]).all())
    assert changed >= 6  # new identities, not the same colours
