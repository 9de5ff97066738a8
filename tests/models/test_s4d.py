"""S4D: the kernel is the discretised system's recurrence, the FFT convolution is the bidirectional sum it stands
for, the materialised (export) form computes the same, and a step-scaled model reads a record at 200 Hz as the
same model reads it at 100 Hz."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ecgtl.errors import EcgtlError
from ecgtl.models import create_model
from ecgtl.models.s4d import S4DKernel, fft_convolve


def test_the_kernel_equals_the_recurrence_of_the_discretised_system():
    torch.manual_seed(0)
    kernel = S4DKernel(channels=3, state=16, init="inv")
    length = 64
    u = torch.randn(3, length, dtype=torch.float64)
    a, dta, c_zoh = (t.detach().to(torch.complex128) for t in kernel.modes())
    c = torch.view_as_complex(kernel.C.detach().double().contiguous())[0]  # the forward direction's C
    b_bar = (torch.exp(dta) - 1) / a
    state = torch.zeros_like(a)
    recurrence = []
    for k in range(length):  # x_k = exp(dt A) x_{k-1} + B̄ u_k,  y_k = 2 Re(C x_k)
        state = torch.exp(dta) * state + b_bar * u[:, k:k + 1]
        recurrence.append(2 * (c * state).sum(-1).real)
    recurrence = torch.stack(recurrence, dim=-1)
    forward = kernel(length)[0].detach().double()
    convolution = torch.stack([torch.stack([(forward[h, :t + 1].flip(-1) * u[h, :t + 1]).sum() for t in range(length)])
                               for h in range(3)])
    assert float((convolution - recurrence).abs().max()) <= 1e-5 * float(recurrence.abs().max())
    assert torch.allclose(c_zoh[0], c * b_bar, rtol=1e-4, atol=1e-6)  # the ZOH-weighted C the kernel uses


def test_the_fft_convolution_is_the_forward_and_backward_sum():
    torch.manual_seed(1)
    length = 20
    u = torch.randn(2, 3, length)
    kernels = torch.randn(2, 3, length)
    got = fft_convolve(u, kernels)
    expected = torch.zeros_like(u)
    for t in range(length):
        for s in range(t + 1):  # causal: delays 0 ... t
            expected[..., t] += kernels[0, :, s] * u[..., t - s]
        for s in range(1, length - t):  # anticausal: delays 1 ... L-1-t
            expected[..., t] += kernels[1, :, s - 1] * u[..., t + s]
    assert torch.allclose(got, expected, atol=1e-5)


def test_the_materialised_export_form_computes_what_the_fft_computes():
    torch.manual_seed(2)
    model = create_model("s4d_small", 5).eval()
    x = torch.randn(3, 12, 250)
    exported = model.for_export(250).eval()
    assert torch.allclose(exported(x), model(x), atol=1e-4)
    assert create_model("xresnet1d18", 5).for_export(250) is not None  # a CNN exports as it is


def _band_limited(fs: float, seconds: float = 10.0) -> np.ndarray:
    """12 leads of slow sinusoids (below 3 Hz), the same continuous signal at any rate."""
    t = np.arange(int(seconds * fs)) / fs
    rng = np.random.default_rng(0)
    frequencies, phases, weights = rng.uniform(0.3, 3, (12, 4)), rng.uniform(0, 6.28, (12, 4)), rng.normal(0, 1, (12, 4))
    return (weights[..., None] * np.sin(2 * np.pi * frequencies[..., None] * t + phases[..., None])).sum(1)


def test_a_step_scaled_model_reads_a_record_at_twice_the_rate_as_it_reads_it_at_its_own():
    torch.manual_seed(3)
    model = create_model("s4d_small", 4).eval()
    at_100 = torch.tensor(_band_limited(100.0)[None], dtype=torch.float32)
    at_200 = torch.tensor(_band_limited(200.0)[None], dtype=torch.float32)
    with torch.no_grad():
        reference = model.features(at_100)
        model.set_rate_scale(0.5)  # the model's rate / the record's
        native = model.features(at_200)[..., ::2]
        model.set_rate_scale(1.0)
        unscaled = model.features(at_200)[..., ::2]
    error = float((native - reference).abs().mean() / reference.abs().mean())
    assert error < 0.05, error  # stated tolerance: 5 % of the mean feature, on a band-limited record
    assert error < float((unscaled - reference).abs().mean() / reference.abs().mean()) / 2  # the scale is what helps


def test_a_cnn_refuses_to_read_another_rate_natively():
    with pytest.raises(EcgtlError, match="reads records only at its own rate; use rate_policy=resample"):
        create_model("xresnet1d18", 4).set_rate_scale(0.5)
