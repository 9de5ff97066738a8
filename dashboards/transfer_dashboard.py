"""Transfer page alone: fine-tuned vs scratch test macro AUC (95% CIs) against the fraction of target training
data, from the runs in an MLflow store. It is one page of the full site (`ecgtl dashboard`); this script writes
just that page.

    python dashboards/transfer_dashboard.py [--experiment ecgtl] [--out transfer_dashboard.html]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project, also when not pip-installed
from ecgtl import runs, tracking  # noqa: E402
from ecgtl.dashboard import learning_curve_figures, learning_curves  # noqa: E402
from ecgtl.plotting import figures_to_html  # noqa: E402

dashboard_figures = learning_curve_figures  # the name this script has always exported


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default=os.environ.get("MLFLOW_EXPERIMENT_NAME", tracking.DEFAULT_EXPERIMENT))
    parser.add_argument("--out", default="transfer_dashboard.html")
    args = parser.parse_args()
    tracking.configure(args.experiment)
    curves = learning_curves(tracking.stage_runs(("finetune", "scratch")))
    if curves.empty:
        raise SystemExit("no finished finetune/scratch runs with test metrics in this experiment yet")
    with open(args.out, "w", encoding="utf-8") as handle:
        handle.write(figures_to_html(learning_curve_figures(curves), "ecgtl transfer dashboard"))
    print(curves.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"wrote {args.out} ({runs.TARGET} x stage x fraction)")


if __name__ == "__main__":
    main()
