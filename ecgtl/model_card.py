"""A model card for every registered version, written from what the run knows: its datasets (counts and digests),
label set and prevalence, input contract, test results with CIs, calibration, thresholds, how it is promoted,
and its limitations. The same Markdown is the version's description in the registry and the run's
`model_card.md` artifact; `ecgtl models show URI` prints it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ecgtl import runs
from ecgtl.data.lineage import SplitDataset
from ecgtl.evaluation.report import metric_class_name

CARD_FILE = "model_card.md"
INTENDED_USE = ("Research on transfer learning for 12-lead ECG classification. Not a medical device: not for "
                "diagnosis, triage or any clinical decision.")


@dataclass(frozen=True)
class ModelFacts:
    """What a model card says, gathered by the stage that trained the model."""

    registered_name: str
    architecture: str
    stage: str  # pretrain, finetune, scratch
    run_id: str
    classes: tuple[str, ...]
    label_set: str
    input_contract: str  # `InputPipeline.describe()`: leads, fs, domain, scaling, windows
    datasets: tuple[SplitDataset, ...]
    metrics: dict[str, float]
    thresholds: tuple[float, ...]  # per class; empty when the model has no evaluation report
    primary_calibration: str
    champion_if_first: bool
    started_from: str = ""  # an imported starting point, with its digest (see `started_from`)


def started_from(extra: dict) -> str:
    """The line naming an imported starting point (a checkpoint file) from a bundle's `extra`, '' for ecgtl's own
    (their lineage is in the training records)."""
    if runs.PRETRAINED_DIGEST not in extra:
        return ""
    licence = extra.get(runs.PRETRAINED_LICENCE, "")
    return (f"Started from `{extra.get('pretrained', '')}` ({extra.get(runs.PRETRAINED_LAYOUT, '')} layout, digest "
            f"`{extra[runs.PRETRAINED_DIGEST]}`). "
            + (f"**Licence of the starting weights: {licence}** (from their model card); it binds this model too."
               if licence else "Its metadata names no licence: the licence of its source applies to these weights."))


def _number(metrics: dict[str, float], key: str) -> str:
    value = metrics.get(key)
    return "–" if value is None else f"{value:.3f}"


def _limitations(facts: ModelFacts) -> list[str]:
    specs = [d.spec for d in facts.datasets]
    notes = []
    if specs and all(s.startswith("synthetic:") for s in specs):
        notes.append("Trained and tested on synthetic data only: its numbers say what the platform measures, "
                     "not how it performs on real ECGs.")
    elif any(s.startswith("synthetic:") for s in specs):
        notes.append("Part of its data is synthetic (see Data).")
    train = next((d for d in facts.datasets if d.context == "training"), None)
    if train is not None:
        rare = [c for c, n in train.profile.get("classes", {}).items() if n < 10]
        if rare:
            notes.append(f"Fewer than 10 training examples of {', '.join(rare)}: their AUCs are uncertain.")
    notes.append("Inputs must follow the input contract above (leads, rate, units); other devices, populations and "
                 "label conventions than its data may shift performance and calibration.")
    return notes


def render(facts: ModelFacts) -> str:
    """The card as Markdown (MLflow renders a version's description as Markdown)."""
    k = facts.metrics
    lines = [f"# {facts.registered_name}: {facts.architecture} ({facts.stage})", "",
             f"**Intended use.** {INTENDED_USE}", "", f"Trained in run `{facts.run_id}`.", "",
             *([facts.started_from, ""] if facts.started_from else []), "## Data", "",
             "| context | dataset | records | digest | source |", "|---|---|---|---|---|"]
    for d in facts.datasets:
        lines.append(f"| {d.context} | {d.name} | {d.profile.get('records', '–')} | `{d.digest}` | `{d.spec}` |")
    train = next((d for d in facts.datasets if d.context == "training"), None)
    lines += ["", f"## Labels: {facts.label_set} ({len(facts.classes)} classes)", ""]
    if train is not None and "classes" in train.profile:
        n = max(int(train.profile["records"]), 1)
        lines += ["| class | training positives | prevalence | test AUC [95% CI] | threshold |", "|---|---|---|---|---|"]
        thresholds = [f"{v:.3f}" for v in facts.thresholds] or ["–"] * len(facts.classes)  # none without a report
        for name, threshold in zip(facts.classes, thresholds, strict=True):
            count, key = int(train.profile["classes"].get(name, 0)), f"test_auc_{metric_class_name(name)}"
            auc = (f"{_number(k, key)} [{_number(k, f'{key}_ci_low')}, {_number(k, f'{key}_ci_high')}]"
                   if key in k else "– (too few test records)")
            lines.append(f"| {name} | {count} | {count / n:.3f} | {auc} | {threshold} |")
    lines += ["", "## Input contract", "", f"{facts.input_contract}. Signals in mV, 12 leads in the standard order "
              "(I, II, III, aVR, aVL, aVF, V1–V6), any length of at least one window; other rates are resampled.",
              "", "## Results on its test split", "",
              f"- Macro AUC {_number(k, 'test_macro_auc')} [{_number(k, 'test_macro_auc_ci_low')}, "
              f"{_number(k, 'test_macro_auc_ci_high')}] (95% bootstrap CI)",
              f"- ECE {_number(k, 'test_ece')} before, {_number(k, f'test_ece_{facts.primary_calibration}')} after "
              f"{facts.primary_calibration} calibration fitted on validation",
              "- Thresholds: per class, maximising F1 on validation (uncalibrated scale)", "",
              "## Promotion", "",
              ("Registered as `challenger`; `champion` too if the model had none. " if facts.champion_if_first else
               "Registered as `challenger` only. ")
              + "`ecgtl promote` moves `champion` after a paired test on the same test records; its decision is "
              "on this version's `ecgtl.promotion.*` tags.", "", "## Limitations", ""]
    lines += [f"- {note}" for note in _limitations(facts)]
    return "\n".join(lines) + "\n"


def dataset_tags(datasets: Sequence[SplitDataset]) -> dict[str, str]:
    """`ecgtl.dataset.<context>` = `name@digest` per dataset: the registry version shows its run's data."""
    tags: dict[str, str] = {}
    for d in datasets:
        key = runs.dataset_tag(d.context)
        tags[key] = f"{tags[key]}, {d.name}@{d.digest}" if key in tags else f"{d.name}@{d.digest}"
    return tags
