"""S4D: diagonal state-space layers (Gu, Gupta, Goel & Ré 2022, "On the parameterization and initialization of
diagonal state space models") as an ecgtl encoder, in plain PyTorch (no custom kernels).

Each layer holds, for each of its H channels, a continuous-time system with N/2 complex modes,
x'(t) = A x(t) + B u(t), y(t) = 2 Re(C x(t)) + D u(t), B = 1, A_n = -1/2 + i·imag_n (S4D-Lin: imag_n = πn; S4D-Inv:
imag_n = N/π (N/(2n+1) - 1)), C complex normal, and a step dt (log-uniform in [0.001, 0.1]). Discretised by zero-
order hold with the step dt·scale, its convolution kernel is

    K[l] = 2 Re Σ_n C_n (exp(Δ A_n) - 1) / A_n · exp(Δ A_n l),   Δ = dt·scale,   l = 0 … L-1,

computed from the parameters for any length and applied by FFT (O(L log L), no recurrence; tested against the
recurrence). Classification is bidirectional: each channel has a kernel forward in time and one backward.

Rate: the system is defined in continuous time, so a record at another rate is read by the same weights with
the step scaled (`set_rate_scale(model_fs / record_fs)`), without resampling (`rate_policy=native`, tested on a
band-limited signal at 100 and 200 Hz). Export: `for_export(L)` materialises each layer's kernel for windows of
L samples as a depthwise convolution (ONNX has no complex numbers).

A block: LayerNorm → S4D → GELU → a pointwise linear layer with GLU → residual (pre-norm, as S4's classifiers).
Layer groups for unfreezing: `stem` (the pointwise input projection), `block1` … `blockK`, `head` (the concat-
pooling head of every ecgtl model).
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from ecgtl.models.base import EcgModel

SIZES = {"s4d_small": (128, 64, 4), "s4d": (256, 64, 6)}  # width H, state size N, layers


class S4DKernel(nn.Module):
    """The forward and backward kernels [2, H, L] of H channels from their continuous-time parameters."""

    def __init__(self, channels: int, state: int, init: str = "lin", dt_min: float = 1e-3, dt_max: float = 1e-1
                 ) -> None:
        super().__init__()
        modes = state // 2
        log_dt = torch.rand(channels) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        n = torch.arange(modes, dtype=torch.float32)
        imag = math.pi * n if init == "lin" else state / math.pi * (state / (2 * n + 1) - 1)
        self.log_dt = nn.Parameter(log_dt)
        self.log_neg_real = nn.Parameter(torch.log(0.5 * torch.ones(channels, modes)))  # Re(A) = -exp(.) < 0
        self.imag = nn.Parameter(imag.repeat(channels, 1))
        self.C = nn.Parameter(torch.randn(2, channels, modes, 2) * (0.5 ** 0.5))  # forward/backward, real/imag
        self.scale = 1.0  # the step's multiple: model rate / record rate

    def modes(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(A [H, M], the discretised step dtA [H, M], the ZOH-weighted C [2, H, M]), complex."""
        a = torch.complex(-torch.exp(self.log_neg_real.float()), self.imag.float())
        dt = torch.exp(self.log_dt.float()) * self.scale
        dta = a * dt[:, None]
        c = torch.view_as_complex(self.C.float().contiguous()) * (torch.exp(dta) - 1) / a
        return a, dta, c

    def forward(self, length: int) -> torch.Tensor:
        _, dta, c = self.modes()
        vandermonde = torch.exp(dta[..., None] * torch.arange(length, device=dta.device))  # [H, M, L]
        return 2 * torch.einsum("dhm,hml->dhl", c, vandermonde).real


def fft_convolve(u: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """u [B, H, L] convolved with a forward kernel (causal, delays 0 … L-1) and a backward one (anticausal,
    delays 1 … L), both [H, L]: one circular convolution of length 2L."""
    length = u.shape[-1]
    forward, backward = kernels
    combined = nn.functional.pad(forward, (0, length)) + nn.functional.pad(backward.flip(-1), (length, 0))
    spectrum = torch.fft.rfft(u.float(), n=2 * length) * torch.fft.rfft(combined, n=2 * length)
    return torch.fft.irfft(spectrum, n=2 * length)[..., :length]


class S4DLayer(nn.Module):
    def __init__(self, channels: int, state: int, dropout: float = 0.1, init: str = "lin") -> None:
        super().__init__()
        self.kernel = S4DKernel(channels, state, init)
        self.D = nn.Parameter(torch.randn(channels))
        self.norm = nn.LayerNorm(channels)
        self.activation = nn.GELU()
        self.dropout = nn.Dropout1d(dropout)  # a channel's mask tied over time (S4's DropoutNd): 1/L of the draws
        self.output = nn.Sequential(nn.Conv1d(channels, 2 * channels, 1), nn.GLU(dim=1))
        self.materialised: nn.Conv1d | None = None  # for_export's depthwise convolution

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.norm(x.transpose(1, 2)).transpose(1, 2)
        if self.materialised is not None:
            y = self.materialised(z)
        else:
            y = fft_convolve(z, self.kernel(z.shape[-1])).to(z.dtype)
        y = self.dropout(self.activation(y + z * self.D[:, None]))
        return x + self.dropout(self.output(y))

    def materialise(self, length: int) -> None:
        """The FFT convolution as a depthwise Conv1d of kernel 2L-1 for windows of `length` samples (export)."""
        forward, backward = self.kernel(length).detach()
        channels = forward.shape[0]
        conv = nn.Conv1d(channels, channels, 2 * length - 1, padding=length - 1, groups=channels, bias=False)
        with torch.no_grad():  # cross-correlation: weight[L-1-s] = forward[s], weight[L-1+s] = backward[s-1]
            conv.weight.copy_(torch.cat([forward.flip(-1), backward[:, :length - 1]], dim=-1)[:, None, :])
        self.materialised = conv


class S4DModel(EcgModel):
    """An EcgModel whose body is a pointwise stem and S4D layers, one layer group each."""

    def set_rate_scale(self, scale: float) -> None:
        """Read records whose sampling step is `scale` times the model's (model rate / record rate)."""
        for layer in self.modules():
            if isinstance(layer, S4DKernel):
                layer.scale = float(scale)

    def for_export(self, input_length: int) -> S4DModel:
        """A copy whose layers convolve with kernels materialised for windows of `input_length` samples."""
        exported = copy.deepcopy(self)
        for layer in exported.modules():
            if isinstance(layer, S4DLayer):
                layer.materialise(input_length)
        return exported


def s4d(name: str, n_leads: int, n_classes: int, init: str = "lin") -> S4DModel:
    channels, state, layers = SIZES[name]
    groups: list[tuple[str, nn.Module]] = [("stem", nn.Conv1d(n_leads, channels, 1))]
    groups += [(f"block{i + 1}", S4DLayer(channels, state, init=init)) for i in range(layers)]
    return S4DModel(groups, channels, n_classes)
