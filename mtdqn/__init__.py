"""mtdqn: multi-task deep Q-learning with shared network structures.

The Python API (each function is the `mtdqn` command of the same name; options are the CLI's, by their flat
names with underscores)::

    import mtdqn
    run = mtdqn.train(tasks=["CartPole-v1", "Acrobot-v1"], steps=20_000, seeds=2, out="runs/two")
    run.evals.query("step == step.max()").groupby("task").return_mean.mean()  # pandas DataFrames
    mtdqn.register_task("MyEnv-v0", make_my_env)      # your own gymnax-API environment, in the compiled loop
    study = mtdqn.study("quick", "runs/quick-3", seeds=3)  # cells as Runs, the report's tables, report()
    best = mtdqn.tune("tune.toml", n_trials=8)         # Optuna search over train options; best, report

- :func:`train`, :func:`finetune`, :func:`extend`, :func:`distill` return a :class:`Run` (``train`` with a
  ``sweep``: a list of them);
  :func:`study` a :class:`Study`; :func:`tune` a :class:`~mtdqn.tune.run.TuneResult`; :func:`open_run` and :func:`open_study` open existing directories.
- :func:`register_task` makes your own environment a task (or name it ``module:factory`` anywhere a task goes).
- :func:`load_agent` loads a trained run's Q-network to act; :func:`play` (``mtdqn.play(run, task, gif=...)``)
  watches it; :func:`evaluate` (``mtdqn.evaluate(run, episodes=100)``) measures its greedy returns.
- Bad input raises :class:`ConfigError` with the CLI's one-line message; nothing is written.

Importing ``mtdqn`` is cheap and starts no JAX: each name is imported when first used, so that the CLI and
these functions plan JAX's CPU devices (a seed per core where the seeds allow) before JAX starts.  Code that
starts JAX first (your own, or an import of gymnax) leaves the devices it started with: a run that could have
used more says so in a warning.  :func:`register_task`, which must run your env, presents every core first.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from mtdqn.errors import ConfigError, TrainingDiverged
from mtdqn.version import __version__

if TYPE_CHECKING:  # for type checkers and editors; at run time each name is imported when first used
    from mtdqn.api import distill, evaluate, extend, finetune, play, study, train, tune
    from mtdqn.deploy import LoadedAgent, load_agent
    from mtdqn.results import Run, Study, open_run, open_study
    from mtdqn.tasks.registry import register_task

__all__ = ["train", "study", "tune", "finetune", "extend", "distill", "open_run", "open_study", "Run", "Study",
           "register_task", "load_agent", "LoadedAgent", "play", "evaluate", "ConfigError", "TrainingDiverged",
           "__version__"]

# train, finetune, distill, tune, play and evaluate are also the names of modules of the package: those modules are
# callable as the API's functions (mtdqn.callables), so each name means one thing whether or not training code
# imported them.
_MODULES = ("train", "finetune", "distill", "tune", "play", "evaluate")
_SUBPACKAGES = ("devices", "strategies", "tasks")
"""Modules reachable as ``mtdqn.devices`` after ``import mtdqn`` alone (a module is an attribute of its package
only once imported)."""
_LAZY = {
    "study": "mtdqn.api", "extend": "mtdqn.api", "open_run": "mtdqn.results", "open_study": "mtdqn.results",
    "Run": "mtdqn.results",
    "Study": "mtdqn.results", "register_task": "mtdqn.tasks.registry", "load_agent": "mtdqn.deploy",
    "LoadedAgent": "mtdqn.deploy",
}


def __getattr__(name: str) -> Any:
    """The public names, imported when first used: importing ``mtdqn`` starts no JAX."""
    if name in ("play", "evaluate"):  # mtdqn.play(run, task, gif=...): its imports start JAX (gymnax): cores first
        from mtdqn.devices import use_cpu_cores

        use_cpu_cores()
    if name in _MODULES:
        return import_module(f"mtdqn.{name}")
    if name in _SUBPACKAGES:  # named in the README and the warnings (mtdqn.devices.use_cpu_cores())
        if name == "tasks":  # gymnax's import starts JAX: cores first, as for register_task
            from mtdqn.devices import use_cpu_cores

            use_cpu_cores()
        return import_module(f"mtdqn.{name}")
    if name == "register_task":  # checking an env runs it, and importing gymnax alone starts JAX: first present
        from mtdqn.devices import use_cpu_cores  # every core as a device, so that seeds can spread over them

        use_cpu_cores()
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mtdqn' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
