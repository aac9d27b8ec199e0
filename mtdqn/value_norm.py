"""Per-task value normalization: PopArt (van Hasselt et al. 2016; Hessel et al. 2019).

van Hasselt, Guez, Hessel, Mnih, Silver, "Learning values across many orders
of magnitude", NeurIPS 2016; Hessel, Soyer, Espeholt, Czarnecki, Schmitt,
van Hasselt, "Multi-task Deep Reinforcement Learning with PopArt", AAAI 2019.

Each task's head outputs *normalized* Q-values q; the task's Q-values are
``Q_i = sigma_i * q_i + mu_i`` with running statistics of the task's TD
targets (mean mu_i and second moment nu_i, sigma_i = sqrt(nu_i - mu_i^2)).
Per update:

1. targets y_i are built from the *unnormalized* target-network Q-values
   (:func:`unnormalize`);
2. the statistics move towards the batch's targets (:func:`update_stats`,
   exponential moving averages with step size ``beta``);
3. "preserve outputs precisely": every head's last layer is rescaled so the
   unnormalized Q-values are unchanged by the new statistics
   (:func:`rescale_heads`: W' = W sigma/sigma', b' = (sigma b + mu - mu')/sigma'),
   for the online *and* the target network;
4. the TD loss is taken between the normalized Q-values and the normalized
   targets (:func:`normalize`), so every task's loss and gradient on the shared
   trunk have the same scale whatever its rewards.

Greedy actions need no statistics: sigma_i > 0 and mu_i is one number per
task, so ``argmax_a Q_i(s, a) = argmax_a q_i(s, a)``; acting, evaluation and
the argmax inside the TD target use the network's outputs as they are.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["PopArtStats", "BETA", "popart_init", "sigma", "normalize", "unnormalize", "update_stats",
           "rescale_heads", "popart_step"]

BETA = 1e-3
"""Step size of the statistics, per update: each update moves mu_i and nu_i by beta towards the mean (and mean
square) of the task's batch of targets, so they follow the targets within ~1/beta = 1,000 updates (our runs
make ~1e4).  Not the same unit as Hessel et al.'s 3e-4: rlax's ``art`` steps once per target, so a batch of B
targets moves its statistics ~B times one step; per target, this is beta / B (8e-6 at batches of 128), so the
statistics leave their start (mu 0, sigma 1) over the first thousands of updates (targets ~N(3000, 1500):
mu 286, sigma 995 after 100 updates; 1,896 and 1,876 after 1,000; 2,851 and 1,604 after 3,000).  Strategies
that read loss ratios are given losses in reward units for that reason (:func:`mtdqn.train.step.strategy_losses`)."""
SIGMA_RANGE = (1e-4, 1e6)  # sigma is clipped to this range (Hessel et al. 2019)


class PopArtStats(NamedTuple):
    mean: jax.Array  # (tasks,) mu_i
    second: jax.Array  # (tasks,) nu_i, running mean of y^2


def popart_init(num_tasks: int) -> PopArtStats:
    """mu = 0, sigma = 1: the heads start out unnormalized."""
    return PopArtStats(jnp.zeros((num_tasks,), jnp.float32), jnp.ones((num_tasks,), jnp.float32))


def sigma(stats: PopArtStats) -> jax.Array:
    """Per-task scale (tasks,)."""
    var = jnp.maximum(stats.second - stats.mean**2, SIGMA_RANGE[0] ** 2)
    return jnp.clip(jnp.sqrt(var), *SIGMA_RANGE)


def _per_task(x: jax.Array, ndim: int) -> jax.Array:
    """(tasks,) -> (tasks, 1, ..., 1) to broadcast against an array of rank ``ndim``."""
    return x.reshape(-1, *([1] * (ndim - 1)))


def normalize(stats: PopArtStats, values: jax.Array) -> jax.Array:
    """(values - mu_i) / sigma_i for values with a leading task axis."""
    return (values - _per_task(stats.mean, values.ndim)) / _per_task(sigma(stats), values.ndim)


def unnormalize(stats: PopArtStats, values: jax.Array) -> jax.Array:
    """sigma_i * values + mu_i for values with a leading task axis (e.g. (tasks, batch, actions))."""
    return values * _per_task(sigma(stats), values.ndim) + _per_task(stats.mean, values.ndim)


def update_stats(stats: PopArtStats, targets: jax.Array, beta: float = BETA) -> PopArtStats:
    """Move mu_i and nu_i towards the mean of the task's targets (tasks, batch)."""
    targets = jax.lax.stop_gradient(targets)
    mean = (1.0 - beta) * stats.mean + beta * jnp.mean(targets, axis=1)
    second = (1.0 - beta) * stats.second + beta * jnp.mean(targets**2, axis=1)
    return PopArtStats(mean, second)


def rescale_heads(heads: dict[str, jax.Array], old: PopArtStats, new: PopArtStats) -> dict[str, jax.Array]:
    """Per-task head {"kernel": (tasks, F, A), "bias": (tasks, A)} giving the same unnormalized Q under ``new``."""
    s_old, s_new = sigma(old), sigma(new)
    kernel = heads["kernel"] * _per_task(s_old / s_new, heads["kernel"].ndim)
    bias = (heads["bias"] * s_old[:, None] + (old.mean - new.mean)[:, None]) / s_new[:, None]
    return {**heads, "kernel": kernel, "bias": bias}


def popart_step(
    stats: PopArtStats, params: Any, target_params: Any, targets: jax.Array, beta: float = BETA
) -> tuple[PopArtStats, Any, Any, jax.Array]:
    """Steps 2-4 above: new statistics, both networks' heads rescaled, normalized targets (tasks, batch)."""
    new = update_stats(stats, targets, beta)
    params = {**params, "heads": rescale_heads(params["heads"], stats, new)}
    target_params = {**target_params, "heads": rescale_heads(target_params["heads"], stats, new)}
    return new, params, target_params, normalize(new, targets)
