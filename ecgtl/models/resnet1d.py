"""ResNet1d after Wang, Yan & Oates 2017 ("Time series classification from scratch with deep neural networks:
a strong baseline"): three residual blocks of three convolutions (kernels 8, 5, 3; 64, 128, 128 filters),
with the concat-pooling head used throughout ecgtl."""

from __future__ import annotations

import torch
from torch import nn

from ecgtl.models.base import EcgModel, conv_bn, init_kaiming


class WangBlock(nn.Module):
    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.convs = nn.Sequential(conv_bn(n_in, n_out, 7), conv_bn(n_out, n_out, 5), conv_bn(n_out, n_out, 3, relu=False))
        self.shortcut = conv_bn(n_in, n_out, 1, relu=False) if n_in != n_out else nn.BatchNorm1d(n_out)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.convs(x) + self.shortcut(x))


def resnet1d_wang(n_leads: int, n_classes: int) -> EcgModel:
    # Kernel 8 of the paper is written 7 so that "same" padding keeps the length exactly.
    groups = [("block1", WangBlock(n_leads, 64)), ("block2", WangBlock(64, 128)), ("block3", WangBlock(128, 128))]
    model = EcgModel(groups, 128, n_classes)
    init_kaiming(model)
    return model
