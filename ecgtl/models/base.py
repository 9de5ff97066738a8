"""What every ecgtl model shares: named layer groups (head last) and the concat-pooling head.

Freezing and discriminative learning rates only ever talk to `layer_groups()` (fastai's idea), so they work
for any architecture. The head follows fastai's `create_head` as used by Strodthoff et al. 2020: concat
pooling (average and max over time), then BN-dropout-linear(128)-ReLU-BN-dropout-linear.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


class AdaptiveConcatPool1d(nn.Module):
    """[batch, channels, time] -> [batch, 2 * channels]: average and max over time, concatenated."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x.mean(dim=-1), x.amax(dim=-1)], dim=1)


def concat_pool_head(n_features: int, n_classes: int, hidden: int = 128, dropout: float = 0.5) -> nn.Sequential:
    return nn.Sequential(
        AdaptiveConcatPool1d(),
        nn.BatchNorm1d(2 * n_features), nn.Dropout(dropout / 2), nn.Linear(2 * n_features, hidden), nn.ReLU(inplace=True),
        nn.BatchNorm1d(hidden), nn.Dropout(dropout), nn.Linear(hidden, n_classes),
    )


class EcgModel(nn.Module):
    """A body of named groups followed by a replaceable head; `layer_groups()` lists them, head last."""

    def __init__(self, groups: list[tuple[str, nn.Module]], n_features: int, n_classes: int) -> None:
        super().__init__()
        self.architecture = ""  # the registry name, set by create_model
        self.group_names = [name for name, _ in groups]
        self.body = nn.ModuleDict(groups)
        self.n_features = n_features
        self.n_classes = n_classes
        self.head = concat_pool_head(n_features, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        for name in self.group_names:
            x = self.body[name](x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def layer_groups(self) -> list[tuple[str, nn.Module]]:
        return [(name, self.body[name]) for name in self.group_names] + [("head", self.head)]

    def init_head_bias(self, prevalence) -> None:
        """Start the output bias at the log prior odds of each class, so rare labels do not begin at p = 0.5."""
        p = torch.as_tensor(prevalence, dtype=torch.float32).clamp(1e-4, 1 - 1e-4)
        with torch.no_grad():
            self.head[-1].bias.copy_(torch.log(p / (1 - p)))

    def shift_head_bias(self, offsets) -> None:
        """Add per-class log-odds `offsets` to the output bias (a label-shift correction, see label_shift.py)."""
        with torch.no_grad():
            self.head[-1].bias.add_(torch.as_tensor(offsets, dtype=torch.float32))

    def set_head_dropout(self, dropout: float) -> None:
        """The head's dropout rates: `dropout / 2` after pooling, `dropout` before the output layer."""
        layers = [m for m in self.head if isinstance(m, nn.Dropout)]
        for layer, rate in zip(layers, (dropout / 2, dropout), strict=False):
            layer.p = rate

    def set_rate_scale(self, scale: float) -> None:
        """Read records whose sampling step is `scale` times the model's: only a continuous-time model can (S4D);
        a CNN's filters are fixed in samples, so records reach it at its own rate (`rate_policy=resample`)."""
        if scale != 1.0:
            from ecgtl.errors import EcgtlError

            raise EcgtlError(f"{self.architecture or type(self).__name__} reads records only at its own rate; "
                             "use rate_policy=resample (an S4D model can read other rates natively)")

    def for_export(self, input_length: int) -> EcgModel:  # noqa: ARG002 (a state-space model materialises kernels)
        """The model as exported for windows of `input_length` samples (itself, for a convolutional model)."""
        return self

    def architecture_config(self) -> dict | None:
        """What rebuilding this model needs besides its architecture's name (an imported model's configuration,
        kept in its bundle); None for the registered architectures."""
        return None

    def replace_head(self, n_classes: int) -> None:
        """A freshly initialised head for another label set (transfer to a new task)."""
        self.head = concat_pool_head(self.n_features, n_classes)
        self.n_classes = n_classes


def conv_bn(n_in: int, n_out: int, kernel: int, stride: int = 1, relu: bool = True, zero_bn: bool = False) -> nn.Sequential:
    """Conv1d (same padding) + BatchNorm (+ ReLU). `zero_bn` starts a residual branch at zero (He et al. 2019)."""
    bn = nn.BatchNorm1d(n_out)
    nn.init.constant_(bn.weight, 0.0 if zero_bn else 1.0)
    layers: list[nn.Module] = [nn.Conv1d(n_in, n_out, kernel, stride=stride, padding=kernel // 2, bias=False), bn]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def init_kaiming(module: nn.Module) -> None:
    for layer in module.modules():
        if isinstance(layer, nn.Conv1d):
            nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An inference copy with each Conv1d+BatchNorm1d pair (as built by `conv_bn`) fused into one Conv1d.

    Same outputs in eval mode (to float rounding), about 20% faster on CPU.
    """
    folded = copy.deepcopy(model).eval()
    for module in folded.modules():
        if isinstance(module, nn.Sequential) and len(module) >= 2 and isinstance(module[0], nn.Conv1d) \
                and isinstance(module[1], nn.BatchNorm1d):
            module[0] = fuse_conv_bn_eval(module[0], module[1])
            module[1] = nn.Identity()
    return folded
