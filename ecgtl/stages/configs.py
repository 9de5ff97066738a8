"""Every stage's config: frozen dataclasses free of heavy imports, so that the CLI and MLproject options are
generated from them without importing torch, pandas or the stages. Flattened with dots they are the MLflow params
and CLI options; `config.reuse_key` hashes what determines a result. Import them from here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

from ecgtl.config import SEED_RANGE, Range, check_numbers, reuse_key, validate_parts
from ecgtl.data.prepare_config import DEFAULT_SOURCE, DEFAULT_TARGET, PrepareConfig
from ecgtl.data.spec import parse_spec
from ecgtl.errors import EcgtlError
from ecgtl.inputs import DOMAINS, FS_RANGE, SCALINGS, InputContract, parse_leads
from ecgtl.training.config import TrainConfig


@dataclass(frozen=True)
class DataConfig:
    spec: str = DEFAULT_TARGET
    fs: float = PrepareConfig.fs
    length_s: float = PrepareConfig.length_s
    label_set: str = PrepareConfig.label_set
    split_seed: int = PrepareConfig.split_seed
    fraction: float = 1.0
    leads: str = "all12"  # all12, limb6, precordial6, or lead names: I,II
    domain: str = "time"  # time, fft_abs, fft_real, fft_imag
    scaling: str = "dataset"  # dataset (units kept, lead scaler only) or record (each record standardised first)
    record_fs: float = PrepareConfig.record_fs  # > 0: records arrive at this rate (resampled to fs by the cache)

    RANGES: ClassVar[dict[str, Range]] = {**PrepareConfig.RANGES, "fraction": Range(0, 1, low_open=True)}

    def validate(self) -> DataConfig:
        check_numbers(self)
        parse_leads(self.leads)
        if self.domain not in DOMAINS:
            raise EcgtlError(f"data.domain must be one of {', '.join(DOMAINS)}, got {self.domain!r}")
        if self.scaling not in SCALINGS:
            raise EcgtlError(f"data.scaling must be one of {', '.join(SCALINGS)}, got {self.scaling!r}")
        if not 0 < self.fraction <= 1:
            raise EcgtlError(f"data.fraction must lie in (0, 1], got {self.fraction}")
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


OBJECTIVES = ("supervised", "contrastive")


@dataclass(frozen=True)
class PretrainConfig:
    """`objective=supervised` trains the whole model on the source's labels; `contrastive` trains the encoder
    (every layer group but the head) without labels (`training/objectives.py`), on `data.spec` and the
    comma-separated `extra_specs` (read at the same fs and length), then fits the head alone on `data.spec`'s
    labels for `probe_epochs` (none when it has no labels) so the registered model has a test report."""

    data: DataConfig = field(default_factory=lambda: DataConfig(spec=DEFAULT_SOURCE))
    model: str = "xresnet1d50"
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=8, lr=1e-2))
    n_bootstrap: int = 1000
    objective: str = "supervised"
    extra_specs: str = ""  # contrastive: more unlabelled data, `cinc:/data/a,cinc:/data/b`
    probe_every: int = 1  # contrastive: the validation linear-probe AUC every k epochs (0: never)
    probe_epochs: int = 3  # contrastive: epochs of the head alone on the labels afterwards
    temperature: float = 0.1  # contrastive: of the NT-Xent loss
    fs_augment: str = ""  # "LOW,HIGH" Hz: each crop as if recorded at a random rate in that range (time domain)

    RANGES: ClassVar[dict[str, Range]] = {"n_bootstrap": N_BOOTSTRAP_RANGE, "probe_every": Range(0, 100_000),
                                          "probe_epochs": Range(0, 100_000),
                                          "temperature": Range(0, 10, low_open=True)}

    def validate(self) -> PretrainConfig:
        if self.objective not in OBJECTIVES:
            raise EcgtlError(f"objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}")
        if self.extra_specs and self.objective == "supervised":
            raise EcgtlError("extra_specs adds unlabelled data: it needs objective=contrastive")
        for spec in filter(None, (s.strip() for s in self.extra_specs.split(","))):
            parse_spec(spec)
        if self.fs_augment:
            self.fs_augment_range  # noqa: B018 (parses and checks the range)
            if self.objective != "supervised" or self.data.domain != "time":
                raise EcgtlError("fs_augment low-passes time-domain crops of supervised pretraining: it needs "
                                 "objective=supervised and data.domain=time")
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


LABEL_SHIFTS = ("none", "prior", "em")  # see evaluation/label_shift.py
FINETUNE_LABEL_SHIFTS = (*LABEL_SHIFTS, "reweight")


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise EcgtlError(f"{name} must be one of {', '.join(choices)}, got {value!r}")


DEFAULT_PRETRAINED = f"models:/{REGISTERED_PRETRAINED}@champion"
# init -> the registered model its runs become. linear_probe: the pretrained encoder frozen, a new head trained;
# random_frozen: the same with a randomly initialised encoder (the baseline a pretraining must beat).
REGISTERED = {"pretrained": "ecgtl-finetuned", "scratch": "ecgtl-scratch", "linear_probe": "ecgtl-finetuned",
              "random_frozen": "ecgtl-scratch"}
FROZEN_INITS = ("linear_probe", "random_frozen")  # the encoder never trains: schedule `frozen`
PRETRAINED_INITS = ("pretrained", "linear_probe")  # start from a pretrained encoder
DEFAULT_SCRATCH_MODEL = "xresnet1d50"


@dataclass(frozen=True)
class FinetuneConfig:
    data: DataConfig = field(default_factory=lambda: DataConfig(spec=DEFAULT_TARGET))
    init: str = "pretrained"
    pretrained: str = DEFAULT_PRETRAINED
    # Architecture. init=pretrained: the pretrained model's (empty = take it; another name is an error);
    # init=scratch: empty means xresnet1d50.
    model: str = ""
    head: str = "new"
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        epochs=10, lr=1e-2, schedule="gradual", epochs_per_stage=1, decay=2.6))
    n_bootstrap: int = 1000
    # The pretrained model's source priors vs the target's (evaluation/label_shift.py): prior / em move the
    # reused head's bias to the target's training priors (em: estimated without labels) before fine-tuning;
    # reweight trains with the source's label distribution and moves the outputs to the target's after.
    label_shift: str = "none"

    RANGES: ClassVar[dict[str, Range]] = {"n_bootstrap": N_BOOTSTRAP_RANGE}

    def validate(self) -> FinetuneConfig:
        if self.init not in REGISTERED:
            raise EcgtlError(f"init must be one of {', '.join(REGISTERED)}, got {self.init!r}")
        if self.head not in ("new", "reuse"):
            raise EcgtlError(f"head must be 'new' or 'reuse', got {self.head!r}")
        check_choice("label_shift", self.label_shift, FINETUNE_LABEL_SHIFTS)
        if self.label_shift != "none" and self.init not in PRETRAINED_INITS:
            raise EcgtlError(f"label_shift corrects a pretrained model's source priors; init={self.init} has none")
        if self.label_shift in ("prior", "em") and self.head != "reuse":
            raise EcgtlError(f"label_shift={self.label_shift} moves the pretrained head's bias: it needs head=reuse "
                             "(a new head already starts at the target's priors)")
        return validate_parts(self)


SPLIT_CHOICES = ("test", "val", "all")


@dataclass(frozen=True)
class EvaluateConfig:
    model_uri: str = "models:/ecgtl-finetuned@champion"
    spec: str = DEFAULT_TARGET
    split: str = "test"
    split_seed: int = 0
    n_bootstrap: int = 1000
    challenge_weights: str = ""
    calibration_fraction: float = 0.0
    strict: bool = False
    seed: int = 0
    # none, prior (to the evaluated dataset's train-split priors), em (priors estimated from the outputs)
    label_shift: str = "none"
    explain_examples: int = TrainConfig.explain_examples  # records per class explained on the report

    RANGES: ClassVar[dict[str, Range]] = {"n_bootstrap": N_BOOTSTRAP_RANGE, "split_seed": SEED_RANGE,
                                          "seed": SEED_RANGE,
                                          "explain_examples": TrainConfig.RANGES["explain_examples"]}

    def validate(self) -> EvaluateConfig:
        check_numbers(self)
        if self.split not in SPLIT_CHOICES:
            raise EcgtlError(f"split must be one of {', '.join(SPLIT_CHOICES)}, got {self.split!r}")
        if not 0 <= self.calibration_fraction < 1:
            raise EcgtlError(f"calibration_fraction must lie in [0, 1), got {self.calibration_fraction}")
        check_choice("label_shift", self.label_shift, LABEL_SHIFTS)
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
        check_numbers(self)
        return self


AXES = ("source", "target", "target_fraction", "source_fraction", "fs", "target_fs", "domain", "leads", "objective",
        "fs_augment", "label_shift", "init", "seed")
SOURCE_AXES = ("source", "source_fraction", "fs", "domain", "leads", "objective", "fs_augment")
INITS = ("pretrained", "scratch")  # the default init axis; any of REGISTERED (linear_probe, ...) on request
AXIS_DEFAULTS = {"target_fraction": 1.0, "source_fraction": 1.0, "fs": 100.0, "domain": "time", "leads": "all12",
                 "objective": "supervised"}
# Axes a cell has only where its grid names them (else None: the sizing's data, the stage defaults). `source`,
# `target`: dataset specs; `target_fs`: the rate target records arrive at (`data.record_fs`); `fs_augment`:
# `off` or `LOW,HIGH` (`pretrain.fs_augment`); `label_shift`: `finetune.label_shift` (pretrained cells reuse
# the source head where it is named, so that the source priors are there to correct).
OPTIONAL_AXES = ("source", "target", "target_fs", "fs_augment", "label_shift")
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
    "pretraining-objectives": {"objective": OBJECTIVES, "init": ("pretrained", "linear_probe", "random_frozen",
                                                                  "scratch"),
                               "target_fraction": (1.0, 0.25, 0.1)},
}
PRESET_NAMES = (*PRESETS, *EXTRA_PRESETS, "all", "custom")


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
    scaling: str = "dataset"  # record: when source and target differ in amplitude convention
    probe_epochs: int = PretrainConfig.probe_epochs


FULL = Sizing("synthetic:ptbxl?n=3000&seed=0", "synthetic:g12ec?n=1500&seed=0", "xresnet1d50", 8, 10, 128, 1000)
QUICK = Sizing("synthetic:ptbxl?n=800&seed=0", "synthetic:g12ec?n=500&seed=0", "xresnet1d18", 3, 4, 64, 200)


@dataclass(frozen=True)
class AblationConfig:
    preset: str = "exp1-target-fraction"
    # Axis overrides, `;`-separated: "target_fraction=1,0.5,0.1;seed=0,1,2" (the CLI's --axis, repeated).
    axes: str = ""
    grid_file: str = ""  # YAML: {axes: {name: [values]}}; replaces the preset's axes
    quick: bool = False
    seeds: int = 3  # seeds per cell unless a seed axis is given
    source: str = ""  # empty: the sizing's source (synthetic PTB-XL)
    target: str = ""
    model: str = ""
    pretrain_epochs: int = 0  # 0: the sizing's
    finetune_epochs: int = 0
    n_bootstrap: int = 0
    label_set: str = "shared18"
    scaling: str = "dataset"  # record: standardise each record (e.g. a synthetic mV source, a standardised target)
    probe_epochs: int = PretrainConfig.probe_epochs  # contrastive pretrainings: 0 fits no head on labels
    jobs: int = 1
    storage: str = ""  # Optuna storage URL shared by workers on several machines
    study_name: str = ""
    sources: str = ""  # the `source` axis: dataset specs separated by commas (transfer-matrix)
    targets: str = ""  # the `target` axis

    RANGES: ClassVar[dict[str, Range]] = {
        "seeds": Range(1, 1000), "jobs": Range(1, 1024), "pretrain_epochs": Range(0, 100_000),
        "finetune_epochs": Range(0, 100_000), "n_bootstrap": Range(0, 100_000), "probe_epochs": Range(0, 100_000)}

    def validate(self) -> AblationConfig:
        check_numbers(self)
        if self.preset not in PRESET_NAMES:
            raise EcgtlError(f"unknown preset {self.preset!r}; choose from {', '.join(PRESET_NAMES)}")
        if self.storage and not self.study_name:
            raise EcgtlError("a shared storage needs a study_name that the other workers use too")
        if self.scaling not in SCALINGS:
            raise EcgtlError(f"scaling must be one of {', '.join(SCALINGS)}, got {self.scaling!r}")
        return self

    def sizing(self) -> Sizing:
        base = QUICK if self.quick else FULL
        return Sizing(self.source or base.source, self.target or base.target, self.model or base.model,
                      self.pretrain_epochs or base.pretrain_epochs, self.finetune_epochs or base.finetune_epochs,
                      base.batch_size, self.n_bootstrap or base.n_bootstrap, self.label_set, self.scaling,
                      self.probe_epochs)


PRUNERS = ("auto", "hyperband", "successive_halving", "median", "none")
REDUCING_PRUNERS = ("hyperband", "successive_halving")  # the pruners a reduction factor applies to
# `auto`'s choice (pruner, reduction factor) by trial length, measured in benchmarks/bench_tune.py (README
# "Tuning"): the setting that kept the best trial on both sampler seeds with the fewest epochs.
LONG_TRIAL_EPOCHS = 20
AUTO_PRUNERS = {"short": ("hyperband", 3), "long": ("hyperband", 2)}


@dataclass(frozen=True)
class SearchSpace:
    """Ranges as text: `low,high` for numbers (log scale where noted), comma lists for choices; one value fixes."""

    schedules: str = "full,two_stage,gradual,chain_thaw"
    lr: str = "1e-4,3e-2"  # log
    decay: str = "1,4"
    head_lr_mult: str = "1,10"  # log
    weight_decay: str = "1e-4,1e-1"  # log
    dropout: str = "0.1,0.7"
    batch_size: str = "32,64,128"
    frozen_bn: str = "eval,train"
    head_epochs: str = "1,3"  # two_stage
    epochs_per_stage: str = "1,3"  # gradual, chain_thaw
    groups_per_stage: str = "1,2"  # gradual


@dataclass(frozen=True)
class TuneConfig:
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    space: SearchSpace = field(default_factory=SearchSpace)
    space_file: str = ""
    n_trials: int = 20
    timeout: float = 0.0  # seconds for this invocation; 0: no limit
    study_name: str = ""  # default: tune-<target>-<key of the base config>
    storage: str = ""  # default: optuna.db beside an sqlite MLflow store, else in the cache folder
    workers: int = 1
    pruner: str = "auto"  # by trial length: AUTO_PRUNERS, LONG_TRIAL_EPOCHS
    reduction_factor: int = 0  # Hyperband's and successive halving's; 0: auto's factor for the trials' length
    sampler_seed: int = 0
    final: bool = True  # train the best configuration again, report on test, register a challenger

    RANGES: ClassVar[dict[str, Range]] = {"n_trials": Range(1, 1_000_000), "timeout": Range(0),
                                          "workers": Range(1, 1024), "reduction_factor": Range(0, 100),
                                          "sampler_seed": SEED_RANGE}

    def validate(self) -> TuneConfig:
        check_numbers(self)
        if self.pruner not in PRUNERS:
            raise EcgtlError(f"pruner must be one of {', '.join(PRUNERS)}, got {self.pruner!r}")
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
