"""Hyperparameter search (`mtdqn tune`): Optuna's sampler and pruner over ordinary training runs.

The spec (:mod:`.spec`), the objective taken from the report's metrics (:mod:`.objective`), the search and its
resumption (:mod:`.search`), trials on Ray (:mod:`.ray_trials`), the report (:mod:`.report`) and the built-in
tunes (:mod:`.presets`).

Called, ``mtdqn.tune("spec.toml", ...)`` is :func:`mtdqn.api.tune` (see :mod:`mtdqn.callables`).
"""

from mtdqn.callables import callable_as_api

callable_as_api(__name__)
