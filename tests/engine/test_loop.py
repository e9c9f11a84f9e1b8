import torch

from pipeline.engine.loop import pair_targets

NAN = float("nan")


def test_pair_targets_keep_box_only_for_the_same_object():
    batch = {
        "boxes": torch.tensor([[0.0, 0, 10, 10], [5, 5, 20, 20], [NAN] * 4, [1, 1, 4, 4]]),
        "present": torch.tensor([True, True, False, True]),
        "object": torch.tensor([7, 3, 3, 3]),
    }
    plain = pair_targets(batch, False)
    assert plain["boxes"] is batch["boxes"]
    t = pair_targets(batch, True)
    # rolled partner of sample i is sample i-1: objects 3,7,3,3 -> same for i = 2, 3
    assert t["present"].tolist() == [True, True, False, True, False, False, False, True]
    assert torch.isnan(t["boxes"][4:7]).all()
    assert t["boxes"][7].tolist() == [1, 1, 4, 4]
