"""Studies: a grid of variants (train options) × seeds, run locally or on Ray, then reported.

``resolve_spec("quick")`` or ``load_spec("my.toml")`` gives a validated
:class:`StudySpec`; :func:`run_study` runs its unfinished cells and builds the
report with :mod:`mtdqn.analysis`.
"""

from mtdqn.studies.presets import PRESETS, resolve_spec
from mtdqn.studies.cell import CellConfig, cell_status, run_cell
from mtdqn.studies.runner import StudyResult, build, cell_configs, run_study
from mtdqn.studies.spec import DEFAULT_THRESHOLDS, OPTIONS, StudySpec, build_spec, load_spec, variant_config

__all__ = [
    "PRESETS", "resolve_spec", "StudySpec", "build_spec", "load_spec", "variant_config", "OPTIONS",
    "DEFAULT_THRESHOLDS", "CellConfig", "StudyResult", "cell_configs", "cell_status", "run_cell", "run_study", "build",
]
