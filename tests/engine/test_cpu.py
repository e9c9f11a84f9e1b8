"""CPU capability detection from real /proc/cpuinfo texts."""

import platform
from pathlib import Path

import pytest

from pipeline.engine.cpu import bf16_flags, cpu_info, parse_cpuinfo

# Abridged /proc/cpuinfo of three real machines.
ZEN3 = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B13
flags\t\t: fpu vme sse sse2 avx f16c avx2 fma bmi2 sha_ni vaes vpclmulqdq
"""
SAPPHIRE_RAPIDS = """processor\t: 0
model name\t: Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz
flags\t\t: fpu avx2 avx512f avx512bw avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8
processor\t: 1
model name\t: Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz
flags\t\t: fpu avx2 avx512f avx512bw avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8
"""
GRAVITON3 = """processor\t: 0
BogoMIPS\t: 2100.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm sve i8mm bf16 dgh rng
CPU implementer\t: 0x41
"""
# AVX-512 without the BF16 extension (Skylake/Cascade Lake): bf16 is still emulated.
CASCADE_LAKE = "model name\t: Intel(R) Xeon(R) Gold 6248\nflags\t\t: avx2 avx512f avx512bw avx512_vnni\n"


@pytest.mark.parametrize("text, machine, model, native", [
    (ZEN3, "x86_64", "AMD EPYC 7B13", ()),
    (SAPPHIRE_RAPIDS, "x86_64", "Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz", ("amx_bf16", "avx512_bf16")),
    (CASCADE_LAKE, "x86_64", "Intel(R) Xeon(R) Gold 6248", ()),
    (GRAVITON3, "aarch64", "unknown", ("bf16",)),
])
def test_native_bf16_is_read_from_the_flags(text, machine, model, native):
    found_model, flags = parse_cpuinfo(text)
    assert found_model == model
    assert bf16_flags(flags, machine) == native


def test_arm_bf16_flag_means_nothing_on_x86():
    assert bf16_flags(frozenset({"bf16"}), "x86_64") == ()


def test_this_machine_agrees_with_its_cpuinfo():
    info = cpu_info()
    proc = Path("/proc/cpuinfo")
    if not proc.is_file():
        pytest.skip("no /proc/cpuinfo on this OS")
    _, flags = parse_cpuinfo(proc.read_text())
    assert info.native_bf16 == bool(bf16_flags(flags, platform.machine()))
    assert info.isa and info.isa in info.describe()
    assert ("no native bf16" in info.describe()) != info.native_bf16
