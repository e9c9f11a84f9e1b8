import pytest
import torch

from pipeline.config import ConfigError
from pipeline.engine.amp import resolve_precision


def test_auto_is_bf16_on_cpu_and_fp16_with_scaler_on_cuda():
    cpu = resolve_precision("auto", torch.device("cpu"))
    assert cpu.dtype == torch.bfloat16 and not cpu.uses_scaler
    # CUDA cannot run here: resolving the mode needs no device, only its type.
    cuda = resolve_precision("auto", torch.device("cuda", 0))
    assert cuda.dtype == torch.float16 and cuda.uses_scaler and cuda.name == "fp16"
    assert resolve_precision("off", torch.device("cpu")).dtype is None


def test_fp16_on_cpu_is_a_config_error():
    with pytest.raises(ConfigError, match="train.amp: fp16 needs a CUDA device"):
        resolve_precision("fp16", torch.device("cpu"))
    with pytest.raises(ConfigError, match="evaluate.amp: fp16 needs a CUDA device"):
        resolve_precision("fp16", torch.device("cpu"), key="evaluate.amp")
    with pytest.raises(ConfigError, match="--amp: 'fp8' is not one of auto, fp16, bf16, off"):
        resolve_precision("fp8", torch.device("cuda"), key="--amp")


def test_bf16_autocast_runs_matmul_in_bf16_on_cpu():
    prec = resolve_precision("bf16", torch.device("cpu"))
    a = torch.randn(4, 4)
    with prec.autocast():
        assert (a @ a).dtype == torch.bfloat16
    assert not prec.grad_scaler().is_enabled()
