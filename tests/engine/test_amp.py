import warnings

import pytest
import torch

from pipeline.config import ConfigError
from pipeline.engine.amp import SlowPrecisionWarning, describe_precision, precision_tags, resolve_precision
from pipeline.engine.cpu import cpu_info

CPU = torch.device("cpu")


def test_auto_on_cpu_is_bf16_only_where_bf16_is_native():
    native = resolve_precision("auto", CPU, native_bf16=True)
    assert native.dtype == torch.bfloat16 and not native.uses_scaler
    emulated = resolve_precision("auto", CPU, native_bf16=False)
    assert emulated.dtype is None and emulated.name == "fp32"


def test_auto_follows_this_machines_cpu():
    assert resolve_precision("auto", CPU).name == ("bf16" if cpu_info().native_bf16 else "fp32")


def test_auto_is_fp16_with_scaler_on_cuda():
    # CUDA cannot run here: resolving the mode needs no device, only its type.
    cuda = resolve_precision("auto", torch.device("cuda", 0), native_bf16=False)
    assert cuda.dtype == torch.float16 and cuda.uses_scaler and cuda.name == "fp16"
    assert resolve_precision("off", CPU).dtype is None


def test_explicit_bf16_on_an_emulating_cpu_runs_but_warns():
    with pytest.warns(SlowPrecisionWarning, match="train.amp: bf16 on a CPU without native bf16"):
        prec = resolve_precision("bf16", CPU, native_bf16=False)
    assert prec.dtype == torch.bfloat16
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_precision("bf16", CPU, native_bf16=True).dtype == torch.bfloat16
        assert resolve_precision("auto", CPU, native_bf16=False).dtype is None


def test_fp16_on_cpu_is_a_config_error():
    with pytest.raises(ConfigError, match="train.amp: fp16 needs a CUDA device"):
        resolve_precision("fp16", CPU)
    with pytest.raises(ConfigError, match="evaluate.amp: fp16 needs a CUDA device"):
        resolve_precision("fp16", CPU, key="evaluate.amp")
    with pytest.raises(ConfigError, match="--amp: 'fp8' is not one of auto, fp16, bf16, off"):
        resolve_precision("fp8", torch.device("cuda"), key="--amp")


def test_bf16_autocast_runs_matmul_in_bf16_on_cpu():
    prec = resolve_precision("bf16", CPU, native_bf16=True)
    a = torch.randn(4, 4)
    with prec.autocast():
        assert (a @ a).dtype == torch.bfloat16
    assert not prec.grad_scaler().is_enabled()


def test_the_choice_is_described_with_the_cpu_and_tagged():
    prec = resolve_precision("auto", CPU, native_bf16=False)
    line = describe_precision("train.amp", "auto", prec)
    assert line.startswith("train.amp: auto -> fp32 (cpu: ") and cpu_info().isa in line
    tags = precision_tags("evaluate.amp", prec)
    assert tags["evaluate.amp.resolved"] == "fp32" and cpu_info().model in tags["evaluate.amp.hardware"]
    cuda = resolve_precision("auto", torch.device("cuda"))
    assert precision_tags("train.amp", cuda) == {"train.amp.resolved": "fp16", "train.amp.hardware": "cuda"}
