"""XResNet1d: fastai's xresnet ("Bag of tricks", He et al. 2019) in 1-D, as benchmarked on PTB-XL by
Strodthoff et al. 2020: a 3-conv stem, kernel size 5, average-pool shortcuts, zero-initialised last BN per
block, and bottleneck width 64 in every stage (so xresnet1d101 has about 1.8 M parameters)."""

from __future__ import annotations

import torch
from torch import nn

from ecgtl.models.base import EcgModel, conv_bn, init_kaiming

LAYERS = {"xresnet1d18": (1, [2, 2, 2, 2]), "xresnet1d34": (1, [3, 4, 6, 3]),
          "xresnet1d50": (4, [3, 4, 6, 3]), "xresnet1d101": (4, [3, 4, 23, 3])}


class ResBlock1d(nn.Module):
    def __init__(self, expansion: int, n_in: int, n_hidden: int, stride: int, kernel: int) -> None:
        super().__init__()
        n_out = n_hidden * expansion
        if expansion == 1:
            self.convs = nn.Sequential(conv_bn(n_in, n_hidden, kernel, stride),
                                       conv_bn(n_hidden, n_out, kernel, relu=False, zero_bn=True))
        else:
            self.convs = nn.Sequential(conv_bn(n_in, n_hidden, 1), conv_bn(n_hidden, n_hidden, kernel, stride),
                                       conv_bn(n_hidden, n_out, 1, relu=False, zero_bn=True))
        shortcut: list[nn.Module] = []
        if stride != 1:
            shortcut.append(nn.AvgPool1d(2, ceil_mode=True))
        if n_in != n_out:
            shortcut.append(conv_bn(n_in, n_out, 1, relu=False))
        self.shortcut = nn.Sequential(*shortcut)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.convs(x) + self.shortcut(x))


def xresnet1d(name: str, n_leads: int, n_classes: int, kernel: int = 5, width: int = 64) -> EcgModel:
    expansion, layers = LAYERS[name]
    stem = nn.Sequential(conv_bn(n_leads, 32, kernel, stride=2), conv_bn(32, 32, kernel), conv_bn(32, 64, kernel),
                         nn.MaxPool1d(3, stride=2, padding=1))
    groups: list[tuple[str, nn.Module]] = [("stem", stem)]
    n_in = 64
    for i, n_blocks in enumerate(layers):
        blocks = []
        for b in range(n_blocks):
            stride = 2 if (i > 0 and b == 0) else 1
            blocks.append(ResBlock1d(expansion, n_in, width, stride, kernel))
            n_in = width * expansion
        groups.append((f"stage{i + 1}", nn.Sequential(*blocks)))
    model = EcgModel(groups, n_in, n_classes)
    init_kaiming(model)
    return model
