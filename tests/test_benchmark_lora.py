"""Smoke test of benchmarks.lora at tiny sizes: the table and its ratios, never the timings."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from benchmarks import lora as lora_module
from benchmarks.lora import (
    FULL,
    VARIANTS,
    LoraCase,
    LoraSettings,
    LoraVariant,
    lora_section,
    parse_args,
    peak_memory_fresh,
)

TINY_VIT = (("depth", 2), ("embed_dim", 48), ("num_heads", 2), ("img_size", 56))


TINY = LoraSettings(
    cases=(LoraCase("50x40, batch 2", 2, (40, 50)),),  # not multiples of 14: padded
    variants=(FULL, LoraVariant("LoRA r2 attn", 2, 4.0, ("attn.qkv", "attn.proj"))),
    model_kwargs=TINY_VIT, warmup=0, repeats=1, memory_steps=1,
)


def test_lora_section_prints_its_table(one_thread: None, monkeypatch: pytest.MonkeyPatch) -> None:
    # fixed figures instead of a spawned process per variant (seconds of imports each; tested below)
    monkeypatch.setattr(lora_module, "peak_memory_fresh",
                        lambda settings, variant, case: (10**6 if variant == FULL else 4 * 10**5, "fake peak"))
    table = lora_section(TINY)
    assert table.columns == ["input", "variant", "trainable params", "trainable vs full", "s/step", "time vs full",
                             "peak memory added", "memory vs full"]
    assert [(r[0], r[1]) for r in table.rows] == [("50x40, batch 2", "full fine-tuning"),
                                                  ("50x40, batch 2", "LoRA r2 attn")]
    full, lora = table.raw
    assert full["trainable"] == full["total"]
    assert 0 < lora["trainable"] < full["trainable"] / 10
    assert lora["trainable"] == 2 * 2 * (48 + 3 * 48) + 2 * 2 * (48 + 48)  # rank 2: A and B of qkv and proj, 2 blocks
    assert table.rows[0][3] == "100 %" and table.rows[0][5] == "1.00×" and table.rows[0][7] == "1.00×"
    assert table.rows[1][5].endswith("×")
    assert [r[6:] for r in table.rows] == [["1 MB", "1.00×"], ["400 kB", "0.40×"]]
    assert any(n.startswith("memory: peak RSS over 1 step ") and n.endswith("peak read as fake peak")
               for n in table.notes)
    json.dumps(table.to_json())


def test_memory_is_measured_in_a_fresh_process() -> None:
    added, how = peak_memory_fresh(TINY, FULL, TINY.cases[0])
    assert added > 0  # gradients and AdamW state at least
    if Path("/proc/self/status").is_file():
        assert how.startswith("VmHWM")  # not ru_maxrss, which a spawned child inherits from its parent


def test_without_memory() -> None:
    table = lora_section(dataclasses.replace(TINY, memory=False, variants=(FULL,)))
    assert table.rows[0][6:] == ["n/a", "n/a"] and "memory: not measured" in table.notes


def test_default_variants_and_cli() -> None:
    assert [v.rank for v in VARIANTS] == [None, 8, 8] and all(v.alpha == 16.0 for v in VARIANTS[1:])
    assert parse_args(["--quick", "--threads", "1"]).quick
