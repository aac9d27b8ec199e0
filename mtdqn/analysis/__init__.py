"""Statistics, plots and the study report.

Reads stored study results (``study.json`` + ``cells/<variant>/``) and never
imports the training code. Entry point: ``build_report(study_dir)``.
"""

from .findings import compare_sentence, findings
from .load import Cell, Study, load_study
from .report import build_report
from .stats import Estimate, auc, diff_ci, linear_cka, mean_ci, moving_average, normalize, steps_to_threshold

__all__ = [
    "build_report",
    "load_study",
    "Study",
    "Cell",
    "Estimate",
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
