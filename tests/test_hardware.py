"""Hardware defaults: the precision chosen for CPUs and GPUs (a decision table), worker counts."""
from __future__ import annotations

import pytest

from ensemble_cnn import hardware


@pytest.mark.parametrize(
    "cpu_bf16, gpus, expected",
    [
        (False, [], "float32"),  # plain CPU
        (True, [], "mixed_bfloat16"),  # AMX / AVX512-BF16 CPU
        (False, [(9, 0)], "mixed_bfloat16"),  # H100
        (False, [(8, 0)], "mixed_bfloat16"),  # A100: the first with bf16 tensor cores
        (True, [(7, 5)], "float32"),  # T4: the GPU decides, not the CPU
        (False, [(7, 0)], "float32"),  # V100
        (False, [(3, 7)], "float32"),  # K80
        (False, [(9, 0), (7, 5)], "float32"),  # mixed GPUs: the slowest decides
        (True, [None], "float32"),  # a GPU that does not say
    ],
)
def test_choose_precision(cpu_bf16, gpus, expected):
    assert hardware.choose_precision(cpu_bf16=cpu_bf16, gpu_capabilities=gpus) == expected


@pytest.mark.parametrize(
    "mode, members, cores, expected",
    [("processes", 5, 2, 2), ("processes", 1, 16, 1), ("processes", 5, 16, 5), ("fused", 5, 16, 1),
     ("sequential", 5, 2, 1)],
)
def test_default_jobs(mode, members, cores, expected):
    assert hardware.default_jobs(mode, members=members, cores=cores) == expected


@pytest.mark.parametrize(
    "flags, expected",
    [
        ({"avx2", "fma", "avx512f", "amx_tile", "amx_bf16"}, "x86 AMX"),  # Sapphire Rapids Xeon
        ({"avx2", "fma", "avx512f", "avx512_vnni"}, "x86 AVX-512"),
        ({"avx2", "fma"}, "x86 AVX2"),  # the AMD EPYC of this project's VM, most laptops
    ],
)
def test_cpu_class_names_the_widest_vector_unit(flags, expected):
    assert hardware.cpu_class(flags) == expected


def test_cpu_class_without_avx2_falls_back_to_the_machine(monkeypatch):
    import platform

    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    assert hardware.cpu_class(set()) == "aarch64"
