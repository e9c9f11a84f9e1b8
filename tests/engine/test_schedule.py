import math

import pytest
import torch

from pipeline.engine.schedule import build_scheduler, warmup_cosine


def test_warmup_is_linear_then_cosine_to_floor():
    assert warmup_cosine(0, 100, 10, 0.01) == pytest.approx(0.1)
    assert warmup_cosine(4, 100, 10, 0.01) == pytest.approx(0.5)
    assert warmup_cosine(10, 100, 10, 0.01) == pytest.approx(1.0)
    # halfway through the cosine part: (1 + floor) / 2
    assert warmup_cosine(55, 100, 10, 0.01) == pytest.approx(0.505)
    assert warmup_cosine(100, 100, 10, 0.01) == pytest.approx(0.01)
    assert warmup_cosine(500, 100, 10, 0.01) == pytest.approx(0.01)


def test_scheduler_keeps_group_ratios():
    p1, p2 = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([{"params": [p1], "lr": 0.1}, {"params": [p2], "lr": 1.0}])
    sched = build_scheduler(opt, total_steps=20, warmup_steps=4, lr=1.0, min_lr=0.0)
    lrs = []
    for _ in range(20):
        lrs.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    assert all(math.isclose(a * 10, b, rel_tol=1e-9, abs_tol=1e-12) for a, b in lrs)
    assert lrs[3][1] == pytest.approx(1.0)
    assert max(l[1] for l in lrs) == pytest.approx(1.0)
    assert lrs[-1][1] < 0.01
