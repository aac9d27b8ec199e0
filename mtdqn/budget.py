"""A new run's budget: at least one gradient update (else a one-line error), and a warning where it makes too
few for the agent, or for its strategy, to do what it is asked.

Apart from :mod:`mtdqn.config` (which the report's analysis reads, never importing JAX) because a strategy's own
rule says how many updates it takes before it departs from ``sum`` (:attr:`mtdqn.strategies.StrategySpec.as_sum`),
and the strategies are JAX code."""

from __future__ import annotations

from mtdqn.config import TrainConfig, derive, first_update_iteration, updates_before_iteration
from mtdqn.errors import ConfigError, FewUpdatesWarning, count, warn_user

__all__ = ["FEW_UPDATES", "check_train_budget"]

FEW_UPDATES = 100  # below this many updates a run is warned that it can hardly learn


def check_train_budget(cfg: TrainConfig, cadence: str = "", *, strategy_rules: bool = True,
                       starts: str | None = "--learning-starts") -> None:
    """A new run's budget makes at least one update (else a one-line ConfigError); a warning when few.

    Apart from :func:`check_new_run` so that a study can say the budget is the
    study's (``steps``) rather than blame one of a variant's options.  The
    distilled student's record holds the distillation's budget, so it is
    checked by the same rule; ``cadence``: how its updates are spaced where no --train-every sets it (a
    distillation updates once per vector step).  ``strategy_rules`` False leaves out the strategy's own warning
    (it imports JAX): the checks made before JAX starts, which the run's own check follows.  ``starts``: how the
    caller can lower the learning start, which the refusal offers (a study file's ``learning_starts``), or None
    where it cannot (a preset's is its own)."""
    d = derive(cfg)
    window = d.iters_per_chunk * cfg.num_envs  # env steps per task of one --log-every window (chunk)
    first = first_update_iteration(d)
    updates = updates_before_iteration(d, d.total_iters)
    if updates == 0:
        least = (first // d.iters_per_chunk) * window + 1  # the chunks up to and including the first update's
        least_rounded = (first // d.iters_per_chunk + 1) * window
        rounded = (f" ({d.env_steps:,} after rounding up to whole --log-every windows)"
                   if d.env_steps != cfg.steps else "")
        raise ConfigError(
            f"no update would run: --steps {cfg.steps:,}{rounded} ends before the first update, after env step "
            f"{(first + 1) * cfg.num_envs:,} per task ({starts or 'learning_starts'} {cfg.dqn.learning_starts:,}); "
            f"use --steps >= {least:,} (it trains {least_rounded:,}: whole --log-every windows of {window:,})"
            + (f" or lower {starts}" if starts else ""))
    if updates < FEW_UPDATES:
        every = cadence or f"--train-every {cfg.dqn.train_every} env steps per task"
        warn_user(f"--steps {cfg.steps:,} makes only {count(updates, 'gradient update')} "
                  f"(fewer than {FEW_UPDATES}: one every {every} after --learning-starts "
                  f"{cfg.dqn.learning_starts:,}): the agent can hardly learn", FewUpdatesWarning)
    elif strategy_rules and d.strategy not in ("sum", "weighted"):  # a rule that may wait before it acts (dwa)
        from mtdqn.strategies import updates_as_sum  # imports JAX, starts nothing (this module: not the analysis's)

        idle, why = updates_as_sum(d.strategy, cfg.strategy_args)
        if updates <= idle:
            warn_user(f"--strategy {d.strategy}: --steps {cfg.steps:,} makes {count(updates, 'gradient update')}, "
                      f"and {why}: the run trains as --strategy sum", FewUpdatesWarning)
