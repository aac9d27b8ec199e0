"""Policy distillation (Rusu et al. 2016): the teachers' policies in one shared-trunk multi-task student.

``config`` (the options) imports no JAX, so the CLI can build its parser
before JAX starts; everything else is imported when first used.  Called,
``mtdqn.distill(teachers, out, ...)`` is :func:`mtdqn.api.distill` (see :mod:`mtdqn.callables`).
"""

from mtdqn.callables import callable_as_api
from mtdqn.distill.config import DistillConfig, validate_distill

callable_as_api(__name__)

__all__ = ["DistillConfig", "validate_distill", "classification_report", "DistillResult", "distill"]


def __getattr__(name: str):
    if name == "classification_report":
        from mtdqn.distill.report import classification_report

        return classification_report
    if name in ("DistillResult", "distill"):
        from mtdqn.distill import run

        return getattr(run, name)
    raise AttributeError(f"module 'mtdqn.distill' has no attribute {name!r}")
