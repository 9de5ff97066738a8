"""Encoders from checkpoint files (`torch:PATH`): an ecgtl state dict, and Strodthoff et al.'s fastai XResNet1d
layout mapped key by key, with the same logits as the equivalent ecgtl model; what cannot be mapped or read is
one line; a mapped encoder fine-tunes through the stage with its file's digest on the run, version and card."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import use_mlflow_store
from torch import nn

from ecgtl.errors import EcgtlError
from ecgtl.models import create_model
from ecgtl.models.imported import load_imported


# The module layout of the PTB-XL benchmark's fastai XResNet1d (helme/ecg_ptbxl_benchmarking, code/models/
# xresnet1d.py), written here from its layer names: nn.Sequential(stem ConvLayer x3, MaxPool, 4 stages of ResBlocks,
# create_head1d with lin_ftrs=[128]); a ConvLayer is (conv, BN[, ReLU]); a ResBlock registers its convs twice.
def _conv_layer(n_in: int, n_out: int, kernel: int, stride: int = 1, relu: bool = True) -> nn.Sequential:
    layers = [nn.Conv1d(n_in, n_out, kernel, stride=stride, padding=(kernel - 1) // 2, bias=False),
              nn.BatchNorm1d(n_out)]
    return nn.Sequential(*layers, *([nn.ReLU()] if relu else []))


class _FastaiResBlock(nn.Module):
    def __init__(self, n_in: int, n_hidden: int, stride: int) -> None:
        super().__init__()
        n_out = 4 * n_hidden
        self.convs = nn.Sequential(_conv_layer(n_in, n_hidden, 1), _conv_layer(n_hidden, n_hidden, 5, stride),
                                   _conv_layer(n_hidden, n_out, 1, relu=False))
        self.convpath = nn.Sequential(self.convs)
        idpath: list[nn.Module] = [_conv_layer(n_in, n_out, 1, relu=False)] if n_in != n_out else []
        if stride != 1:
            idpath.insert(0, nn.AvgPool1d(2, ceil_mode=True))
        self.idpath = nn.Sequential(*idpath)

    def forward(self, x):
        return torch.relu(self.convpath(x) + self.idpath(x))


class _ConcatPoolMaxFirst(nn.Module):
    def forward(self, x):
        return torch.cat([x.amax(-1, keepdim=True), x.mean(-1, keepdim=True)], 1)


def _fastai_xresnet1d(blocks=(3, 4, 6, 3), n_classes: int = 5) -> nn.Sequential:
    stages, n_in = [], 64
    for i, count in enumerate(blocks):
        stage = []
        for b in range(count):
            stage.append(_FastaiResBlock(n_in, 64, 2 if i > 0 and b == 0 else 1))
            n_in = 256
        stages.append(nn.Sequential(*stage))
    head = nn.Sequential(_ConcatPoolMaxFirst(), nn.Flatten(), nn.BatchNorm1d(512), nn.Dropout(0.25),
                         nn.Linear(512, 128), nn.ReLU(), nn.BatchNorm1d(128), nn.Dropout(0.5), nn.Linear(128, n_classes))
    model = nn.Sequential(_conv_layer(12, 32, 5, 2), _conv_layer(32, 32, 5), _conv_layer(32, 64, 5),
                          nn.MaxPool1d(3, stride=2, padding=1), *stages, head)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # every tensor random, BatchNorm statistics too, so that a wrong mapping shows
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point():
                values = torch.rand(tensor.shape, generator=generator) + 0.5 if "running_var" in name else \
                    torch.randn(tensor.shape, generator=generator) * 0.1
                tensor.copy_(values)
    return model.eval()


@pytest.mark.parametrize(("blocks", "architecture"), [((3, 4, 6, 3), "xresnet1d50"), ((3, 4, 23, 3), "xresnet1d101")])
def test_a_fastai_xresnet1d_checkpoint_maps_every_weight_and_gives_the_same_logits(tmp_path, blocks, architecture):
    reference = _fastai_xresnet1d(blocks)
    path = tmp_path / "learner.pth"
    torch.save({"model": reference.state_dict(), "opt": {"state": {}, "param_groups": []}}, path)  # Learner.save
    imported = load_imported(f"torch:{path}")
    assert imported.architecture == architecture and imported.layout == "fastai-xresnet1d"
    assert imported.contract.fs == 100 and imported.contract.leads[:2] == ("I", "II")
    x = torch.randn(3, 12, 250)
    with torch.no_grad():
        expected, mapped = reference(x), imported.model.eval()(x)
    torch.testing.assert_close(mapped, expected, rtol=1e-4, atol=1e-5)


def test_an_ecgtl_state_dict_is_recognised_by_its_keys_and_shapes(tmp_path):
    torch.manual_seed(0)
    model = create_model("xresnet1d18", 7)
    torch.save(model.state_dict(), tmp_path / "weights.pt")
    imported = load_imported(f"torch:{tmp_path / 'weights.pt'}")
    assert imported.architecture == "xresnet1d18" and imported.contract.fs == 0  # no contract: the run's data stand
    for key, value in model.state_dict().items():
        assert torch.equal(imported.model.state_dict()[key], value), key


def test_what_cannot_be_mapped_or_read_is_one_line_naming_it(tmp_path):
    state = _fastai_xresnet1d().state_dict()
    missing = {k: v for k, v in state.items() if not k.endswith("5.1.convs.1.1.running_var")
               and k != "5.1.convpath.0.1.1.running_var"}
    torch.save(missing, tmp_path / "missing.pth")
    with pytest.raises(EcgtlError, match=r"missing.pth: 1 weight\(s\) of xresnet1d50 missing from the file, first "
                                         r"body.stage2.1.convs.1.1.running_var"):
        load_imported(f"torch:{tmp_path / 'missing.pth'}")
    torch.save({**state, "8.9.weight": torch.zeros(3)}, tmp_path / "extra.pth")
    with pytest.raises(EcgtlError, match="extra.pth: key 8.9.weight has no counterpart in ecgtl's XResNet1d"):
        load_imported(f"torch:{tmp_path / 'extra.pth'}")
    (tmp_path / "text.pth").write_text("not a checkpoint")
    with pytest.raises(EcgtlError, match="text.pth: not a readable PyTorch checkpoint"):
        load_imported(f"torch:{tmp_path / 'text.pth'}")
    with pytest.raises(EcgtlError, match="no such checkpoint file"):
        load_imported(f"torch:{tmp_path / 'absent.pth'}")
    torch.save({"layer.weight": torch.zeros(2)}, tmp_path / "other.pth")
    with pytest.raises(EcgtlError, match="other.pth: an unknown checkpoint layout"):
        load_imported(f"torch:{tmp_path / 'other.pth'}")


def test_a_fastai_checkpoint_fine_tunes_with_its_digest_on_the_run_the_version_and_the_card(tmp_path, monkeypatch):
    import hashlib

    import mlflow

    from ecgtl import runs, tracking
    from ecgtl.stages.configs import DataConfig, FinetuneConfig
    from ecgtl.stages.finetune import finetune
    from ecgtl.training.config import TrainConfig

    use_mlflow_store(monkeypatch, tmp_path, "imported", cache=True)
    path = tmp_path / "strodthoff.pth"
    torch.save(_fastai_xresnet1d().state_dict(), path)
    data = DataConfig(spec="synthetic:g12ec?n=80&seed=5")
    with pytest.raises(EcgtlError, match=r"reads records at 100 Hz; data asks for 250 Hz: pass --data.fs 100"):
        finetune(FinetuneConfig(data=DataConfig(spec=data.spec, fs=250), pretrained=f"torch:{path}"))
    with pytest.raises(EcgtlError, match="an imported encoder has no head for these classes; use head=new"):
        finetune(FinetuneConfig(data=data, pretrained=f"torch:{path}", head="reuse"))
    assert mlflow.search_runs(search_all_experiments=True).empty  # refused before any run was opened
    result = finetune(FinetuneConfig(data=data, pretrained=f"torch:{path}", n_bootstrap=20,
                                     train=TrainConfig(epochs=2, batch_size=16, schedule="gradual")))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    run = mlflow.MlflowClient().get_run(result.run_id)
    assert run.data.tags[runs.PRETRAINED_DIGEST] == digest and run.data.tags[runs.SOURCE] == "torch:strodthoff.pth"
    assert run.data.tags[runs.PRETRAINED_LAYOUT] == "fastai-xresnet1d" and 0 <= result.metrics["test_macro_auc"] <= 1
    version = mlflow.MlflowClient().get_model_version_by_alias("ecgtl-finetuned", "champion")
    assert version.tags[runs.PRETRAINED_DIGEST] == digest
    card = Path(tracking.download_artifact(result.run_id, "model_card.md")).read_text()
    assert f"Started from `torch:{path.resolve()}` (fastai-xresnet1d layout, digest `{digest}`)" in card
