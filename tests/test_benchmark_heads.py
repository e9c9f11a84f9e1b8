"""Smoke test of benchmarks.heads at tiny sizes: the table and its ratios, never the timings."""

from __future__ import annotations


from benchmarks.heads import VARIANTS, HeadSettings, heads_section, parse_args, variant_config
from pipeline.config import to_raw
from tests.models import model_config


def test_a_changed_part_keeps_none_of_the_old_part_s_keys():
    base = to_raw(model_config(search_size=[96, 64]))
    cfg = variant_config(base, {"refine": {"type": "roi"}})
    assert cfg.refine.type == "roi" and cfg.head == model_config().head and not cfg.backbone.pretrained
    assert set(VARIANTS) >= {"dense", "dense + RoI verifier"}


def test_heads_section_tiny(one_thread):
    base = to_raw(model_config(search_size=[96, 64]))
    variants = {"dense": {}, "dense + roi": {"refine": {"type": "roi", "channels": 16, "top_k": 3}}}
    table = heads_section(HeadSettings(base, warmup=1, repeats=2), variants)
    fp32 = [row for row in table.rows if row[1] == "fp32"]
    assert [row[0] for row in fp32] == ["dense", "dense + roi"]
    assert fp32[0][4] == "1.00×" and fp32[1][4].endswith("×")
    assert int(fp32[1][2].replace(",", "")) > int(fp32[0][2].replace(",", ""))  # the verifier's weights
    assert all(float(row[3]) > 0 for row in table.rows) and "96x64" in table.notes[0]
    assert parse_args(["--quick"]).quick
