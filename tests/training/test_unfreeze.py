"""Schedules' unfreeze timelines, discriminative lrs, and that frozen parameters really do not move."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ecgtl.errors import EcgtlError
from ecgtl.training.unfreeze import discriminative_lrs, schedule_timeline, trainable_mask

T, F = True, False


def test_full():
    assert schedule_timeline("full", 3, 2) == [[T, T, T], [T, T, T]]


def test_two_stage():
    assert schedule_timeline("two_stage", 3, 4, epochs_per_stage=2) == [[F, F, T], [F, F, T], [T, T, T], [T, T, T]]


def test_gradual_unfreezes_one_more_group_from_the_top_every_k_epochs():
    assert schedule_timeline("gradual", 4, 6, epochs_per_stage=1) == [
        [F, F, F, T], [F, F, T, T], [F, T, T, T], [T, T, T, T], [T, T, T, T], [T, T, T, T]]
    assert schedule_timeline("gradual", 3, 4, epochs_per_stage=2) == [[F, F, T], [F, F, T], [F, T, T], [F, T, T]]


def test_chain_thaw_trains_each_group_alone_then_all():
    assert schedule_timeline("chain_thaw", 3, 5) == [[F, F, T], [T, F, F], [F, T, F], [T, T, T], [T, T, T]]


def test_frozen_trains_only_the_head_at_every_epoch():
    assert schedule_timeline("frozen", 3, 3, epochs_per_stage=2) == [[F, F, T], [F, F, T], [F, F, T]]


def test_unknown_schedule():
    with pytest.raises(EcgtlError, match="schedule must be one of full, two_stage, gradual, chain_thaw, frozen"):
        trainable_mask("sometimes", 3, 0)


def test_discriminative_lrs():
    np.testing.assert_allclose(discriminative_lrs(1e-2, 2.0, 4), [1.25e-3, 2.5e-3, 5e-3, 1e-2])
    assert discriminative_lrs(1e-3, 1.0, 3) == [1e-3] * 3


def test_frozen_groups_get_no_gradient_and_do_not_change(prepared_tiny):
    from ecgtl.data.dataset import LeadScaler
    from ecgtl.models import create_model
    from ecgtl.pipeline import InputPipeline
    from ecgtl.training.config import TrainConfig
    from ecgtl.training.loop import fit

    torch.manual_seed(0)
    model = create_model("xresnet1d18", len(prepared_tiny.classes))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train, val = prepared_tiny.split("train"), prepared_tiny.split("val")
    seen_grads = []

    def spy(result):
        seen_grads.append({name: any(p.grad is not None for p in module.parameters()) for name, module in model.layer_groups()})

    config = TrainConfig(epochs=1, batch_size=16, schedule="two_stage", epochs_per_stage=1, frozen_bn="eval")
    fit(model, train, val, config, InputPipeline(fs=prepared_tiny.fs, scaler=LeadScaler.fit(train.signals)), on_epoch=spy,
        progress=False)
    after = model.state_dict()
    body_keys = [k for k in before if not k.startswith("head.")]
    head_keys = [k for k in before if k.startswith("head.") and before[k].dtype.is_floating_point]
    assert all(torch.equal(before[k], after[k]) for k in body_keys)  # weights and BN running stats
    assert any(not torch.equal(before[k], after[k]) for k in head_keys)
    assert seen_grads[0]["head"] and not any(v for k, v in seen_grads[0].items() if k != "head")


def test_frozen_batchnorm_can_keep_training(prepared_tiny):
    from ecgtl.data.dataset import LeadScaler
    from ecgtl.models import create_model
    from ecgtl.pipeline import InputPipeline
    from ecgtl.training.config import TrainConfig
    from ecgtl.training.loop import fit

    model = create_model("xresnet1d18", len(prepared_tiny.classes))
    stem_mean = model.body["stem"][0][1].running_mean.clone()
    train, val = prepared_tiny.split("train"), prepared_tiny.split("val")
    config = TrainConfig(epochs=1, batch_size=16, schedule="two_stage", frozen_bn="train")
    fit(model, train, val, config, InputPipeline(fs=prepared_tiny.fs, scaler=LeadScaler.fit(train.signals)), progress=False)
    assert not torch.equal(stem_mean, model.body["stem"][0][1].running_mean)
    assert all(not p.requires_grad for p in model.body["stem"].parameters())


def test_gradual_can_unfreeze_several_groups_per_step():
    assert schedule_timeline("gradual", 5, 4, epochs_per_stage=1, groups_per_stage=2) == [
        [F, F, F, F, T], [F, F, T, T, T], [T, T, T, T, T], [T, T, T, T, T]]


def test_head_learning_rate_multiplier():
    np.testing.assert_allclose(discriminative_lrs(1e-2, 2.0, 3, head_lr_mult=5.0), [2.5e-3, 5e-3, 5e-2])
