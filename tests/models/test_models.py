"""Architectures: output shapes, named layer groups (head last), head replacement, parameter counts."""

from __future__ import annotations

import pytest
import torch

from ecgtl.errors import EcgtlError
from ecgtl.models import MODEL_BUILDERS, count_parameters, create_model


@pytest.mark.parametrize("name", list(MODEL_BUILDERS))
def test_forward_shape_and_layer_groups(name):
    model = create_model(name, n_classes=5).eval()
    assert model(torch.randn(3, 12, 250)).shape == (3, 5)
    groups = model.layer_groups()
    assert groups[-1][0] == "head" and len(groups) >= 3
    # The groups partition the parameters: nothing is missed or counted twice.
    assert sum(count_parameters(m) for _, m in groups) == count_parameters(model)
    model.replace_head(7)
    assert model(torch.randn(2, 12, 250)).shape == (2, 7)


def test_xresnet1d101_size_matches_the_ptbxl_benchmark():
    assert 1.7e6 < count_parameters(create_model("xresnet1d101", 71)) < 2.0e6


def test_head_bias_starts_at_prior_log_odds():
    model = create_model("xresnet1d18", 2)
    model.init_head_bias([0.5, 0.01])
    bias = model.head[-1].bias.detach()
    assert bias[0].item() == pytest.approx(0.0, abs=1e-6) and bias[1].item() == pytest.approx(-4.595, abs=1e-3)


def test_unknown_model():
    with pytest.raises(EcgtlError, match="model must be one of xresnet1d18, .*; got 'vgg'"):
        create_model("vgg", 3)
