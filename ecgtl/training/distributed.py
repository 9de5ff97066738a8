"""Data-parallel training with torch.distributed, launched by `torchrun` (no home-made process group).

    torchrun --nproc_per_node 2 -m ecgtl finetune ...                        # one machine, 2 processes
    torchrun --nnodes 2 --node_rank 0 --rdzv_endpoint HOST:29400 -m ecgtl pretrain ...   # and on the other

Outside torchrun (no `WORLD_SIZE` above 1 in the environment) every function here is the identity and nothing
changes. Under it:
- the process group is made from torchrun's environment on first use (`gloo` for CPU tensors, `nccl` for CUDA
  ones where CUDA is present), with a collective timeout (`ECGTL_DIST_TIMEOUT_S`, 600 s by default) so that no
  process waits forever for a peer that died;
- each epoch's crop plan is drawn whole from (seed, epoch) on every process and each takes its slice of every
  batch (`batch_part`), so the processes' batches together are the one-process epoch and `train.batch_size` is
  the global batch; objectives compute the loss of the global batch (`gather`, differentiable), so with
  `SyncBatchNorm` (`train.sync_bn`, statistics of the global batch, on the CPU too) two processes reach the
  weights of one to float rounding (tested);
- the network is wrapped in `DistributedDataParallel` (gradients averaged by all-reduce);
- scoring shards the records in blocks of the inference batch and gathers the logits (`shard_blocks`,
  `gather_blocks`), so evaluation is faster with processes and equal to one process's exactly;
- the tracking store is written and read by rank 0 alone (`on_rank_zero`): other ranks receive what it read, and
  an error it met; a rank that fails leaves its one-line error where rank 0 finds it (`report_failure`,
  `peer_failure`), so the run ends FAILED with it.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

TIMEOUT_ENV = "ECGTL_DIST_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched() -> bool:
    """Whether this process was started by torchrun with other processes."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def together() -> bool:
    """Whether the processes are working together now: under torchrun, and not inside a section where rank 0
    acts alone (a tracking call: MLflow's check of a logged model's input example scores it, alone)."""
    return launched() and not getattr(_SECTION, "depth", 0)


def world() -> World:
    """This process's place in the job; the process group is made on first use under torchrun."""
    if not launched():
        return World()
    _init()
    return World(torch.distributed.get_rank(), torch.distributed.get_world_size(),
                 int(os.environ.get("LOCAL_RANK", "0")))


_LOCK = threading.Lock()


def _init() -> None:
    with _LOCK:
        if torch.distributed.is_initialized():
            return
        backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
        timeout = datetime.timedelta(seconds=float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S)))
        torch.distributed.init_process_group(backend, timeout=timeout)
        import atexit

        # Destroyed before the interpreter's teardown: left to it, the group's C++ threads were sometimes destroyed
        # still joinable, and a rank whose work had finished aborted (SIGABRT, "terminate called without an active
        # exception"), failing the job.
        atexit.register(_destroy_process_group)
        folder = _status_folder()
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"rank{torch.distributed.get_rank()}.pid").write_text(str(os.getpid()))
        if torch.distributed.get_rank() == 0:  # the job's status files go with it
            import shutil

            atexit.register(shutil.rmtree, folder, True)


def _destroy_process_group() -> None:
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def device_for(device: torch.device) -> torch.device:
    """Each process its own GPU (`cuda:LOCAL_RANK`) when the device is CUDA without an index."""
    if launched() and device.type == "cuda" and device.index is None:
        device = torch.device("cuda", world().local_rank)
        torch.cuda.set_device(device)
    return device


def barrier() -> None:
    if launched():
        torch.distributed.barrier()


def share(value=None):
    """Rank 0's `value`, on every rank (pickled)."""
    if not launched():
        return value
    box = [value if world().is_main else None]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


@contextlib.contextmanager
def local_rank_zero_first() -> Iterator[None]:
    """The body runs on each machine's first process, then (the result being on disk: a cache) on the others."""
    if launched() and world().local_rank != 0:
        barrier()
    yield
    if launched() and world().local_rank == 0:
        barrier()


# ------------------------------------------------------------------------------------------------ rank 0's store
_SECTION = threading.local()


@contextlib.contextmanager
def rank_zero_section() -> Iterator[None]:
    """Inside it, rank 0 calls `on_rank_zero` functions directly (a tracking call made by another one)."""
    depth = getattr(_SECTION, "depth", 0)
    _SECTION.depth = depth + 1
    try:
        yield
    finally:
        _SECTION.depth = depth


def on_rank_zero(function: Callable) -> Callable:
    """`function` runs on rank 0 alone; every rank returns what it returned, or raises what it raised. Every rank
    makes the same calls in the same order (the stages run the same code on every rank), so this is one
    broadcast per call."""
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        if not launched() or getattr(_SECTION, "depth", 0):
            return function(*args, **kwargs)
        if world().is_main:
            try:
                with rank_zero_section():
                    outcome = (True, function(*args, **kwargs))
            except Exception as exc:  # noqa: BLE001 - every rank raises it
                share((False, _portable(exc)))
                raise
            share(outcome)
            return outcome[1]
        ok, value = share()
        if not ok:
            raise value
        return value

    return wrapper


def _portable(error: Exception) -> Exception:
    """`error` as the other ranks can receive it: itself when it pickles, else an EcgtlError with its line."""
    import pickle

    from ecgtl.errors import EcgtlError

    try:
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:  # noqa: BLE001 - any unpicklable error
        return EcgtlError(f"{type(error).__name__}: {error}")


# ------------------------------------------------------------------------------------------------ failures
def _status_folder() -> Path:
    from ecgtl.paths import cache_root

    job = f"{os.environ.get('MASTER_ADDR', 'local')}-{os.environ.get('MASTER_PORT', '0')}"
    return cache_root() / "distributed" / job


def report_failure(error: BaseException) -> None:
    """A rank other than 0 that fails leaves its one-line error where rank 0 looks (`peer_failure`)."""
    if launched() and torch.distributed.is_initialized() and torch.distributed.get_rank() != 0:
        with contextlib.suppress(OSError):
            message = " ".join(f"{type(error).__name__}: {error}".split())[:2000]
            (_status_folder() / f"rank{torch.distributed.get_rank()}.error").write_text(message)


def peer_failure(wait_s: float = 3.0) -> str | None:
    """Why another rank stopped, when rank 0 can tell: the error it left, or its process gone (on this machine).
    Called on the way out of a failed run, so it waits up to `wait_s` for a peer's end to become visible."""
    if not launched():
        return None
    import time

    folder = _status_folder()
    deadline = time.monotonic() + wait_s
    while True:
        for error in sorted(folder.glob("rank*.error")):
            return f"{error.stem}: {error.read_text()}"
        for pid_file in sorted(folder.glob("rank*.pid")):
            with contextlib.suppress(ValueError, OSError):
                pid = int(pid_file.read_text())
                if pid != os.getpid() and not _alive(pid):
                    return f"{pid_file.stem} (pid {pid}) stopped without an error (killed?)"
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.2)


def _alive(pid: int) -> bool:
    """Whether a process runs: not gone, and not a zombie (killed, not yet reaped by torchrun's agent)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError, IndexError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    return True


# ------------------------------------------------------------------------------------------------ batches
def batch_part(size: int) -> slice:
    """This rank's rows of a global batch of `size` (contiguous, sizes differing by at most one)."""
    if not together():
        return slice(0, size)
    w = world()
    bounds = np.linspace(0, size, w.size + 1).round().astype(int)
    return slice(int(bounds[w.rank]), int(bounds[w.rank + 1]))


class _GatherRows(torch.autograd.Function):
    """Every rank's rows, in rank order; the gradient of each rank's loss reaches the rows' own rank."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor, sizes: list[int]) -> torch.Tensor:  # noqa: ANN001
        ctx.sizes, ctx.rank = sizes, torch.distributed.get_rank()
        padded = torch.zeros((max(sizes), *tensor.shape[1:]), dtype=tensor.dtype, device=tensor.device)
        padded[:len(tensor)] = tensor
        parts = [torch.empty_like(padded) for _ in sizes]
        torch.distributed.all_gather(parts, padded.contiguous())
        return torch.cat([part[:n] for part, n in zip(parts, sizes, strict=True)])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # noqa: ANN001
        grad = grad.contiguous().clone()
        torch.distributed.all_reduce(grad)  # the gradients of every rank's (identical) loss, summed
        start = sum(ctx.sizes[:ctx.rank])
        return grad[start:start + ctx.sizes[ctx.rank]], None


def gather(tensor: torch.Tensor) -> torch.Tensor:
    """The global batch's `tensor` (this rank's rows first dimension) on every rank; the identity in one process.
    Differentiable: an objective computes the loss of the global batch from it, the same on every rank, and DDP's
    averaged gradients are then the one-process gradients."""
    if not together():
        return tensor
    sizes = [0] * world().size
    torch.distributed.all_gather_object(sizes, len(tensor))
    return _GatherRows.apply(tensor, sizes)


# ------------------------------------------------------------------------------------------------ scoring
def shard_blocks(n_blocks: int) -> list[int]:
    """The inference blocks this rank scores (every size-th, from its rank)."""
    if not together():
        return list(range(n_blocks))
    w = world()
    return list(range(w.rank, n_blocks, w.size))


def gather_blocks(blocks: dict[int, np.ndarray]) -> list[np.ndarray]:
    """Every rank's scored blocks, in block order (on every rank)."""
    if not together():
        return [blocks[i] for i in sorted(blocks)]
    every: list = [None] * world().size
    torch.distributed.all_gather_object(every, blocks)
    merged = {i: block for part in every for i, block in part.items()}
    return [merged[i] for i in sorted(merged)]


# ------------------------------------------------------------------------------------------------ SyncBatchNorm
class _SyncBatchNormFunction(torch.autograd.Function):
    """Batch norm with the global batch's statistics: one all-reduce of (sum, sum of squares, count) forward, one
    of (sum of dy, sum of dy * x_hat) backward; the normalisation itself is the fused `batch_norm` kernel. The
    weight and bias gradients are this rank's sums (DDP averages them, as every other parameter's)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float):  # noqa: ANN001
        channels, dims = x.shape[1], [0, *range(2, x.dim())]
        stats = torch.cat([x.sum(dims, dtype=torch.float64), (x * x).sum(dims, dtype=torch.float64),
                           torch.full((1,), float(x.numel() // channels), dtype=torch.float64, device=x.device)])
        torch.distributed.all_reduce(stats)
        count = stats[-1]
        mean = stats[:channels] / count
        variance = (stats[channels:2 * channels] / count - mean * mean).clamp_min(0)
        out = nn.functional.batch_norm(x, mean.to(x.dtype), variance.to(x.dtype), weight.to(x.dtype),
                                       bias.to(x.dtype), False, 0.0, eps)
        ctx.save_for_backward(x, weight, mean, torch.rsqrt(variance + eps))
        ctx.count = count
        ctx.mark_non_differentiable(mean, variance)
        return out, mean, variance, count

    @staticmethod
    def backward(ctx, grad: torch.Tensor, *unused):  # noqa: ANN001
        x, weight, mean, inverse_std = ctx.saved_tensors
        channels, dims = x.shape[1], [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        x_hat = (x - mean.to(x.dtype).view(shape)) * inverse_std.to(x.dtype).view(shape)
        sums = torch.cat([grad.sum(dims, dtype=torch.float64), (grad * x_hat).sum(dims, dtype=torch.float64)])
        grad_weight, grad_bias = sums[channels:].to(weight.dtype), sums[:channels].to(weight.dtype)
        torch.distributed.all_reduce(sums)
        mean_grad, mean_grad_x_hat = (sums / ctx.count).to(x.dtype).view(2, channels)
        grad_x = (grad - mean_grad.view(shape) - x_hat * mean_grad_x_hat.view(shape)) \
            * (inverse_std * weight).to(x.dtype).view(shape)
        return grad_x, grad_weight, grad_bias, None


class SyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm over the global batch, on any device (torch's `SyncBatchNorm` refuses CPU tensors): in training,
    the mean and variance of every rank's rows (`_SyncBatchNormFunction`), the running statistics updated as
    `BatchNorm1d` updates them; in eval mode, plain batch norm with the running statistics. Affine only (as
    every BatchNorm of ecgtl's models)."""

    def _check_input_dim(self, input: torch.Tensor) -> None:  # noqa: A002 (torch's name)
        if input.dim() not in (2, 3):
            raise ValueError(f"expected a 2-D or 3-D input, got {input.dim()}-D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        if not (self.training and together() and self.affine):
            return nn.functional.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                                            self.training, self.momentum or 0.0, self.eps)
        out, mean, variance, count = _SyncBatchNormFunction.apply(x, self.weight, self.bias, self.eps)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                unbiased = variance * count / torch.clamp(count - 1, min=1.0)
                self.running_mean.mul_(1 - factor).add_(factor * mean.to(self.running_mean.dtype))
                self.running_var.mul_(1 - factor).add_(factor * unbiased.to(self.running_var.dtype))
        return out


def _swap_batchnorm(module: nn.Module, to_sync: bool) -> nn.Module:
    source = nn.modules.batchnorm._BatchNorm if to_sync else SyncBatchNorm
    if isinstance(module, source) and (not to_sync or not isinstance(module, SyncBatchNorm)):
        swapped = (SyncBatchNorm if to_sync else nn.BatchNorm1d)(
            module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
        if module.affine:
            swapped.weight, swapped.bias = module.weight, module.bias  # the same Parameters: optimisers keep them
        swapped.running_mean, swapped.running_var = module.running_mean, module.running_var
        swapped.num_batches_tracked = module.num_batches_tracked
        swapped.train(module.training)
        return swapped
    for name, child in module.named_children():
        module.add_module(name, _swap_batchnorm(child, to_sync))
    return module


def sync_batchnorm(module: nn.Module) -> nn.Module:
    """Every BatchNorm of `module` as `SyncBatchNorm`, in place, keeping its parameters and statistics."""
    return _swap_batchnorm(module, True)


def plain_batchnorm(module: nn.Module) -> nn.Module:
    """Back to `BatchNorm1d` after training (bundles, folding and export know that one)."""
    return _swap_batchnorm(module, False)
