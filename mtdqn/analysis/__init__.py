"""Statistics, plots and the study report.

Reads stored study results (``study.json`` + ``cells/<variant>/``) and never
imports the training code. Entry point: ``build_report(study_dir)``.
"""

from .findings import compare_sentence, findings
from .load import Cell, Study, load_study
from .report import build_report
from .anchors import normalize
from .cka import linear_cka
from .curves import auc, moving_average, steps_to_threshold
from .stats import MIN_SEEDS, Estimate, bootstrap_diff, bootstrap_mean, diff_ci, mean_ci, min_detectable_difference

__all__ = [
    "build_report",
    "load_study",
    "Study",
    "Cell",
    "Estimate",
    "MIN_SEEDS",
    "bootstrap_mean",
    "bootstrap_diff",
    "min_detectable_difference",
    "mean_ci",
    "diff_ci",
    "moving_average",
    "auc",
    "steps_to_threshold",
    "normalize",
    "linear_cka",
    "compare_sentence",
    "findings",
]
