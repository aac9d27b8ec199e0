"""How a run is driven, apart from its config: the one declaration of the run options.

Every command that trains (`mtdqn train`, `finetune`, `extend`), every study
cell and the run directory's record read these fields, their defaults and
their help from :class:`RunOptions` alone: the CLI builds its flags from the
field docstrings, a study file's ``eval_episodes`` / ``eval_every`` /
``checkpoint_every`` fill one, and config.json and every checkpoint store
:meth:`RunOptions.record`.  A resumed run keeps its stored options except
those given anew: ``replace(stored, **given)`` (:func:`resolve`).

JAX-free, like :mod:`mtdqn.rundir` beside it: the CLI plans devices from a
stored record before JAX starts, and a study validates without JAX.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from mtdqn.errors import ConfigError

__all__ = ["RunOptions", "OnEval", "LEAST", "MAX_EPISODES", "check_episodes", "resolve"]

OnEval = Callable[[int, list[dict[str, Any]]], None]
"""An observer of a run (not an option: nothing of it is recorded): called after each greedy evaluation during
training, once the chunk's tables and checkpoint are written, with the env step and every evaluation row so far
(``evals.parquet``'s rows).  It may raise to stop the run, which then stays resumable from its last checkpoint
(`mtdqn tune`'s pruner does).  The last step's evaluation is not passed: the run is then finishing (its final
checkpoint and summary follow), and the returned Run holds it (``final_eval``, ``evals``)."""


@dataclass(frozen=True)
class RunOptions:
    """How a run is driven: recorded in config.json and with every checkpoint, kept on resume unless given anew.

    ``devices`` is recorded as the count the seeds were split over: it is
    what makes a resumed run bit-identical to an uninterrupted one.
    """

    checkpoint_every: int = 0
    """Also checkpoint every this many env steps per task, in whole logging windows (0: only at the end)."""
    eval_episodes: int = 10
    """Greedy episodes per task and seed in each evaluation."""
    devices: int = 0
    """Split the seeds over this many local devices (CPU cores or GPUs; 0: as many as the seeds can use)."""
    eval_every: int = 0
    """Also evaluate greedily every this many env steps per task, in whole logging windows, into evals.parquet
    (0: only at the end)."""
    patience: int = 0
    """Early stopping: stop after this many evaluations without improvement and restore each seed's best
    parameters (needs --eval-every; 0: off)."""
    test_episodes: int = 0
    """At the end, a test evaluation of this many greedy episodes per task and seed on episode starts of its
    own: printed and written to test_eval.json (0: none)."""
    keep_best: bool = False
    """Never stop, but restore at the end each seed's parameters of the evaluation with the highest sum over
    tasks of the discounted greedy return (D'Eramo et al. 2020's --save-shared; needs --eval-every)."""
    probes: bool = True
    """Measure why sharing helps or hurts: the gradient probe at every evaluation and at the end
    (grad_probe.parquet) and the CKA of the final trunk features (cka.parquet).  They read the state and
    change no number of the run; off, neither table is written and their programs are never compiled
    (`mtdqn tune`'s trials, whose probes no one reads, run without them unless the spec sets probes = true)."""

    def record(self) -> dict[str, Any]:
        """``{"options": ...}`` as config.json and checkpoints hold it; options added later are written only
        when not at their default, so a run that does not use them records what older versions did."""
        written = {name: value for name, value in dataclasses.asdict(self).items()
                   if name in _ALWAYS_RECORDED or value != _DEFAULTS[name]}
        return {"options": written}

    @staticmethod
    def from_record(record: Mapping[str, Any], source: str = "a run's record") -> RunOptions:
        """The options of a stored record (config.json or a checkpoint's, named by ``source`` in errors), older
        ones included: a missing option had its default, except ``devices``, which runs made before the seed
        layout existed trained on one of."""
        stored = record.get("options", {})
        if not isinstance(stored, Mapping):
            raise ConfigError(f"{source}: options must be a table of run options, got {stored!r}")
        kinds = {f.name: type(f.default) for f in dataclasses.fields(RunOptions)}
        for name, value in stored.items():  # as JSON gives them: a bool is no count, a count no bool
            if name in kinds and (type(value) is not kinds[name]):
                raise ConfigError(f"{source}: option {name} must be {kinds[name].__name__}, got {value!r}")
        return RunOptions(**{"devices": 1, **{k: v for k, v in stored.items() if k in kinds}})

    def outcome(self) -> dict[str, Any]:
        """The options a run's numbers and tables depend on, by name: all but checkpoints, which change none (a
        resumed run is bit-identical), and the seed layout, which changes only their rounding.  Two runs whose
        outcomes are equal were driven alike (a study reuses a finished cell only then)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in ("checkpoint_every", "devices")}

    def check(self) -> None:
        """Raise a one-line ConfigError for values no run can be driven with."""
        for name, least in LEAST.items():
            value = getattr(self, name)
            if value < least:
                raise ConfigError(f"--{_flag(name)} must be {'>= 0' if least == 0 else '> 0'}, got {value}")
        for name in ("eval_episodes", "test_episodes"):
            check_episodes(f"--{_flag(name)}", getattr(self, name))
        if self.patience and not self.eval_every:
            raise ConfigError(f"--patience {self.patience} counts greedy evaluations during training: set "
                              "--eval-every")
        if self.patience and self.checkpoint_every:
            raise ConfigError("--patience keeps the best parameters in memory until the run ends: it cannot be "
                              "combined with --checkpoint-every (the run checkpoints at its end)")
        if self.keep_best and (self.patience or self.checkpoint_every or not self.eval_every):
            raise ConfigError("--keep-best keeps the best evaluation's parameters in memory until the run ends: it "
                              "needs --eval-every and takes neither --patience nor --checkpoint-every")


_ALWAYS_RECORDED = ("checkpoint_every", "eval_episodes", "devices", "eval_every")
_DEFAULTS = dataclasses.asdict(RunOptions())
LEAST: dict[str, int] = {"checkpoint_every": 0, "eval_episodes": 1, "devices": 0, "eval_every": 0, "patience": 0,
                         "test_episodes": 0}
"""The smallest valid value of each integer option."""
MAX_EPISODES = 100_000
"""The most greedy episodes an evaluation takes per task and seed (--eval-episodes, --test-episodes, `mtdqn
evaluate --episodes`): they run at once, each in its own environment, so memory grows with them (10^8 ended in
an out-of-memory traceback, 10^12 aborted inside XLA once the run had trained)."""


def check_episodes(flag: str, episodes: int) -> None:
    """A one-line ConfigError for more episodes per task and seed than :data:`MAX_EPISODES`."""
    if episodes > MAX_EPISODES:
        raise ConfigError(f"{flag} {episodes:,} is above {MAX_EPISODES:,}: every episode runs at once, each in its own "
                          "environment (evaluate in several calls for more)")


def _flag(name: str) -> str:
    return name.replace("_", "-")


def resolve(given: Mapping[str, Any], stored: RunOptions | None = None, *, resuming: bool = False) -> RunOptions:
    """The options a run is driven with, checked: those ``given`` over ``stored`` (a resumed run's own, with
    ``resuming``, or a new run's options as a whole), or over the defaults (None).  A resumed run keeps its
    ``probes``: its probe tables are of the whole run (off half-way, a mid-run probe would stand as the end's)."""
    unknown = [name for name in given if name not in {f.name for f in dataclasses.fields(RunOptions)}]
    if unknown:
        raise ConfigError(f"unknown run option {unknown[0]!r}; valid: "
                          f"{', '.join(f.name for f in dataclasses.fields(RunOptions))}")
    options = dataclasses.replace(stored or RunOptions(), **given)
    if resuming and stored is not None and options.probes != stored.probes:
        raise ConfigError(f"--probes {options.probes}: a resumed run keeps its own ({stored.probes}): its probes "
                          "are of the whole run")
    options.check()
    return options
