"""End-of-run probes of a trained agent: representation similarity and a gradient-cosine null.

Called once, by :func:`mtdqn.train.run.train` after the last chunk, on the
final state; the rows go to ``cka.parquet`` and ``grad_probe.parquet``.

* **CKA** (Kornblith et al. 2019) between every two tasks' trunk features on
  one shared set of probe states (up to 128 replay observations per task),
  for the trained network and for the network at initialization (the same
  parameter keys, the same probe states): similarity the architecture gives
  before any learning is not something training did.
* **Gradient probe**: pairs of independent minibatches of each task, drawn
  from its replay with the run's batch size; the cosine between one task's
  shared-parameter gradients on the two minibatches of a pair is the
  *same-task null*: how aligned two gradients of the same objective are
  once minibatch noise is in them.  The between-task cosines on the first
  minibatch of each pair, same parameters and moment, sit beside it.  Both
  are averaged over :data:`PROBE_PAIRS` pairs (one pair alone swings by
  +-0.5 on a trained agent).  A between-task cosine is "conflict" beyond
  noise only if it is clearly below the null.
"""

from __future__ import annotations

import itertools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mtdqn.networks import init_params, torso_features
from mtdqn.train.agent import Agent, TrainState
from mtdqn.train.loop import Trainer, seed_keys, split_root
from mtdqn.train.step import (
    grad_diagnostics, sample_batch, shared_trains_now, task_gradients, td_targets, trainable_shared,
)
from mtdqn.value_norm import normalize

__all__ = ["cka_rows", "gradient_probe_rows", "minibatch_cosines", "PROBE_KEY", "PROBE_PAIRS"]

PROBE_KEY = 0x5EED
"""Folded into each seed's root key for the probe's minibatches: fixed, so a rerun gives the same rows."""
PROBE_PAIRS = 16
"""Minibatch pairs the probe averages over."""


def _linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    from mtdqn.analysis.stats import linear_cka  # the analysis' one definition; numpy only

    return linear_cka(x, y)


def cka_rows(trainer: Trainer, state: TrainState, probe_per_task: int = 128) -> list[dict[str, Any]]:
    """Per seed and task pair: linear CKA of trunk features, trained (``cka``) and at init (``cka_init``)."""
    agent = trainer.agent
    names = agent.task_set.names
    rows = []
    for s, key in enumerate(seed_keys(agent.seeds)):
        params = jax.tree.map(lambda x: x[s], state.params)
        initial = init_params(agent.arch, split_root(key).params)  # how fresh_state made this seed's network
        size = int(state.replay.size[s])
        probe = state.replay.data.obs[s, :, : min(size, probe_per_task)]  # (tasks, n, ...)
        probe = probe.reshape(-1, *probe.shape[2:])
        tiled = jnp.broadcast_to(probe, (agent.num_tasks, *probe.shape))
        feats = np.asarray(torso_features(agent.arch, params, tiled))
        feats0 = np.asarray(torso_features(agent.arch, initial, tiled))
        for a, b in itertools.combinations(range(len(names)), 2):
            rows.append({"seed": agent.seeds[s], "task_a": names[a], "task_b": names[b],
                         "cka": _linear_cka(feats[a], feats[b]), "cka_init": _linear_cka(feats0[a], feats0[b])})
    return rows


def _flat(tree: Any, num_tasks: int) -> jax.Array:
    """(tasks, dim) from a pytree of (tasks, ...) leaves."""
    return jnp.concatenate([x.reshape(num_tasks, -1) for x in jax.tree.leaves(tree)], axis=1)


def minibatch_cosines(agent: Agent, state: TrainState, key_a: jax.Array,
                      key_b: jax.Array) -> tuple[jax.Array, jax.Array]:
    """One seed's (same-task cosines (tasks,), between-task cosines (tasks, tasks)) for the minibatches
    drawn with ``key_a`` and ``key_b``: each task's shared-parameter gradient on the one against the
    other, and the tasks' gradients on the first against each other.  Only the shared leaves the next
    update would move count, as in the update's own diagnostics (frozen ones are zeroed)."""
    moves = shared_trains_now(agent, state.params, state.updates)
    grads = []
    for k in (key_a, key_b):
        batch, d_t = sample_batch(agent, state, k)
        targets = td_targets(agent, state, batch, d_t)
        if agent.cfg.value_norm == "popart":  # the loss the update takes is on normalized targets
            targets = normalize(state.value_norm, targets)
        _, _, g_shared, _ = task_gradients(agent, state.params, batch, targets)
        grads.append(_flat(trainable_shared(g_shared, moves), agent.num_tasks))
    g1, g2 = grads
    same = jnp.sum(g1 * g2, axis=1) / jnp.maximum(jnp.linalg.norm(g1, axis=1) * jnp.linalg.norm(g2, axis=1), 1e-12)
    _, between = grad_diagnostics(g1 @ g1.T)
    return same, between


def _probe_one(agent: Agent, state: TrainState, key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """One seed's cosines averaged over PROBE_PAIRS minibatch pairs."""
    pairs = jax.random.split(key, (PROBE_PAIRS, 2))
    # One pair at a time: the pairs' activations at once would be PROBE_PAIRS x 2 updates' worth of memory,
    # which the memory check does not count (MinAtar's patches: gigabytes), after a long run's final checkpoint.
    same, between = jax.lax.map(lambda k: minibatch_cosines(agent, state, k[0], k[1]), pairs)
    return same.mean(0), between.mean(0)


def gradient_probe_rows(trainer: Trainer, state: TrainState) -> list[dict[str, Any]]:
    """Per seed: each task with itself (task_a == task_b: the null) and each task pair; none without a
    shared parameter that trains (there is no shared gradient to compare)."""
    agent = trainer.agent
    if not (agent.arch.adapter_shared or any(agent.arch.torso_shared)):
        return []
    one_seed = jax.tree.map(lambda x: x[0], state.params)
    if not any(bool(m) for m in jax.tree.leaves(shared_trains_now(agent, one_seed, int(state.updates[0])))):
        return []  # every shared parameter frozen: no gradient on it moves anything
    keys = jnp.stack([jax.random.fold_in(k, PROBE_KEY) for k in seed_keys(agent.seeds)])
    own = state.replace(env_states=())  # the envs play no part (the state holds only the real seeds)
    same, between = jax.jit(jax.vmap(lambda st, k: _probe_one(agent, st, k)))(own, keys)
    same, between = np.asarray(same), np.asarray(between)
    names = agent.task_set.names
    rows = []
    for s, seed in enumerate(agent.seeds):
        rows += [{"seed": seed, "task_a": t, "task_b": t, "cosine": float(same[s, i])} for i, t in enumerate(names)]
        rows += [{"seed": seed, "task_a": names[a], "task_b": names[b], "cosine": float(between[s, a, b])}
                 for a, b in itertools.combinations(range(len(names)), 2)]
    return rows
