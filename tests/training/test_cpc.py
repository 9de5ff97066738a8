"""Contrastive predictive coding: the InfoNCE's positive and negatives, the pairing of each prediction with the
segment it predicts, a context that never sees the future, that it learns on a tiny synthetic set with a CNN and
with S4D, ranks its epochs by the linear probe, and refuses settings it cannot honour (what every objective
shares, precision, resume, patience and the rest, is in test_engine.py)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from ecgtl.data.dataset import valid_lengths
from ecgtl.errors import EcgtlError
from ecgtl.models import create_model
from ecgtl.pipeline import InputPipeline
from ecgtl.stages.configs import DataConfig, PretrainConfig
from ecgtl.training.config import TrainConfig
from ecgtl.training.loop import fit
from ecgtl.training.objectives.cpc import CPC, Predictive, PredictiveNetwork, cpc_loss, info_nce


def test_info_nce_scores_each_prediction_against_its_own_future_and_the_other_records_only():
    generator = torch.Generator().manual_seed(0)
    predicted, future = torch.randn(3, 5, 8, generator=generator), torch.randn(3, 5, 8, generator=generator)
    expected = []
    for t in range(3):
        for i in range(5):
            scores = torch.stack([predicted[t, i] @ future[t, j] for j in range(5)]) / np.sqrt(8)
            negatives = [j for j in range(5) if j != i]  # every other record, never record i itself
            expected.append(-scores[i] + torch.logsumexp(torch.cat([scores[i:i + 1], scores[negatives]]), dim=0))
    assert torch.allclose(info_nce(predicted, future), torch.stack(expected).mean(), atol=1e-6)


def test_info_nce_is_near_zero_for_exact_predictions_and_high_when_records_are_swapped():
    future = 20 * torch.eye(8)[None].repeat(2, 1, 1)  # 8 records with orthogonal futures, 2 positions
    assert info_nce(future, future) < 1e-3
    assert info_nce(future.roll(1, dims=1), future) > 10  # each prediction matches another record's future


def test_each_prediction_is_paired_with_the_segment_k_steps_ahead():
    batch, n, steps, dim = 6, 7, 3, 16
    z = 10 * torch.nn.functional.normalize(torch.randn(batch, n, dim, generator=torch.Generator().manual_seed(1)),
                                           dim=-1) * np.sqrt(dim)
    aligned = torch.zeros(batch, n, steps, dim)
    shifted = torch.zeros(batch, n, steps, dim)
    for k in range(1, steps + 1):
        aligned[:, :n - k, k - 1] = z[:, k:]  # c_t's k-th guess is z_{t+k}
        shifted[:, :n - k, k - 1] = z[:, k - 1:n - 1]  # one segment too early
    assert cpc_loss(torch.cat([z[:, :, None], aligned], dim=2)) < 0.01
    assert cpc_loss(torch.cat([z[:, :, None], shifted], dim=2)) > 1.0


@pytest.mark.parametrize("architecture", ["xresnet1d18", "s4d_small"])
def test_segments_are_encoded_alone_and_the_context_never_sees_the_future(architecture):
    torch.manual_seed(0)
    model = create_model(architecture, 5).eval()
    network = PredictiveNetwork(model, Predictive(model.n_features, 2).eval(), segment=25)
    x = torch.randn(4, 12, 250)
    changed = x.clone()
    changed[..., 200:] = torch.randn(4, 12, 50)  # the last two segments (8 and 9)
    with torch.no_grad():
        before, after = network(x), network(changed)
    assert before.shape == (4, 10, 3, 256)
    assert torch.allclose(before[:, :8], after[:, :8], atol=1e-5)  # z_t, c_t and its guesses for t < 8
    assert not torch.allclose(before[:, 8:, 0], after[:, 8:, 0], atol=1e-3)


def _pipeline(prepared) -> InputPipeline:
    train = prepared.split("train")
    return InputPipeline(fs=100.0).fit_scaler(train.signals, valid_lengths(train))


@pytest.mark.parametrize("architecture", ["xresnet1d18", "s4d_small"])
def test_cpc_loss_decreases_the_head_never_moves_and_the_probe_picks_the_best_epoch(prepared_tiny, architecture):
    torch.manual_seed(0)
    model = create_model(architecture, 18)
    head = {k: v.clone() for k, v in model.head.state_dict().items()}
    train = prepared_tiny.split("train")
    objective = CPC(segment_s=0.25, steps=3, probe_every=2, probe=(train, np.arange(len(train))))
    config = TrainConfig(epochs=6, batch_size=16, lr=3e-3)
    result = fit(model, train, prepared_tiny.split("val"), config, _pipeline(prepared_tiny), objective, progress=False)
    losses = [h.train_loss for h in result.history]
    assert np.mean(losses[-2:]) < losses[0] - 0.1, losses
    assert losses[0] < np.log(16) + 0.5  # InfoNCE starts near chance: log(batch)
    assert all(torch.equal(v, model.head.state_dict()[k]) for k, v in head.items())
    probes = [h.val_macro_auc for h in result.history]
    assert np.isnan(probes[0]) and np.isfinite(probes[1])
    assert result.best_epoch == int(np.nanargmax(probes)) and result.best_signal == np.nanmax(probes)
    assert [name for name, _ in objective.layer_groups(model)] == [*model.group_names, "predictive"]


def test_cpc_refuses_segments_that_do_not_fit_and_frequency_domain_inputs():
    config = PretrainConfig(objective="cpc")
    CPC.check_pretraining(config)
    with pytest.raises(EcgtlError, match=r"cpc_segment_s 0.05 s is 5 samples at 100 Hz; an encoder needs at least 8"):
        CPC.check_pretraining(replace(config, cpc_segment_s=0.05))
    with pytest.raises(EcgtlError, match=r"a 2.5 s crop holds 10 segments of 0.25 s; predicting cpc_steps 12 ahead "
                                         r"needs 13 \(lengthen train.crop_s or shorten cpc_segment_s\)"):
        CPC.check_pretraining(replace(config, cpc_steps=12))
    with pytest.raises(EcgtlError, match="objective=cpc predicts future segments of time signals; data.domain=fft_abs"):
        CPC.check_pretraining(replace(config, data=DataConfig(domain="fft_abs")))
