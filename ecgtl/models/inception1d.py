"""Inception1d: InceptionTime (Ismail Fawaz et al. 2020) as used on PTB-XL by Strodthoff et al. 2020:
six inception modules (bottleneck 32; kernels 39, 19, 9; a max-pool branch; 4 x 32 = 128 channels) with a
residual shortcut every three modules, and the concat-pooling head."""

from __future__ import annotations

import torch
from torch import nn

from ecgtl.models.base import EcgModel, conv_bn, init_kaiming


class InceptionModule(nn.Module):
    def __init__(self, n_in: int, filters: int = 32, kernels: tuple[int, ...] = (39, 19, 9), bottleneck: int = 32) -> None:
        super().__init__()
        self.bottleneck = nn.Conv1d(n_in, bottleneck, 1, bias=False) if n_in > 1 else nn.Identity()
        width = bottleneck if n_in > 1 else n_in
        self.convs = nn.ModuleList(nn.Conv1d(width, filters, k, padding=k // 2, bias=False) for k in kernels)
        self.pool = nn.Sequential(nn.MaxPool1d(3, stride=1, padding=1), nn.Conv1d(n_in, filters, 1, bias=False))
        self.bn_act = nn.Sequential(nn.BatchNorm1d(filters * (len(kernels) + 1)), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        squeezed = self.bottleneck(x)
        return self.bn_act(torch.cat([conv(squeezed) for conv in self.convs] + [self.pool(x)], dim=1))


class InceptionStage(nn.Module):
    """Three inception modules with a residual shortcut around them."""

    def __init__(self, n_in: int, n_out: int = 128) -> None:
        super().__init__()
        self.modules_ = nn.Sequential(InceptionModule(n_in), InceptionModule(n_out), InceptionModule(n_out))
        self.shortcut = conv_bn(n_in, n_out, 1, relu=False)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.modules_(x) + self.shortcut(x))


def inception1d(n_leads: int, n_classes: int) -> EcgModel:
    model = EcgModel([("inception1", InceptionStage(n_leads)), ("inception2", InceptionStage(128))], 128, n_classes)
    init_kaiming(model)
    return model
