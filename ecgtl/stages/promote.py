"""The promotion gate: move `champion` to a challenger only if it is measurably better on the same records.

1. The challenger (`--challenger`: a version number or alias, default the `challenger` alias) and the current
   champion of one registered model. No champion yet: the challenger becomes champion. Refused with one line:
   a model with no versions, an alias that points nowhere, a challenger whose classes, leads, sampling rate or
   input domain differ from the champion's (their scores would not be comparable).
2. Both are scored on the challenger's held-out test records: from the logged predictions when both runs
   scored the same records, else by running the champion (and, if needed, the challenger) on the challenger's
   test split again. Leak guard: if either model was trained on any of those records (a champion trained on
   another `split_seed` of the same data has seen most of them), the gate refuses and says how many.
3. Paired bootstrap of the macro AUC gain (challenger - champion) over those records. `champion` moves only if
   the gain's lower 95% bound exceeds `margin` (default 0) and the challenger's ECE (after its stored
   calibration) is not worse than the champion's by more than `ece_tolerance`.
4. The decision, its numbers and reason become tags of the challenger version (`ecgtl.promotion.*`) and a
   `promote` run; `dry_run` only prints. The alias is moved by one registry update after the tags are written,
   so exactly one version holds `champion` at every moment, also if the command is killed midway.
5. Compare-and-set: right before moving, under a lock shared by the gates of this machine, the champion is read
   again; if another gate moved it meanwhile, this one refuses ("run promote again"), so the final champion
   was always compared with the version it replaced.
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from ecgtl import runs, tracking
from ecgtl.config import flatten
from ecgtl.data.dataset import valid_lengths
from ecgtl.data.lineage import TrainingRecords, overlaps
from ecgtl.data.sources import dataset_identity
from ecgtl.errors import EcgtlError
from ecgtl.evaluation.calibration import calibrated_probabilities, calibration_summary, calibrator_from_dict
from ecgtl.evaluation.metrics import left_out_classes, paired_bootstrap
from ecgtl.inference import load_bundle
from ecgtl.inputs import input_mismatch
from ecgtl.stages.configs import PromoteConfig

STAGE = runs.PROMOTE
CHAMPION = tracking.CHAMPION


@dataclass
class Decision:
    model: str
    challenger: int
    champion: int | None
    promote: bool
    reason: str
    gain: float = float("nan")
    gain_ci_low: float = float("nan")
    gain_ci_high: float = float("nan")
    ece_challenger: float = float("nan")
    ece_champion: float = float("nan")
    n_records: int = 0
    scored_from: str = ""
    classes: str = ""  # the classes the AUC gain averaged (metrics.macro_classes), comma-separated
    left_out: str = ""  # classes with an AUC on these records but too few of them for the macro

    def tags(self) -> dict[str, str]:
        return {runs.promotion_tag(key): (f"{value:.6g}" if isinstance(value, float) else str(value))
                for key, value in asdict(self).items() if key != "model"}

    def describe(self) -> str:
        verdict = "PROMOTE" if self.promote else "KEEP"
        return f"{verdict} {self.model} v{self.challenger} (champion v{self.champion}): {self.reason}"


def _comparable(challenger_info, champion_info) -> None:
    differences = (["classes"] if list(challenger_info.classes) != list(champion_info.classes) else []) + \
        input_mismatch(challenger_info.input_pipeline().contract, champion_info.input_pipeline().contract)
    if differences:
        raise EcgtlError(f"the challenger was trained on other {' and '.join(differences)} than the champion; "
                         "their scores are not comparable")


@dataclass
class TestScores:
    """Labels, record ids and both models' logits on the challenger's test records."""

    labels: np.ndarray
    record_ids: list[str]
    challenger_logits: np.ndarray
    champion_logits: np.ndarray
    source: str


def _tested_on(info) -> tuple[str, int]:
    """The spec and split seed of the data a bundle's model was tested on."""
    trained = info.training[-1] if info.training else {}
    spec = info.extra.get("spec") or trained.get("spec")
    return spec, int(trained.get("split_seed", 0))


def _test_scores(challenger, champion, bundles: dict) -> TestScores:
    mine = tracking.load_predictions(challenger.run_id, "test")
    theirs = tracking.load_predictions(champion.run_id, "test")
    if list(mine["record_ids"]) == list(theirs["record_ids"]):
        return TestScores(mine["labels"], list(mine["record_ids"]), mine["logits"], theirs["logits"],
                          "logged predictions")
    from ecgtl.data.cache import prepare
    from ecgtl.data.prepare_config import PrepareConfig

    (model_a, info_a), (model_b, info_b) = bundles["challenger"], bundles["champion"]
    spec, split_seed = _tested_on(info_a)
    if not spec:
        raise EcgtlError(f"{challenger.name} v{challenger.version}: its bundle does not say which data it was tested on")
    prepared = prepare(PrepareConfig(spec=spec, fs=info_a.fs, label_set=info_a.label_set, split_seed=split_seed))
    test = prepared.split("test")
    lengths = valid_lengths(test)
    return TestScores(test.labels, list(test.index["record_id"]),
                      info_a.input_pipeline().predict_logits(model_a, test.signals, lengths),
                      info_b.input_pipeline().predict_logits(model_b, test.signals, lengths), f"re-inference on {spec}")


def _leaks(bundles: dict, numbers: dict, record_ids: list[str]) -> str:
    """Why the comparison would flatter a model that trained on these test records ('' when neither did)."""
    spec, _ = _tested_on(bundles["challenger"][1])
    if not spec:
        return ""
    identity = dataset_identity(spec)
    reasons = []
    for role in ("challenger", "champion"):
        history = [TrainingRecords.from_dict(t) for t in bundles[role][1].training]
        seen = {r for leak in overlaps(history, identity, record_ids) for r in leak.record_ids}
        if seen:
            reasons.append(f"the {role} v{numbers[role]} was trained on {len(seen)} of the {len(record_ids)} test "
                           "records")
    return "; ".join(reasons)


def _ece(info, labels: np.ndarray, logits: np.ndarray) -> float:
    calibrator = calibrator_from_dict(info.calibrator) if info.calibrator else None
    return calibration_summary(labels, calibrated_probabilities(logits, calibrator)).ece


def decide(config: PromoteConfig) -> Decision:
    """The decision and its numbers, without changing anything."""
    tracking.model_versions(config.model)
    challenger = tracking.resolve_version(config.model, config.challenger)
    champion = tracking.version_by_alias(config.model, CHAMPION)
    number = int(challenger.version)
    if champion is None:
        return Decision(config.model, number, None, True, "no champion yet: the challenger becomes champion")
    if int(champion.version) == number:
        return Decision(config.model, number, number, False, "the challenger already is the champion")
    numbers = {"challenger": number, "champion": int(champion.version)}
    with tempfile.TemporaryDirectory() as tmp:
        bundles = {role: load_bundle(tracking.download_model(f"models:/{config.model}/{n}", Path(tmp) / role))
                   for role, n in numbers.items()}
        _comparable(bundles["challenger"][1], bundles["champion"][1])
        scores = _test_scores(challenger, champion, bundles)
    info_a, info_b = bundles["challenger"][1], bundles["champion"][1]
    leak = _leaks(bundles, numbers, scores.record_ids)
    if leak:
        return Decision(config.model, number, int(champion.version), False,
                        f"refused: {leak}; its scores on them would be inflated (another split_seed of the same "
                        "data?) — compare on records neither model has seen", n_records=len(scores.labels),
                        scored_from=scores.source)
    labels, logits_a, logits_b, source = scores.labels, scores.challenger_logits, scores.champion_logits, scores.source
    gain = paired_bootstrap(labels, logits_a, logits_b, n_resamples=config.n_bootstrap, seed=config.seed)
    covered = [name for name, inside in zip(info_a.classes, gain.in_macro, strict=True) if inside]
    left_out = list(left_out_classes(labels, info_a.classes))
    ece_a, ece_b = _ece(info_a, labels, logits_a), _ece(info_b, labels, logits_b)
    better = gain.low > config.margin
    calibrated = ece_a - ece_b <= config.ece_tolerance
    if better and calibrated:
        reason = (f"macro AUC gain {gain.observed:+.4f} [{gain.low:+.4f}, {gain.high:+.4f}] has its lower bound above "
                  f"the margin {config.margin:g}; ECE {ece_a:.4f} vs {ece_b:.4f} within tolerance {config.ece_tolerance:g}")
    elif not better:
        reason = (f"macro AUC gain {gain.observed:+.4f} [{gain.low:+.4f}, {gain.high:+.4f}]: the lower bound does not "
                  f"exceed the margin {config.margin:g}")
    else:
        reason = (f"ECE {ece_a:.4f} is worse than the champion's {ece_b:.4f} by more than {config.ece_tolerance:g} "
                  f"(AUC gain {gain.observed:+.4f} [{gain.low:+.4f}, {gain.high:+.4f}] would have passed)")
    reason += f" (macro over {len(covered)} classes" + (f"; {len(left_out)} too rare left out)" if left_out else ")")
    return Decision(config.model, number, int(champion.version), better and calibrated, reason, gain.observed,
                    gain.low, gain.high, ece_a, ece_b, len(labels), source, ",".join(covered), ",".join(left_out))


def promote(config: PromoteConfig) -> Decision:
    config.validate()
    tracking.configure()
    decision = decide(config)
    print(decision.describe(), file=sys.stderr)
    if config.dry_run:
        return decision
    tags = {runs.STAGE: STAGE, runs.MODEL: config.model, runs.DECISION: "promote" if decision.promote else "keep"}
    with tracking.stage_run(f"promote-{config.model}-v{decision.challenger}", tags, flatten(config)), \
            tracking.process_lock(STAGE, tracking.tracking_uri(), config.model):
        current = tracking.version_by_alias(config.model, CHAMPION)
        now = None if current is None else int(current.version)
        if decision.promote and now != decision.champion:  # compare-and-set: another gate moved it meanwhile
            decision = replace(decision, promote=False, reason=(
                f"refused: champion moved from v{decision.champion} to v{now} while this gate compared; run "
                f"promote again to compare v{decision.challenger} with v{now}"))
            print(decision.describe(), file=sys.stderr)
            tracking.set_tags({runs.DECISION: "keep"})
        tracking.log_epoch(0, {k: v for k, v in asdict(decision).items()
                               if isinstance(v, float) and np.isfinite(v)})
        tracking.set_tags({runs.REASON: decision.reason[:4000], **decision.tags()})
        tracking.tag_version(config.model, decision.challenger, decision.tags())  # before the alias moves
        if decision.promote:
            tracking.move_alias(config.model, CHAMPION, decision.challenger)
    return decision
