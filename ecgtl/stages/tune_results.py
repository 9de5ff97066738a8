"""Results of a study, logged on the tune run (`tuning/`): counts per trial state, the best trial, the best of
each schedule family with a paired comparison of the two best families, and Optuna's figures."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from ecgtl import runs, tracking
from ecgtl.stages.tune_space import train_fields


def state_counts(study) -> dict[str, int]:
    states = [t.state.name for t in study.get_trials(deepcopy=False)]
    return {state: states.count(state) for state in ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")}


def best_per_schedule(study) -> dict:
    """The best COMPLETE trial of each schedule family."""
    best: dict = {}
    for trial in study.get_trials(deepcopy=False):
        if trial.state.name != "COMPLETE" or trial.value is None:
            continue
        schedule = trial.params.get("schedule", "fixed")
        if schedule not in best or trial.value > best[schedule].value:
            best[schedule] = trial
    return best


def log_study(study) -> dict:
    """Best params and value, counts per state, and Optuna's figures (self-contained HTML) on the parent run."""
    import optuna

    counts = state_counts(study)
    tracking.log_epoch(0, {f"trials_{state.lower()}": n for state, n in counts.items()})
    summary: dict = {"counts": counts, "study": study.study_name}
    completed = [t for t in study.trials if t.state.name == "COMPLETE"]
    if not completed:
        print(f"tune: no trial completed ({counts})", file=sys.stderr)
        return summary
    best = study.best_trial
    summary.update(best_value=best.value, best_params=best.params, best_trial=best.number,
                   best_train=train_fields(best.params))
    tracking.log_epoch(0, {"best_val_macro_auc": best.value})
    tracking.set_tags({f"best.{k}": str(v) for k, v in best.params.items()})
    families = best_per_schedule(study)
    summary["per_schedule"] = {k: t.value for k, t in families.items()}
    summary["schedule_finding"] = schedule_finding(families)
    print(f"tune: {counts}; best val macro AUC {best.value:.4f} with {best.params}", file=sys.stderr)
    if summary["schedule_finding"]:
        print(f"tune: {summary['schedule_finding']}", file=sys.stderr)
    figures = []
    for plot in (optuna.visualization.plot_optimization_history, optuna.visualization.plot_intermediate_values,
                 optuna.visualization.plot_param_importances, optuna.visualization.plot_parallel_coordinate,
                 optuna.visualization.plot_slice):
        try:
            figures.append(plot(study))
        except (ValueError, RuntimeError, ZeroDivisionError) as exc:  # e.g. importances need 2+ trials
            print(f"tune: {plot.__name__} skipped ({exc})", file=sys.stderr)
    from ecgtl.plotting import figures_to_html

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if figures:
            (folder / "optuna.html").write_text(figures_to_html(figures, f"ecgtl tuning: {study.study_name}"),
                                                encoding="utf-8")
        frame = study.trials_dataframe()
        frame.to_csv(folder / "trials.csv", index=False)
        (folder / "best.json").write_text(json.dumps({"value": best.value, "params": best.params,
                                                      "trial": best.number, "counts": counts,
                                                      "per_schedule": summary["per_schedule"],
                                                      "finding": summary["schedule_finding"]}, indent=1))
        tracking.log_artifacts(folder, "tuning")
    return summary


def schedule_finding(families: dict) -> str:
    """Best family vs runner-up: the difference of validation macro AUC with a paired bootstrap CI over the
    validation records (both trials' logits on the same records). Synthetic data only."""
    from ecgtl.evaluation.metrics import paired_bootstrap

    if len(families) < 2:
        return ""
    ranked = sorted(families.items(), key=lambda item: item[1].value, reverse=True)
    (first, a), (second, b) = ranked[0], ranked[1]
    try:
        pa = tracking.load_predictions(a.user_attrs[runs.RUN_ID_ATTR], "val")
        pb = tracking.load_predictions(b.user_attrs[runs.RUN_ID_ATTR], "val")
        difference = paired_bootstrap(pa["labels"], pa["logits"], pb["logits"], n_resamples=1000, seed=0)
        interval = f" [{difference.low:+.3f}, {difference.high:+.3f}], p = {difference.p_value:.3f}"
        observed = difference.observed
    except Exception:  # predictions missing (an older trial) or too few records for a CI
        observed, interval = a.value - b.value, " (no CI: validation logits unavailable)"
    return (f"best schedule {first} (val macro AUC {a.value:.4f}) vs {second} ({b.value:.4f}): "
            f"{observed:+.4f}{interval} on validation records")
