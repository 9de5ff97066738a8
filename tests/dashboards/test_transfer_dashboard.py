"""The transfer dashboard turns finished runs into learning curves (mean over seeds, CIs)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd

SCRIPT = Path(__file__).resolve().parents[2] / "dashboards" / "transfer_dashboard.py"


def _load():
    spec = importlib.util.spec_from_file_location("transfer_dashboard", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_learning_curves_average_seeds_and_keep_stages_apart():
    dashboard = _load()
    runs = pd.DataFrame({
        "tags.ecgtl.target": ["g12ec"] * 5, "tags.ecgtl.stage": ["finetune", "finetune", "scratch", "scratch", "pretrain"],
        "tags.ecgtl.fraction": ["0.1", "0.1", "0.1", "1", "1"], "metrics.test_macro_auc": [0.8, 0.9, 0.6, 0.85, 0.95],
        "metrics.test_macro_auc_ci_low": [0.7, 0.8, 0.5, 0.8, 0.9], "metrics.test_macro_auc_ci_high": [0.9, 1.0, 0.7, 0.9, 1.0],
    })
    curves = dashboard.learning_curves(runs)
    finetuned = curves[curves["tags.ecgtl.stage"] == "finetune"]
    assert len(curves) == 3 and abs(finetuned["auc"].item() - 0.85) < 1e-12 and finetuned["runs"].item() == 2
    figures = dashboard.dashboard_figures(curves)
    assert len(figures) == 1 and {trace.name for trace in figures[0].data} == {"finetune", "scratch"}


def test_tables_print_counts_as_integers_and_scores_to_four_decimals():
    import numpy as np
    import pandas as pd

    from ecgtl.dashboard import _table

    html = _table(pd.DataFrame({"records": [194.0, np.nan], "auc": [0.912345, 1.0], "version": [1, 2]}))
    assert ">194<" in html and "194.0000" not in html and ">–<" in html
    assert ">0.9123<" in html and ">1.0000<" in html
