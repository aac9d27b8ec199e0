"""The numbers of a run that enter the compiled loop as traced values: what a population sweep varies.

PureJaxRL's observation: a hyperparameter that is only a number in the
update can be an argument of the training function instead of a constant in
it, and then one compiled program trains many settings.  :class:`Hypers`
holds those numbers; the compiled loop receives them beside the state, one
per seed (a sweep's members each their own), and every run passes them, so a
run trained alone and the same setting inside a sweep are the same program
per seed (``tests/test_sweep.py`` checks they agree bit for bit).  They are
config, not state: checkpoints do not hold them, so runs made before sweeps
existed still load.

What cannot be a traced value compiles separately: widths, sharing, batch
and buffer sizes, the tasks, the optimizer's kind, a strategy's integer
options, anything that changes a shape or a branch
(:data:`mtdqn.sweepspec.SWEEPABLE` lists what may be swept).  Dropout is
half of each: whether the loss's forward pass has dropout at all is the
program's (``--dropout 0``: none), its rate a traced value, so a sweep's rates
are all above 0 (rate 0 through dropout keeps every unit, but compiles to
other last bits than no dropout once XLA optimizes: such a sweep is refused).
The task weights are traced only in runs that set them
(:func:`mtdqn.train.step.loss_weights`).
Not every traced value may be swept: ``lr_decay_updates`` follows ``--steps``,
which a sweep's members share; it is traced so that runs differing only in
their length share one compiled program.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import jax
import numpy as np

from mtdqn.config import TrainConfig, derive
from mtdqn.strategies import parse_strategy_args
from mtdqn.strategies.base import real_options
from mtdqn.tasks import make_task_set

__all__ = ["Hypers", "hypers_of", "stack_hypers"]


class Hypers(NamedTuple):
    """One seed's traced hyperparameters (a pytree; the compiled loop vmaps it with the state)."""

    lr: jax.Array  # () --lr: the base rate --lr-schedule scales
    gammas: jax.Array  # (tasks,) each task's discount: its spec's gamma=, else --gamma
    tau: jax.Array  # () target update rate
    eps_start: jax.Array  # ()
    eps_end: jax.Array  # ()
    eps_decay_iters: jax.Array  # () iterations of the linear epsilon decay (--eps-fraction of the run), as a float
    lr_decay_updates: jax.Array  # () int32: the updates --lr-schedule linear decays the rate over (Derived.total_updates)
    task_weights: jax.Array  # (tasks,) --task-weights w_i; the update reads them only if set (step.loss_weights)
    strategy: dict[str, jax.Array]  # () each: --strategy-args' real-valued options by name (StrategyHypers.numbers)
    dropout_keep: jax.Array  # () 1 - --dropout: the probability a unit is kept when the program has dropout


def hypers_of(cfg: TrainConfig) -> Hypers:
    """The config's own values as float32 arrays, ``lr_decay_updates`` int32 like optax's update count (host
    side: numpy).  ``dropout_keep`` is 1 - rate in float64 rounded once, the constant dropout had when its rate
    was compiled in (1 - float32(rate) can round differently)."""
    d = cfg.dqn
    derived = derive(cfg)
    tasks = make_task_set(cfg.tasks).tasks
    f32 = np.float32
    numbers = real_options(parse_strategy_args(derived.strategy, cfg.strategy_args))
    return Hypers(
        lr=f32(d.lr), gammas=np.asarray([t.discount(d.gamma) for t in tasks], f32), tau=f32(d.tau),
        eps_start=f32(d.eps_start), eps_end=f32(d.eps_end), eps_decay_iters=f32(derived.eps_decay_iters),
        lr_decay_updates=np.int32(derived.total_updates), task_weights=np.asarray(derived.task_weights, f32),
        strategy={name: f32(value) for name, value in numbers.items()}, dropout_keep=f32(1.0 - d.dropout),
    )


def stack_hypers(each: Sequence[Hypers]) -> Hypers:
    """Per-seed hypers stacked on a leading axis: what the compiled loop's seed (or population) axis takes."""
    return jax.tree.map(lambda *values: np.stack(values), *each)
