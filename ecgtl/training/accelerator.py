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

DEVICE_CACHE_SHARE = 0.5
_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


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
