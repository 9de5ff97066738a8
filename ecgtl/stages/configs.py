"""Every stage's config: frozen dataclasses free of heavy imports, so that the CLI and MLproject options are
generated from them without importing torch, pandas or the stages. Flattened with dots they are the MLflow params
and CLI options; `config.reuse_key` hashes what determines a result. Import them from here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Annotated, ClassVar, Literal

from ecgtl.config import SEED_RANGE, OneOf, Range, check_options, choices, reuse_key, validate_parts
from ecgtl.data.prepare_config import DEFAULT_SOURCE, DEFAULT_TARGET, PrepareConfig
from ecgtl.data.spec import parse_spec
from ecgtl.errors import EcgtlError
from ecgtl.inputs import DOMAINS, FS_RANGE, Domain, InputContract, Scaling, parse_leads
from ecgtl.runs import check_model_uri, check_starting_point, is_imported_uri
from ecgtl.training.config import TrainConfig
from ecgtl.training.objectives import OBJECTIVES as OBJECTIVE_REGISTRY


@dataclass(frozen=True)
class DataConfig:
    spec: str = DEFAULT_TARGET
    fs: float = PrepareConfig.fs
    length_s: float = PrepareConfig.length_s
    label_set: str = PrepareConfig.label_set
    split_seed: int = PrepareConfig.split_seed
    fraction: float = 1.0
    leads: str = "all12"
    domain: Domain = "time"
    scaling: Scaling = "dataset"
    record_fs: float = PrepareConfig.record_fs

    RANGES: ClassVar[dict[str, Range]] = {**PrepareConfig.RANGES, "fraction": Range(0, 1, low_open=True)}
    HELP: ClassVar[dict[str, str]] = {
        "spec": "Dataset: ptbxl:PATH, cinc:PATH, synthetic:ptbxl?n=3000&seed=0, synthetic:g12ec?n=1500&seed=0.",
        "fs": "Sampling rate (Hz) the records are brought to and the model reads.",
        "length_s": "Seconds per record in the cache (longer ones cropped, shorter ones padded).",
        "label_set": "Classes: shared18, cinc2020, cinc2021, or a PTB-XL set (ptbxl-all, ptbxl-diagnostic, ...).",
        "split_seed": "Seed of the stratified train/val/test split (CinC data; PTB-XL keeps its folds).",
        "fraction": "Seeded, stratified, nested fraction of the training split that trains.",
        "leads": "Leads the model reads: all12, limb6, precordial6, or names such as I,II,V1.",
        "domain": "Model input per window: time, or its real FFT's magnitude, real or imaginary part.",
        "scaling": "dataset: units kept, a fitted lead scaler standardises; record: each record standardised first.",
        "record_fs": "> 0: records arrive at this rate (Hz) and the cache resamples them to fs; 0: their own rate.",
    }

    def validate(self) -> DataConfig:
        check_options(self)
        parse_leads(self.leads)
        if self.record_fs and not FS_RANGE[0] / 2 <= self.record_fs <= FS_RANGE[1]:
            raise EcgtlError(f"data.record_fs must be 0 (the records' own rate) or {FS_RANGE[0] / 2:g}-"
                             f"{FS_RANGE[1]:g} Hz, got {self.record_fs:g}")
        return self

    @property
    def contract(self) -> InputContract:
        return InputContract(self.fs, parse_leads(self.leads), self.domain, self.scaling)

    def prepare_config(self) -> PrepareConfig:
        return PrepareConfig(spec=self.spec, fs=self.fs, length_s=self.length_s, label_set=self.label_set,
                             split_seed=self.split_seed, record_fs=self.record_fs)


REGISTERED_PRETRAINED = "ecgtl-pretrained"


N_BOOTSTRAP_RANGE = Range(1, 100_000)


# The registered training objectives (training/objectives/): `pretrain.objective`'s values.
Objective = Annotated[str, OneOf(OBJECTIVE_REGISTRY)]
OBJECTIVES: tuple[str, ...] = choices(Objective)  # as registered when this module was imported
BOOTSTRAP_HELP = "Bootstrap resamples of the test metrics' confidence intervals."


@dataclass(frozen=True)
class PretrainConfig:
    """`objective` names a registered objective. One that uses labels (`supervised`) trains the whole model on
    the source's labels; a self-supervised one (`contrastive`, `cpc`) trains the encoder without labels, on
    `data.spec` and the comma-separated `extra_specs` (read at the same fs and length), then fits the head
    alone on `data.spec`'s labels for `probe_epochs` (none when it has no labels) so the registered model has a
    test report. Options an objective cannot honour are refused by it (`Objective.check_pretraining`)."""

    data: DataConfig = field(default_factory=lambda: DataConfig(spec=DEFAULT_SOURCE))
    model: str = "xresnet1d50"
    # 3 epochs: on the embedded synthetic data the model fine-tuned from it scores what one pretrained for 8 does
    # (within a seed's spread, docs/benchmarks.md) and the quick start fits in two minutes; real PTB-XL wants tens
    # of epochs (--train.epochs 30 in docs/results-real.md).
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=3, lr=1e-2))
    n_bootstrap: int = 1000
    objective: Objective = "supervised"
    extra_specs: str = ""
    probe_every: int = 1
    probe_epochs: int = 3
    temperature: float = 0.1
    cpc_segment_s: float = 0.25
    cpc_steps: int = 4
    fs_augment: str = ""

    # The temperature divides cosine similarities: below 1e-3 the loss and its gradients leave any sensible
    # range (1e-30 trained at a loss of 4e28), so the arithmetic stays finite inside this range.
    RANGES: ClassVar[dict[str, Range]] = {"n_bootstrap": N_BOOTSTRAP_RANGE, "probe_every": Range(0, 100_000),
                                          "probe_epochs": Range(0, 100_000), "temperature": Range(1e-3, 10),
                                          "cpc_segment_s": Range(0, 60, low_open=True), "cpc_steps": Range(1, 1000)}
    HELP: ClassVar[dict[str, str]] = {
        "model": "Architecture (ecgtl models list).",
        "n_bootstrap": BOOTSTRAP_HELP,
        "objective": "What pretraining optimises: supervised (the source's labels) or a self-supervised objective.",
        "extra_specs": "Self-supervised: more unlabelled datasets, comma-separated (cinc:/data/a,cinc:/data/b).",
        "probe_every": "Self-supervised: a linear-probe validation macro AUC every k epochs (0: never).",
        "probe_epochs": "Self-supervised: epochs of the head alone on the labels afterwards (0: none).",
        "temperature": "Contrastive: the NT-Xent temperature.",
        "cpc_segment_s": "CPC: the length of the segments the encoder reads one by one (s).",
        "cpc_steps": "CPC: how many segments ahead each context predicts.",
        "fs_augment": "LOW,HIGH (Hz): each crop as if recorded at a random rate in that range (supervised, time).",
    }

    def validate(self) -> PretrainConfig:
        for spec in filter(None, (s.strip() for s in self.extra_specs.split(","))):
            parse_spec(spec)
        if self.fs_augment:
            self.fs_augment_range  # noqa: B018 (parses and checks the range)
        return validate_parts(self)

    @property
    def fs_augment_range(self) -> tuple[float, float]:
        parts = self.fs_augment.split(",")
        try:
            low, high = (float(p) for p in parts)
        except ValueError:
            raise EcgtlError(f"fs_augment must be LOW,HIGH in Hz (e.g. 50,500), got {self.fs_augment!r}") from None
        if not (math.isfinite(low) and math.isfinite(high) and FS_RANGE[0] / 2 <= low <= high <= FS_RANGE[1]):
            raise EcgtlError(f"fs_augment {self.fs_augment!r}: need {FS_RANGE[0] / 2:g} <= LOW <= HIGH <= "
                             f"{FS_RANGE[1]:g} Hz")
        return low, high


# How a model's source priors are moved toward the target's (evaluation/label_shift.py): in evaluation, and in
# fine-tuning, which can also reweight the loss and move the outputs after training.
LabelShift = Literal["none", "prior", "em"]
FinetuneLabelShift = Literal["none", "prior", "em", "reweight"]
LABEL_SHIFTS: tuple[str, ...] = choices(LabelShift)
FINETUNE_LABEL_SHIFTS: tuple[str, ...] = choices(FinetuneLabelShift)
Head = Literal["new", "reuse"]
# How records at another rate than the model's reach it: brought to its rate by the pipeline's anti-aliased
# resampling, or read at their own rate by a continuous-time model (S4D) with its step scaled.
RatePolicy = Literal["resample", "native"]
Split = Literal["test", "val", "all"]
SPLIT_CHOICES: tuple[str, ...] = choices(Split)

DEFAULT_PRETRAINED = f"models:/{REGISTERED_PRETRAINED}@champion"
# init -> the registered model its runs become. linear_probe: the pretrained encoder frozen, a new head trained;
# random_frozen: the same with a randomly initialised encoder (the baseline a pretraining must beat).
REGISTERED = {"pretrained": "ecgtl-finetuned", "scratch": "ecgtl-scratch", "linear_probe": "ecgtl-finetuned",
              "random_frozen": "ecgtl-scratch"}
FROZEN_INITS = ("linear_probe", "random_frozen")  # the encoder never trains: schedule `frozen`
PRETRAINED_INITS = ("pretrained", "linear_probe")  # start from a pretrained encoder
DEFAULT_SCRATCH_MODEL = "xresnet1d50"
Init = Annotated[str, OneOf(REGISTERED)]


@dataclass(frozen=True)
class FinetuneConfig:
    data: DataConfig = field(default_factory=lambda: DataConfig(spec=DEFAULT_TARGET))
    init: Init = "pretrained"
    pretrained: str = DEFAULT_PRETRAINED
    model: str = ""
    head: Head = "new"
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        epochs=10, lr=1e-2, schedule="gradual", epochs_per_stage=1, decay=2.6))
    n_bootstrap: int = 1000
    label_shift: FinetuneLabelShift = "none"

    RANGES: ClassVar[dict[str, Range]] = {"n_bootstrap": N_BOOTSTRAP_RANGE}
    HELP: ClassVar[dict[str, str]] = {
        "init": "Where the weights start: pretrained, scratch, linear_probe (pretrained encoder frozen), "
                "random_frozen (random encoder frozen).",
        "pretrained": "The starting point: an ecgtl model URI (models:/NAME@ALIAS, models:/NAME/VERSION, "
                      "runs:/ID/model) or torch:PATH, a checkpoint file of a known layout.",
        "model": "Architecture; empty: the pretrained model's (init=pretrained) or xresnet1d50 (scratch).",
        "head": "new: a fresh head (always when the classes differ); reuse: the pretrained model's head.",
        "n_bootstrap": BOOTSTRAP_HELP,
        "label_shift": "Source priors toward the target's: prior, em (move the reused head's bias first), "
                       "reweight (weigh the loss, move the outputs after).",
    }

    def validate(self) -> FinetuneConfig:
        check_options(self)
        if self.init in PRETRAINED_INITS:
            check_starting_point(self.pretrained)
        if self.label_shift != "none" and self.init not in PRETRAINED_INITS:
            raise EcgtlError(f"label_shift corrects a pretrained model's source priors; init={self.init} has none")
        if self.init in PRETRAINED_INITS and self.head == "reuse" and is_imported_uri(self.pretrained):
            raise EcgtlError(f"{self.pretrained}: an imported encoder has no head for these classes; use head=new")
        if self.label_shift in ("prior", "em") and self.head != "reuse":
            raise EcgtlError(f"label_shift={self.label_shift} moves the pretrained head's bias: it needs head=reuse "
                             "(a new head already starts at the target's priors)")
        return validate_parts(self)


@dataclass(frozen=True)
class EvaluateConfig:
    model_uri: str = "models:/ecgtl-finetuned@champion"
    spec: str = DEFAULT_TARGET
    split: Split = "test"
    split_seed: int = 0
    n_bootstrap: int = 1000
    challenge_weights: str = ""
    calibration_fraction: float = 0.0
    strict: bool = False
    seed: int = 0
    label_shift: LabelShift = "none"
    explain_examples: int = TrainConfig.explain_examples
    record_fs: float = 0.0
    rate_policy: RatePolicy = "resample"

    RANGES: ClassVar[dict[str, Range]] = {"n_bootstrap": N_BOOTSTRAP_RANGE, "split_seed": SEED_RANGE,
                                          "seed": SEED_RANGE, "calibration_fraction": Range(0, 1, high_open=True),
                                          "explain_examples": TrainConfig.RANGES["explain_examples"],
                                          "record_fs": PrepareConfig.RANGES["record_fs"]}
    HELP: ClassVar[dict[str, str]] = {
        "model_uri": "The model to evaluate (any MLflow model URI of an ecgtl model).",
        "spec": "The dataset to evaluate it on (read at the model's rate, with its label set).",
        "split": "Which split of the dataset is scored (all: every split).",
        "split_seed": "Seed of the dataset's stratified split (CinC data).",
        "n_bootstrap": BOOTSTRAP_HELP,
        "challenge_weights": "A PhysioNet challenge weights CSV: adds the challenge metric.",
        "calibration_fraction": "> 0: refit calibration and thresholds on this part of the records, report on the rest.",
        "strict": "Refuse to evaluate records the model (or its source) was trained on.",
        "seed": "Seed of the calibration part and of the bootstrap.",
        "label_shift": "Move the outputs to the evaluated data's priors: prior (its train split's), em (estimated).",
        "explain_examples": TrainConfig.HELP["explain_examples"],
        "record_fs": "> 0: read the records at this rate (Hz) first; 0: at the model's rate.",
        "rate_policy": "Records at another rate than the model's: resample them to it, or (S4D) read them natively "
                       "with the model's step scaled.",
    }

    def validate(self) -> EvaluateConfig:
        check_options(self)
        check_model_uri(self.model_uri)
        if self.label_shift != "none" and self.calibration_fraction > 0:
            raise EcgtlError("label_shift corrects a model's own calibration; a calibration refitted on the "
                             "evaluated records (calibration_fraction > 0) already has their priors")
        return self


@dataclass(frozen=True)
class MainConfig:
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    n_bootstrap: int = 1000

    RANGES: ClassVar[dict[str, Range]] = {"n_bootstrap": N_BOOTSTRAP_RANGE}
    HELP: ClassVar[dict[str, str]] = {"n_bootstrap": "Paired bootstrap resamples of fine-tuned vs scratch."}

    def validate(self) -> MainConfig:
        return validate_parts(self)


@dataclass(frozen=True)
class PromoteConfig:
    model: str = "ecgtl-finetuned"
    challenger: str = "challenger"  # a version number or an alias
    margin: float = 0.0
    ece_tolerance: float = 0.01
    n_bootstrap: int = 1000
    seed: int = 0
    dry_run: bool = False

    RANGES: ClassVar[dict[str, Range]] = {"margin": Range(-1, 1), "ece_tolerance": Range(0, 1),
                                          "n_bootstrap": N_BOOTSTRAP_RANGE, "seed": SEED_RANGE}
    HELP: ClassVar[dict[str, str]] = {
        "model": "Registered model name.", "challenger": "Version number or alias.",
        "margin": "The gain's lower CI bound must exceed this.", "ece_tolerance": "How much worse ECE may be.",
        "n_bootstrap": "Paired bootstrap resamples.", "seed": "Bootstrap seed.", "dry_run": "Only print the decision."}

    def validate(self) -> PromoteConfig:
        check_options(self)
        return self


AXES = ("source", "target", "target_fraction", "source_fraction", "fs", "target_fs", "domain", "leads", "objective",
        "fs_augment", "label_shift", "starting_point", "init", "seed")
SOURCE_AXES = ("source", "source_fraction", "fs", "domain", "leads", "objective", "fs_augment", "starting_point")
# `starting_point`: where pretrained cells start: `ecgtl` (the cell's own pretraining on the source) or an imported
# encoder (`torch:PATH`, `hf:...`), fine-tuned as it is (no pretraining task).
OWN_PRETRAINING = "ecgtl"
INITS = ("pretrained", "scratch")  # the default init axis; any of REGISTERED (linear_probe, ...) on request
AXIS_DEFAULTS = {"target_fraction": 1.0, "source_fraction": 1.0, "fs": 100.0, "domain": "time", "leads": "all12",
                 "objective": "supervised"}
# Axes a cell has only where its grid names them (else None: the sizing's data, the stage defaults). `source`,
# `target`: dataset specs; `target_fs`: the rate target records arrive at (`data.record_fs`); `fs_augment`:
# `off` or `LOW,HIGH` (`pretrain.fs_augment`); `label_shift`: `finetune.label_shift` (pretrained cells reuse
# the source head where it is named, so that the source priors are there to correct).
OPTIONAL_AXES = ("source", "target", "target_fs", "fs_augment", "label_shift", "starting_point")
FS_AUGMENT_OFF = "off"

PRESETS: dict[str, dict[str, tuple]] = {
    "exp1-target-fraction": {"target_fraction": (1.0, 0.5, 0.25, 0.1, 0.05)},
    "exp2-source-fraction": {"source_fraction": (1.0, 0.5, 0.25), "target_fraction": (0.1,)},
    "exp3-sampling-rate": {"fs": (500.0, 250.0, 100.0, 50.0)},
    "exp4-calibration": {"target_fraction": (1.0, 0.1)},
    "exp5-frequency-domain": {"domain": DOMAINS},
    "leads": {"leads": ("all12", "limb6", "precordial6", "I,II", "II", "V1")},
}
# Beyond the seed study (not part of `all`): pretraining objective x init, with the frozen baselines.
EXTRA_PRESETS: dict[str, dict[str, tuple]] = {
    "label-shift": {"label_shift": FINETUNE_LABEL_SHIFTS, "target_fraction": (1.0, 0.1)},
    "exp3-rate-shift": {"fs": (100.0,), "target_fs": (50.0, 100.0, 250.0, 500.0),
                        "fs_augment": (FS_AUGMENT_OFF, "50,500")},
    # every source -> target pair: `--sources` and `--targets` name them (default: the sizing's, two of each)
    "transfer-matrix": {},
    # where fine-tuning starts: ecgtl's own pretraining and the encoders `--starting_points` names, vs scratch
    "sources": {"starting_point": (OWN_PRETRAINING,), "target_fraction": (1.0, 0.25, 0.1)},
    "pretraining-objectives": {"objective": OBJECTIVES, "init": ("pretrained", "linear_probe", "random_frozen",
                                                                  "scratch"),
                               "target_fraction": (1.0, 0.25, 0.1)},
}
PRESET_NAMES = (*PRESETS, *EXTRA_PRESETS, "all", "custom")
Preset = Annotated[str, OneOf(PRESET_NAMES)]


@dataclass(frozen=True)
class Sizing:
    """What a preset trains: data, model, epochs. `quick` is small enough for minutes on 2 cores."""

    source: str
    target: str
    model: str
    pretrain_epochs: int
    finetune_epochs: int
    batch_size: int
    n_bootstrap: int
    label_set: str = "shared18"  # classes both sides are trained on (source and target must both have them)
    scaling: Scaling = "dataset"  # record: when source and target differ in amplitude convention
    probe_epochs: int = PretrainConfig.probe_epochs


# The full sizing is the stages' defaults (read from them, not retyped).
FULL = Sizing(DEFAULT_SOURCE, DEFAULT_TARGET, PretrainConfig.model, PretrainConfig().train.epochs,
              FinetuneConfig().train.epochs, TrainConfig.batch_size, PretrainConfig.n_bootstrap)
QUICK = Sizing("synthetic:ptbxl?n=800&seed=0", "synthetic:g12ec?n=500&seed=0", "xresnet1d18", 3, 4, 64, 200)


@dataclass(frozen=True)
class AblationConfig:
    preset: Preset = "exp1-target-fraction"
    axes: str = ""
    grid_file: str = ""
    quick: bool = False
    seeds: int = 3
    source: str = ""
    target: str = ""
    model: str = ""
    pretrain_epochs: int = 0
    finetune_epochs: int = 0
    n_bootstrap: int = 0
    label_set: str = "shared18"
    scaling: Scaling = "dataset"
    probe_epochs: int = PretrainConfig.probe_epochs
    jobs: int = 1
    storage: str = ""
    study_name: str = ""
    sources: str = ""
    targets: str = ""
    starting_points: str = ""

    RANGES: ClassVar[dict[str, Range]] = {
        "seeds": Range(1, 1000), "jobs": Range(1, 1024), "pretrain_epochs": Range(0, 100_000),
        "finetune_epochs": Range(0, 100_000), "n_bootstrap": Range(0, 100_000), "probe_epochs": Range(0, 100_000)}
    HELP: ClassVar[dict[str, str]] = {
        "preset": "The grid: one of the study's experiments, an open question, all (the study) or custom.",
        "axes": "Axis overrides, ;-separated: target_fraction=1,0.5,0.1;seed=0,1,2 (or --axis, repeated).",
        "grid_file": "A YAML grid {axes: {name: [values]}} that replaces the preset's axes.",
        "quick": "The small sizing (synthetic 800/500 records, xresnet1d18, 3/4 epochs): minutes on 2 cores.",
        "seeds": "Fine-tuning seeds per cell unless a seed axis is given.",
        "source": "Source dataset spec (empty: the sizing's, synthetic PTB-XL).",
        "target": "Target dataset spec (empty: the sizing's, synthetic Georgia).",
        "model": "Architecture (empty: the sizing's).",
        "pretrain_epochs": "Pretraining epochs (0: the sizing's).",
        "finetune_epochs": "Fine-tuning epochs (0: the sizing's).",
        "n_bootstrap": "Bootstrap resamples (0: the sizing's).",
        "label_set": "Classes both sides train on (source and target must both have them).",
        "scaling": "record: standardise each record (a source and target in different amplitude conventions).",
        "probe_epochs": "Self-supervised pretrainings: epochs of the head on the labels afterwards (0: none).",
        "jobs": "Worker processes on this machine (>1: an Optuna queue in the cache folder).",
        "storage": "Optuna storage URL of a queue shared by workers on several machines.",
        "study_name": "The queue's name on a shared storage (other workers join it with ablation-worker).",
        "sources": "The source axis: dataset specs separated by commas or | (transfer-matrix).",
        "targets": "The target axis: dataset specs separated by commas or | (transfer-matrix).",
        "starting_points": "Where pretrained cells start, separated by | or commas: ecgtl (the cell's own "
                           "pretraining), torch:PATH, hf:ORG/NAME (the sources preset).",
    }

    def validate(self) -> AblationConfig:
        check_options(self)
        if self.storage and not self.study_name:
            raise EcgtlError("a shared storage needs a study_name that the other workers use too")
        return self

    def sizing(self) -> Sizing:
        base = QUICK if self.quick else FULL
        return Sizing(self.source or base.source, self.target or base.target, self.model or base.model,
                      self.pretrain_epochs or base.pretrain_epochs, self.finetune_epochs or base.finetune_epochs,
                      base.batch_size, self.n_bootstrap or base.n_bootstrap, self.label_set, self.scaling,
                      self.probe_epochs)


Pruner = Literal["auto", "hyperband", "successive_halving", "median", "none"]
PRUNERS: tuple[str, ...] = choices(Pruner)
REDUCING_PRUNERS = ("hyperband", "successive_halving")  # the pruners a reduction factor applies to
# `auto`'s choice (pruner, reduction factor) by trial length, measured in benchmarks/bench_tune.py (manual:
# "Tuning"): the setting that kept the best trial on both sampler seeds with the fewest epochs.
LONG_TRIAL_EPOCHS = 20
AUTO_PRUNERS = {"short": ("hyperband", 3), "long": ("hyperband", 2)}


@dataclass(frozen=True)
class SearchSpace:
    """Ranges as text: `low,high` for numbers (log scale where noted), comma lists for choices; one value fixes."""

    schedules: str = "full,two_stage,gradual,chain_thaw"
    lr: str = "1e-4,3e-2"
    decay: str = "1,4"
    head_lr_mult: str = "1,10"
    weight_decay: str = "1e-4,1e-1"
    dropout: str = "0.1,0.7"
    batch_size: str = "32,64,128"
    frozen_bn: str = "eval,train"
    head_epochs: str = "1,3"
    epochs_per_stage: str = "1,3"
    groups_per_stage: str = "1,2"

    HELP: ClassVar[dict[str, str]] = {
        "schedules": "Unfreezing schedules to try (comma list of train.schedule's values).",
        "lr": "Base learning rate range LOW,HIGH (log scale).",
        "decay": "Discriminative decay range LOW,HIGH.",
        "head_lr_mult": "Head lr multiplier range LOW,HIGH (log scale).",
        "weight_decay": "Weight decay range LOW,HIGH (log scale).",
        "dropout": "Head dropout range LOW,HIGH.",
        "batch_size": "Batch sizes to try (comma list).",
        "frozen_bn": "BatchNorm modes of frozen groups to try (eval,train).",
        "head_epochs": "two_stage: head-only epochs range LOW,HIGH.",
        "epochs_per_stage": "gradual, chain_thaw: epochs per unfreezing step, range LOW,HIGH.",
        "groups_per_stage": "gradual: groups unfrozen per step, range LOW,HIGH.",
    }


@dataclass(frozen=True)
class TuneConfig:
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    space: SearchSpace = field(default_factory=SearchSpace)
    space_file: str = ""
    n_trials: int = 20
    timeout: float = 0.0
    study_name: str = ""
    storage: str = ""
    workers: int = 1
    pruner: Pruner = "auto"
    reduction_factor: int = 0
    sampler_seed: int = 0
    final: bool = True

    RANGES: ClassVar[dict[str, Range]] = {"n_trials": Range(1, 1_000_000), "timeout": Range(0),
                                          "workers": Range(1, 1024), "reduction_factor": Range(0, 100),
                                          "sampler_seed": SEED_RANGE}
    HELP: ClassVar[dict[str, str]] = {
        "space_file": "A YAML search space with the space.* keys (replaces them).",
        "n_trials": "New trials in this invocation (a study continues where it was).",
        "timeout": "Seconds for this invocation (0: no limit).",
        "study_name": "Optuna study name (default: tune-<target>-<reuse key of the base config>).",
        "storage": "Optuna storage URL (default: optuna.db beside an sqlite MLflow store, else the cache folder).",
        "workers": "Worker processes on this machine.",
        "pruner": "auto: Hyperband, its reduction factor by the trials' length; or hyperband, "
                  "successive_halving, median, none.",
        "reduction_factor": "Hyperband's and successive halving's reduction factor (0: auto's for the trial length).",
        "sampler_seed": "Seed of the TPE sampler.",
        "final": "Train the best configuration again, report on test and register a challenger.",
    }

    def validate(self) -> TuneConfig:
        check_options(self)
        if self.reduction_factor == 1:
            raise EcgtlError("reduction_factor must be 0 (by the trials' length) or at least 2, got 1")
        if self.finetune.init != "pretrained":
            raise EcgtlError("tune fine-tunes a pretrained model: finetune.init must be 'pretrained'")
        self.finetune.validate()
        return self

    def pruning(self) -> tuple[str, int]:
        """The pruner this study uses and its reduction factor (`auto` resolved by the trials' length)."""
        auto_name, auto_factor = AUTO_PRUNERS["long" if self.finetune.train.epochs >= LONG_TRIAL_EPOCHS else "short"]
        return (auto_name if self.pruner == "auto" else self.pruner), (self.reduction_factor or auto_factor)

    def default_study_name(self) -> str:
        return f"tune-{parse_spec(self.finetune.data.spec).short_name}-{reuse_key(self.finetune)}"
