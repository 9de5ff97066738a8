"""The contrastive objective: its loss, its augmentations, that it learns on a tiny synthetic set, leaves the
head alone, and resumes to the same result; the frozen baselines leave every encoder weight as it was."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ecgtl.data.dataset import valid_lengths
from ecgtl.models import create_model
from ecgtl.pipeline import InputPipeline
from ecgtl.training.augment import augment
from ecgtl.training.config import TrainConfig
from ecgtl.training.objectives import encoder_groups, fit_contrastive, nt_xent


def test_nt_xent_is_low_for_matching_views_and_high_for_random_ones():
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(16, 32, generator=generator)
    matched = nt_xent(a, a + 0.01 * torch.randn(16, 32, generator=generator), temperature=0.1)
    shuffled = nt_xent(a, torch.randn(16, 32, generator=generator), temperature=0.1)
    assert matched < 0.1 and shuffled > np.log(31) * 0.5  # chance level is log(2n - 1)


def test_augment_is_reproducible_keeps_a_lead_and_leaves_its_input():
    x = torch.randn(8, 12, 250)
    before = x.clone()
    one = augment(x, 100.0, torch.Generator().manual_seed(3))
    two = augment(x, 100.0, torch.Generator().manual_seed(3))
    assert torch.equal(one, two) and torch.equal(x, before) and not torch.equal(one, x)
    assert ((one.abs().sum(dim=-1) > 0).sum(dim=1) >= 1).all()


def _pipeline(prepared):
    train = prepared.split("train")
    return InputPipeline(fs=100.0).fit_scaler(train.signals, valid_lengths(train))


def test_contrastive_loss_decreases_and_the_head_never_moves(prepared_tiny):
    torch.manual_seed(0)
    model = create_model("xresnet1d18", 18)
    head = {k: v.clone() for k, v in model.head.state_dict().items()}
    encoder = {k: v.clone() for k, v in model.body.state_dict().items()}
    config = TrainConfig(epochs=6, batch_size=16, lr=3e-3)
    result = fit_contrastive(model, prepared_tiny.split("train"), prepared_tiny.split("val"), config,
                             _pipeline(prepared_tiny), probe_every=3, progress=False)
    losses = [h.train_loss for h in result.history]
    assert np.mean(losses[-2:]) < losses[0] - 0.1, losses
    assert all(torch.equal(v, model.head.state_dict()[k]) for k, v in head.items())  # head excluded
    assert any(not torch.equal(v, model.body.state_dict()[k]) for k, v in encoder.items())
    assert np.isfinite(result.history[2].val_macro_auc) and np.isnan(result.history[0].val_macro_auc)
    assert len(encoder_groups(model)) == len(model.layer_groups()) - 1


def test_contrastive_training_resumes_to_the_same_weights(prepared_tiny, tmp_path):
    config = TrainConfig(epochs=2, batch_size=16, lr=3e-3)
    train, val, pipeline = prepared_tiny.split("train"), prepared_tiny.split("val"), _pipeline(prepared_tiny)
    torch.manual_seed(0)
    whole = create_model("xresnet1d18", 18)
    fit_contrastive(whole, train, val, config, pipeline, probe_every=0, progress=False)
    torch.manual_seed(0)
    killed = create_model("xresnet1d18", 18)
    fit_contrastive(killed, train, val, config, pipeline, probe_every=0, progress=False,
                    checkpoint_path=tmp_path / "c.pt", stop_after_epoch=0)
    torch.manual_seed(5)  # another start: everything must come from the checkpoint
    resumed = create_model("xresnet1d18", 18)
    result = fit_contrastive(resumed, train, val, config, pipeline, probe_every=0, progress=False,
                             checkpoint_path=tmp_path / "c.pt", resume=True)
    assert [h.epoch for h in result.history] == [0, 1]
    for key, value in whole.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key


@pytest.mark.parametrize("init_encoder", ["pretrained", "random"])
def test_frozen_baselines_leave_every_encoder_weight_unchanged(prepared_tiny, init_encoder):
    """The frozen schedule with BatchNorm in eval mode: weights and running statistics bit for bit."""
    from ecgtl.training.loop import fit

    torch.manual_seed(1)
    model = create_model("xresnet1d18", 18)
    if init_encoder == "pretrained":  # any trained encoder: a step of supervised training first
        fit(model, prepared_tiny.split("train"), prepared_tiny.split("val"), TrainConfig(epochs=1, batch_size=16),
            _pipeline(prepared_tiny), progress=False)
    model.replace_head(18)
    encoder = {k: v.clone() for k, v in model.body.state_dict().items()}
    head = {k: v.clone() for k, v in model.head.state_dict().items()}
    fit(model, prepared_tiny.split("train"), prepared_tiny.split("val"),
        TrainConfig(epochs=2, batch_size=16, schedule="frozen", frozen_bn="eval", weight_decay=0.1),
        _pipeline(prepared_tiny), progress=False)
    assert all(torch.equal(v, model.body.state_dict()[k]) for k, v in encoder.items())
    assert any(not torch.equal(v, model.head.state_dict()[k]) for k, v in head.items())
