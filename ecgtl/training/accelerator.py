"""The accelerator the engine trains on: which device, which precision, and whether a split fits in its memory.

Precision (`train.precision`):
- `auto`: bf16 autocast on a CUDA device that supports it, without a GradScaler (bf16 has fp32's exponent range,
  so gradients do not underflow); fp16 autocast with a GradScaler on older CUDA devices; fp32 elsewhere, so CPU
  results are what they always were.
- `fp32`, `bf16`, `fp16`: as named, on any device; fp16 always with a GradScaler.

Device-resident training data (`train.device_cache`): `on`, `off`, or `auto`: resident when the device is an
accelerator (not the CPU, whose memory already holds the memmap) with free memory reported, and the training
inputs take at most `DEVICE_CACHE_SHARE` of it, leaving the rest to activations.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from ecgtl.errors import EcgtlError

DEVICE_CACHE_SHARE = 0.5
DEVICE_TYPES = ("cpu", "cuda", "mps")  # what `train.device` may name (besides auto)
_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
_DEVICE_WORDS = "auto, cpu, cuda, cuda:N or mps"


def resolve_device(name: str) -> torch.device:
    """`train.device` as a device that can train here; one line naming the problem otherwise (checked before
    any data are prepared or a run is opened: `check_training`)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise EcgtlError(f"train.device {name!r} is not a device; use {_DEVICE_WORDS}") from None
    if device.type not in DEVICE_TYPES:
        raise EcgtlError(f"train.device {name!r}: ecgtl trains on {_DEVICE_WORDS}")
    if device.type == "cuda" and not torch.cuda.is_available():
        build = "a CPU build of torch" if torch.version.cuda is None else "no CUDA device visible"
        raise EcgtlError(f"train.device {name!r}: CUDA is not available here ({build}); use auto or cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise EcgtlError(f"train.device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise EcgtlError(f"train.device {name!r}: MPS is not available here; use auto or cpu")
    return device


def check_compiler(device: torch.device) -> None:
    """`train.compile` builds kernels: C++ on the CPU (a working compiler, `CXX` or g++), Triton on CUDA. One
    line when they cannot be built here, instead of inductor's 110-line traceback at the first step."""
    if device.type == "cuda":
        import importlib.util

        if importlib.util.find_spec("triton") is None:
            raise EcgtlError("train.compile: torch.compile needs Triton on CUDA (pip install triton); "
                             "or set train.compile false")
        return
    from torch._inductor import cpp_builder
    from torch._inductor import exc as inductor_errors

    try:
        cpp_builder.get_cpp_compiler()
    except inductor_errors.InvalidCxxCompiler:
        raise EcgtlError("train.compile: no working C++ compiler for torch.compile (install g++ or set CXX); "
                         "or set train.compile false") from None


def check_training(device_name: str, compile: bool) -> torch.device:
    """Everything about the accelerator a training needs, checked before it prepares data or opens a run."""
    device = resolve_device(device_name)
    if compile:
        check_compiler(device)
    return device


def training_network(network: nn.Module, compile: bool, device: torch.device) -> nn.Module:
    """The network training steps call: `torch.compile`d under `train.compile` (sharing its parameters)."""
    if not compile:
        return network
    check_compiler(device)
    return torch.compile(network)


def resolve_precision(name: str, device: torch.device) -> str:
    """`name` with `auto` resolved for `device` (see the module docstring)."""
    if name != "auto":
        return name
    if device.type != "cuda":
        return "fp32"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The forward pass's autocast for a resolved precision (a no-op under fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=_AUTOCAST_DTYPES[precision])


def grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler:
    """A GradScaler that scales only under fp16 (a pass-through otherwise)."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")


def free_memory(device: torch.device) -> int | None:
    """Bytes free on an accelerator, None where the device does not say (CPU, MPS)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    return None


def use_device_cache(setting: str, device: torch.device, nbytes: int) -> bool:
    """Whether training inputs of `nbytes` live on `device` under `train.device_cache=setting`."""
    if setting != "auto":
        return setting == "on"
    free = free_memory(device)
    return device.type != "cpu" and free is not None and nbytes <= DEVICE_CACHE_SHARE * free
