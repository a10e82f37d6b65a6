"""Which floating-point dtype a run computes in: `model.dtype` (inference) and `train.dtype` (training).

`auto` means bf16 where the hardware runs it natively and fp32 elsewhere:

* CUDA: bf16 when `torch.cuda.is_bf16_supported(including_emulation=False)` (Ampere and newer),
  else fp32 (fp16 without loss scaling is not a safe default for training).
* CPU: bf16 when the CPU has AVX512-BF16 or AMX-BF16 instructions (read from /proc/cpuinfo).
  Measured on the project's 2-core AVX512-BF16 machine: a SmolLM2-135M LoRA step took 7.5 s in
  bf16 autocast and 13.8 s in fp32; on a CPU of the same pool without native bf16 it was 2x
  slower than fp32, so `auto` must look at the instruction set, not only at torch's support.

An explicit `bfloat16` where the hardware only emulates it is refused with one line naming the
key (`checked_dtype`): the run would be correct but twice as slow as the user expects.

Training keeps fp32 master weights and runs the forward pass under bf16 autocast (the Trainer's
`bf16=True`); inference loads the weights in the dtype itself. The resolved dtype is recorded in
metrics (train) and in the prediction stats, since it is machine-dependent: `auto` on two
machines may compute in different dtypes (README: reproducibility).
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from synthtune.core.errors import ParamsError

NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@lru_cache(maxsize=1)
def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> frozenset[str]:
    """The instruction-set flags of the first CPU listed in /proc/cpuinfo (empty where unreadable)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return frozenset()


def native_bf16(cuda: bool | None = None, flags: frozenset[str] | None = None) -> bool:
    """Whether bf16 runs natively on the device a run uses (CUDA when available, else the CPU)."""
    import torch

    if cuda is None:
        cuda = torch.cuda.is_available()
    if cuda:
        # torch counts emulated bf16 as supported by default (pre-Ampere GPUs): ask for native only
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    return any(flag in (cpu_flags() if flags is None else flags) for flag in NATIVE_BF16_FLAGS)


def resolve_dtype(name: str, cuda: bool | None = None, flags: frozenset[str] | None = None) -> str:
    """`auto` -> "bfloat16" or "float32" by `native_bf16`; any other name is returned as is."""
    if name != "auto":
        return name
    return "bfloat16" if native_bf16(cuda, flags) else "float32"


def checked_dtype(name: str, key: str, cuda: bool | None = None, flags: frozenset[str] | None = None) -> str:
    """`resolve_dtype`, refusing an explicit `bfloat16` where the hardware only emulates it.

    Emulated bf16 computes correctly but was measured 2x slower than fp32 on such a CPU, so a
    params file written on a bf16 machine would silently double a run's time elsewhere; `auto`
    is the portable choice. `key` names the params key in the one-line error.
    """
    import torch

    if cuda is None:
        cuda = torch.cuda.is_available()
    if name == "bfloat16" and not native_bf16(cuda, flags):
        where = ("this GPU has no native bf16 (torch.cuda.is_bf16_supported)" if cuda else
                 f"this CPU has no native bf16 ({' or '.join(NATIVE_BF16_FLAGS)} not in /proc/cpuinfo; "
                 "emulated bf16 ran 2x slower than float32)")
        raise ParamsError(f"params.yaml: {key} bfloat16: {where}; use auto or float32")
    return resolve_dtype(name, cuda, flags)


def torch_dtype(name: str):
    """The torch dtype of a `model.dtype` value (auto resolved first)."""
    import torch

    return getattr(torch, resolve_dtype(name))


def device_description() -> str:
    """What a run trained on, for metrics and the model card: the GPU(s), else the CPU model and threads."""
    import torch

    if torch.cuda.is_available():
        names = sorted({torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())})
        return f"{torch.cuda.device_count()}x {', '.join(names)} (CUDA)"
    model = "CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    except OSError:
        pass
    return f"{model}, {torch.get_num_threads()} threads"
