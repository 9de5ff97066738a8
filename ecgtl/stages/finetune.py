"""Fine-tune a pretrained model on the target dataset, or train the same model from scratch (the baseline).

Both go through one code path; `init` decides where the weights start. A pretrained model is taken from a
model URI (default `models:/ecgtl-pretrained@champion`); if that does not exist yet, pretraining on the
default source runs first, as a nested run.
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from ecgtl import tracking
from ecgtl.config import flatten
from ecgtl.data.lineage import TrainingRecords
from ecgtl.data.sources import parse_spec
from ecgtl.errors import EcgtlError
from ecgtl.inference import load_bundle
from ecgtl.models import create_model
from ecgtl.stages.common import (
    DEFAULT_TARGET,
    DataConfig,
    StageResult,
    load_data,
    run_name,
    stage_tags,
    train_and_report,
)
from ecgtl.stages.pretrain import REGISTERED_PRETRAINED, PretrainConfig, pretrain
from ecgtl.training.loop import TrainConfig

DEFAULT_PRETRAINED = f"models:/{REGISTERED_PRETRAINED}@champion"
REGISTERED = {"pretrained": "ecgtl-finetuned", "scratch": "ecgtl-scratch"}


@dataclass(frozen=True)
class FinetuneConfig:
    data: DataConfig = field(default_factory=lambda: DataConfig(spec=DEFAULT_TARGET))
    init: str = "pretrained"
    pretrained: str = DEFAULT_PRETRAINED
    model: str = "xresnet1d50"
    head: str = "new"
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        epochs=10, lr=1e-2, schedule="gradual", epochs_per_stage=1, decay=2.6))
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    n_bootstrap: int = 1000

    def validate(self) -> FinetuneConfig:
        if self.init not in REGISTERED:
            raise EcgtlError(f"init must be 'pretrained' or 'scratch', got {self.init!r}")
        if self.head not in ("new", "reuse"):
            raise EcgtlError(f"head must be 'new' or 'reuse', got {self.head!r}")
        self.train.validate()
        return self


def scratch_config(config: FinetuneConfig) -> FinetuneConfig:
    """The fair baseline: same data, model, epochs and lr, random initialisation, everything trainable."""
    return replace(config, init="scratch", train=replace(config.train, schedule="full", decay=1.0))


def finetune(config: FinetuneConfig, nested: bool = False, resume_run_id: str | None = None) -> StageResult:
    config.validate()
    tracking.configure()
    stage = "finetune" if config.init == "pretrained" else "scratch"
    prepared, rows = load_data(config.data, config.train.seed)
    target = parse_spec(config.data.spec).short_name
    architecture = config.model
    pretrained_uri = config.pretrained if config.init == "pretrained" else ""
    source = "none"
    new_head = True
    inherited: list[TrainingRecords] = []
    with tempfile.TemporaryDirectory() as tmp:
        name = run_name(stage, architecture, config.data, config.train.seed)
        tags = stage_tags(stage, config.init, source, target, config.data, config.train, config)
        with tracking.stage_run(name, tags, flatten(config), nested=nested, run_id=resume_run_id) as run_id:
            if config.init == "pretrained":
                if not tracking.model_exists(pretrained_uri):
                    if pretrained_uri != DEFAULT_PRETRAINED:
                        raise EcgtlError(f"{pretrained_uri}: no such model in {tracking.tracking_uri()}")
                    print(f"{pretrained_uri} does not exist yet: pretraining on {config.pretrain.data.spec} first "
                          "(nested run)", file=sys.stderr)
                    pretrained_uri = pretrain(config.pretrain, nested=True).model_uri
                model, info = load_bundle(tracking.download_model(pretrained_uri, Path(tmp)))
                torch.manual_seed(config.train.seed)  # a new head starts the same way in every run
                if info.fs != prepared.fs:
                    raise EcgtlError(f"the pretrained model expects {info.fs:g} Hz but data.fs is {prepared.fs:g}")
                new_head = config.head == "new" or list(info.classes) != list(prepared.classes)
                if new_head:
                    model.replace_head(len(prepared.classes))
                architecture = info.architecture
                inherited = [TrainingRecords.from_dict(t) for t in info.training]
                source = parse_spec(info.extra["spec"]).short_name if info.extra.get("spec") else "unknown"
                tracking.set_tags({"ecgtl.source": source, "ecgtl.pretrained_uri": pretrained_uri,
                                   "mlflow.runName": run_name(stage, architecture, config.data, config.train.seed)})
            else:
                torch.manual_seed(config.train.seed)
                model = create_model(architecture, len(prepared.classes))
            result, _, _ = train_and_report(model, prepared, rows, config.train, run_id, REGISTERED[config.init],
                                            config.n_bootstrap, resume=resume_run_id is not None,
                                            extra={"spec": config.data.spec, "pretrained": pretrained_uri},
                                            new_head=new_head, inherited=inherited)
    return result

