"""The contrastive objective: its loss, its augmentations, that it learns on a tiny synthetic set, leaves the head
alone and keeps its best epoch by validation loss (what every objective shares, resume and the rest, is in
test_engine.py); the frozen baselines leave every encoder weight as it was."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ecgtl.data.dataset import valid_lengths
from ecgtl.models import create_model
from ecgtl.pipeline import InputPipeline
from ecgtl.training.augment import augment
from ecgtl.training.config import TrainConfig
from ecgtl.training.loop import fit
from ecgtl.training.objectives.contrastive import Contrastive, nt_xent


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


def test_contrastive_loss_decreases_the_head_never_moves_and_the_probe_runs_when_asked(prepared_tiny):
    torch.manual_seed(0)
    model = create_model("xresnet1d18", 18)
    head = {k: v.clone() for k, v in model.head.state_dict().items()}
    encoder = {k: v.clone() for k, v in model.body.state_dict().items()}
    config = TrainConfig(epochs=6, batch_size=16, lr=3e-3)
    train = prepared_tiny.split("train")
    objective = Contrastive(probe_every=3, probe=(train, np.arange(len(train))))
    result = fit(model, train, prepared_tiny.split("val"), config, _pipeline(prepared_tiny), objective, progress=False)
    losses = [h.train_loss for h in result.history]
    assert np.mean(losses[-2:]) < losses[0] - 0.1, losses
    assert all(torch.equal(v, model.head.state_dict()[k]) for k, v in head.items())  # head excluded
    assert any(not torch.equal(v, model.body.state_dict()[k]) for k, v in encoder.items())
    assert np.isfinite(result.history[2].val_macro_auc) and np.isnan(result.history[0].val_macro_auc)
    assert [name for name, _ in objective.layer_groups(model)] == [*model.group_names, "projection"]
    # the best epoch is the one with the lowest validation loss (the signal), and the model ends in it
    assert result.best_epoch == int(np.argmin([h.val_loss for h in result.history]))


@pytest.mark.parametrize("init_encoder", ["pretrained", "random"])
def test_frozen_baselines_leave_every_encoder_weight_unchanged(prepared_tiny, init_encoder):
    """The frozen schedule with BatchNorm in eval mode: weights and running statistics bit for bit."""
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
