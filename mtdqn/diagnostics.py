"""Probes of a trained agent: representation similarity and a gradient-cosine null.

CKA is taken once, after the last chunk, on the final state (``cka.parquet``); the
gradient probe at every greedy evaluation during training and at the end
(``grad_probe.parquet``, a ``step`` per row), so its null is on the schedule
of the curves it is read against.

* **CKA** (Kornblith et al. 2019) between every two tasks' trunk features on
  one shared set of probe states (up to 128 replay observations per task,
  uniform over its replay at the end: :func:`probe_slots`),
  for the trained network and for the network at initialization (the same
  parameter keys, the same probe states): similarity the architecture gives
  before any learning is not something training did.  Two probes: the
  pooled states of every task (``cka``), where states of different tasks
  differ so much that they make any two representations alike, and each
  task's own states (``cka_own``: for tasks a and b, the mean of the CKA of
  their trunk features on a's states and on b's states), where the inputs'
  differences between tasks are out of it.  Each probe has a chance level
  (``cka_chance``, ``cka_own_chance``): the same trained features with one
  side's probe rows shuffled, so the pairing of states is broken while the
  widths, the number of states and each side's spectrum stay.  CKA is the
  debiased estimator (:mod:`mtdqn.analysis.cka`): the biased one's level on
  few states is set by how the features' variance is spread (two independent
  isotropic random 128-feature matrices give ~0.5 on 128 states, trained
  features about 0.01 with their pairing shuffled), so differences of two
  CKAs (trained and at initialization; two variants) carried their bias; the
  debiased chance level is ~0 whatever the spectrum, a check of that.
* **Gradient probe**: pairs of independent minibatches of each task, drawn
  from its replay with the run's batch size; the cosine between one task's
  shared-parameter gradients on the two minibatches of a pair is the
  *same-task null*: how aligned two gradients of the same objective are
  once minibatch noise is in them.  The between-task cosines on the first
  minibatch of each pair, same parameters and moment, sit beside it.  Both
  are averaged over :data:`PROBE_PAIRS` pairs (one pair alone swings by
  +-0.5 on a trained agent).  Minibatch noise scales a between-task cosine
  towards 0 (by a factor of about sqrt(null_a * null_b)) but cannot flip its sign:
  so a between-task cosine below the nulls means noisier or less aligned
  gradients, not opposed ones; only a mean below 0 is net conflict.  Each row also holds the share
  of the pairs whose cosine is negative (``negative``): for a same-task row,
  the noise baseline of the conflict fraction.  The probe's gradients are the whole network's, without
  dropout: with ``--dropout`` the training-time cosines (with masks) are noisier, nearer 0, than this null.
"""

from __future__ import annotations

import itertools
from functools import partial
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from mtdqn.networks import Architecture, init_params, torso_features
from mtdqn.networks.experts import expert_cosines, mixing_weights, orthonormalize, weight_entropy
from mtdqn.networks.model import expert_outputs
from mtdqn.train.agent import Agent, TrainState
from mtdqn.train.loop import Trainer, seed_keys, split_root
from mtdqn.train.step import (
    grad_diagnostics, sample_batch, shared_trains_now, task_gradients, td_targets, trainable_shared,
)
from mtdqn.value_norm import normalize

__all__ = ["cka_rows", "probe_slots", "gradient_probe", "minibatch_cosines", "expert_probe", "expert_measures",
           "PROBE_KEY", "PROBE_PAIRS"]

PROBE_KEY = 0x5EED
"""Folded into each seed's root key for the probe's minibatches: fixed, so a rerun gives the same rows."""
PROBE_PAIRS = 16
"""Minibatch pairs the probe averages over."""


PROBE_SLOTS = "uniform"
"""cka.parquet's ``probe`` column: how :func:`probe_slots` picks the states (runs before it took the first slots,
and their tables have no such column)."""


def probe_slots(size: int, n: int, seed: int) -> np.ndarray:
    """``n`` distinct replay slots of the ``size`` filled, uniform and sorted, fixed per ``seed`` (a rerun probes
    the same states): a sample of the states the replay holds at the end.  Not its first slots: the replay is a
    ring written ``num_envs`` slots per step, so those are a few consecutive steps of a few environments, taken
    at random play before the buffer wraps and at a point set by the budget after."""
    return np.sort(np.random.default_rng([PROBE_KEY, seed]).choice(size, n, replace=False))


def _linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    from mtdqn.analysis.cka import linear_cka  # the analysis' one definition; numpy only

    return linear_cka(x, y)


@partial(jax.jit, static_argnums=0)
def _cka_features(arch: Architecture, params: Any, keys: jax.Array, obs: jax.Array,
                  slots: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Every seed's trunk features (seeds, tasks, tasks * n, ...) on its probe states (``obs``: each seed's replay
    observations (seeds, tasks, capacity, ...), ``slots`` (seeds, n): :func:`probe_slots`, every task's taken
    in turn), trained and at initialization.  The slots are gathered here, in the one program (an indexing
    outside compiled programs of its own, for every replay shape).

    One program for all seeds and both networks, keyed by the architecture (hashable, by value) and the
    replay's shape, so every later run of the same network and buffer in this process reuses it: run op by op,
    the initialization and forward pass are dozens of small programs each.
    """

    def one_seed(p: Any, key: jax.Array, replay_obs: jax.Array, idx: jax.Array) -> tuple[jax.Array, jax.Array]:
        probe = replay_obs[:, idx].reshape(-1, *replay_obs.shape[2:])  # (tasks * n, ...), task by task
        tiled = jnp.broadcast_to(probe, (arch.num_tasks, *probe.shape))  # every task's adapter sees the same states
        at_init = init_params(arch, split_root(key).params)  # as fresh_state does
        return torso_features(arch, p, tiled), torso_features(arch, at_init, tiled)

    return jax.vmap(one_seed)(params, keys, obs, slots)


def cka_rows(trainer: Trainer, state: TrainState, probe_per_task: int = 128) -> list[dict[str, Any]]:
    """Per seed and task pair: linear CKA of trunk features, trained (``cka``) and at init (``cka_init``) on
    every task's states pooled, and on each task's own (``cka_own``, ``cka_own_init``: module docstring).

    The probe states are ``probe_per_task`` replay observations of each task, at slots drawn per seed by
    :func:`probe_slots` (all seeds have stepped alike, so their replays hold equally many).
    """
    from mtdqn.analysis.cka import ESTIMATOR  # as _linear_cka: the analysis' one definition

    agent = trainer.agent
    names = agent.task_set.names
    size = int(np.min(state.replay.size))
    n = min(probe_per_task, size)
    slots = np.stack([probe_slots(size, n, seed) for seed in agent.seeds])  # (seeds, n)
    feats, feats0 = map(np.asarray, _cka_features(agent.arch, state.params, seed_keys(agent.seeds),
                                                  state.replay.data.obs, jnp.asarray(slots, jnp.int32)))
    rows = []
    for s, seed in enumerate(agent.seeds):
        shuffle = np.random.default_rng(seed).permutation  # fixed per seed: a rerun gives the same chance level
        pooled, own = shuffle(feats.shape[2]), shuffle(n)
        for a, b in itertools.combinations(range(len(names)), 2):
            rows.append({"seed": seed, "task_a": names[a], "task_b": names[b],
                         "cka": _linear_cka(feats[s, a], feats[s, b]),
                         "cka_init": _linear_cka(feats0[s, a], feats0[s, b]),
                         "cka_chance": _linear_cka(feats[s, a], feats[s, b][pooled]),
                         "cka_own": _own_states_cka(feats[s], a, b, n),
                         "cka_own_init": _own_states_cka(feats0[s], a, b, n),
                         "cka_own_chance": _own_states_cka(feats[s], a, b, n, own), "probe": PROBE_SLOTS,
                         "estimator": ESTIMATOR})
    return rows


def _own_states_cka(feats: np.ndarray, a: int, b: int, n: int, shuffled: np.ndarray | None = None) -> float:
    """The mean over tasks ``a`` and ``b`` of the CKA of their features (``feats``: (tasks, tasks * n, ...), the
    probe's rows task by task) on that task's own ``n`` probe states; ``shuffled`` (a permutation of n) pairs
    b's rows with other states than a's: the chance level."""
    order = np.arange(n) if shuffled is None else shuffled
    return float(np.mean([_linear_cka(feats[a, t * n:(t + 1) * n], feats[b, t * n:(t + 1) * n][order])
                          for t in (a, b)]))


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


def _probe_pairs(key: jax.Array) -> jax.Array:
    """The keys (PROBE_PAIRS, 2) of the probe's minibatch pairs from one seed's probe key."""
    return jax.random.split(key, (PROBE_PAIRS, 2))


def _probe_one(agent: Agent, state: TrainState, key: jax.Array) -> tuple[jax.Array, ...]:
    """One seed's cosines averaged over PROBE_PAIRS minibatch pairs, and the share of pairs with cosine < 0.

    The share is the conflict fraction's noise baseline: how often two minibatches of *one* task already
    point apart (a same-task pair), to read a between-task conflict fraction against.
    """
    pairs = _probe_pairs(key)
    # One pair at a time: the pairs' activations at once would be PROBE_PAIRS x 2 updates' worth of memory,
    # which the memory check does not count (MinAtar's patches: gigabytes), after a long run's final checkpoint.
    same, between = jax.lax.map(lambda k: minibatch_cosines(agent, state, k[0], k[1]), pairs)
    return same.mean(0), between.mean(0), (same < 0).mean(0), (between < 0).mean(0)


@partial(jax.jit, static_argnums=0)
def _probe_all(agent: Agent, state: TrainState, keys: jax.Array) -> tuple[jax.Array, ...]:
    """:func:`_probe_one` of every seed.  Module-level and keyed by the agent (as the evaluation is), so the
    probes during training and the one at the end of a run are one compiled program."""
    return jax.vmap(lambda st, k: _probe_one(agent, st, k))(state, keys)


def gradient_probe(trainer: Trainer) -> Callable[[TrainState], list[dict[str, Any]]] | None:
    """The gradient probe of ``trainer``'s runs as a function of a state, compiled once and reused (the drive
    loop probes at every evaluation, on the curve's schedule); None without a shared parameter (there is no
    shared gradient to compare).

    Its rows, per seed: each task with itself (task_a == task_b: the null) and each task pair, with the mean
    cosine over the pairs and the share of pairs with cosine < 0; none while every shared parameter is frozen.
    """
    agent = trainer.agent
    if not (agent.arch.adapter_shared or any(agent.arch.torso_shared)):
        return None
    keys = jnp.stack([jax.random.fold_in(k, PROBE_KEY) for k in seed_keys(agent.seeds)])
    names = agent.task_set.names

    def rows(state: TrainState) -> list[dict[str, Any]]:
        one_seed = jax.tree.map(lambda x: x[0], state.params)
        if not any(bool(m) for m in jax.tree.leaves(shared_trains_now(agent, one_seed, int(state.updates[0])))):
            return []  # every shared parameter frozen: no gradient on it moves anything
        own = state.replace(env_states=())  # the envs play no part (the state holds only the real seeds)
        same, between, same_neg, between_neg = map(np.asarray, _probe_all(agent, own, keys))
        out = []
        for s, seed in enumerate(agent.seeds):
            out += [{"seed": seed, "task_a": t, "task_b": t, "cosine": float(same[s, i]),
                     "negative": float(same_neg[s, i])} for i, t in enumerate(names)]
            out += [{"seed": seed, "task_a": names[a], "task_b": names[b], "cosine": float(between[s, a, b]),
                     "negative": float(between_neg[s, a, b])}
                    for a, b in itertools.combinations(range(len(names)), 2)]
        return out

    return rows


def expert_measures(agent: Agent, state: TrainState, key: jax.Array) -> dict[str, jax.Array]:
    """One seed's expert diagnostics on the minibatch drawn with ``key``: ``weight`` (tasks, experts), each
    task's softmax mixing weights; ``entropy`` (tasks,) of them; ``cosine`` and ``cosine_raw`` (tasks, experts),
    each expert's mean cosine with the others on the task's observations, of the representations mixed and of
    the experts' outputs before Gram–Schmidt (see the module)."""
    batch, _ = sample_batch(agent, state, key)
    # An experts network takes its observations as they are (no task id appended: that is `conditioned`).
    raw = expert_outputs(agent.arch, state.params, batch.obs.astype(jnp.float32))  # (experts, tasks, batch, feat)
    mixed = orthonormalize(raw) if agent.arch.orthogonal else raw
    weights = mixing_weights(state.params["mixing"])
    return {"weight": weights, "entropy": weight_entropy(weights), "cosine": expert_cosines(mixed),
            "cosine_raw": expert_cosines(raw)}


@partial(jax.jit, static_argnums=0)
def _expert_measures_all(agent: Agent, state: TrainState, keys: jax.Array) -> dict[str, jax.Array]:
    """:func:`expert_measures` of every seed, one program per agent (after every chunk and at the end)."""
    return jax.vmap(lambda st, k: expert_measures(agent, st, k))(state, keys)


def expert_probe(trainer: Trainer) -> Callable[[TrainState], list[dict[str, Any]]] | None:
    """The expert diagnostics of ``trainer``'s runs as a function of a state, compiled once, all seeds in one
    vmapped call; None without experts.  Each seed measures on its gradient probe's first minibatch, drawn with a
    fixed key: the same slots at every call once the replay is full (while it fills, they move with its size),
    whose states change as the replay is overwritten.

    Its rows, one per seed, task and expert (``experts.parquet`` without its ``step``,
    :data:`mtdqn.rundir.EXPERT_SCHEMA`): the task's weight on the expert, the task's weights' entropy (the same
    on each of its rows), and the expert's mean cosine with the others on the task's observations."""
    agent = trainer.agent
    if not agent.arch.experts:
        return None
    keys = jnp.stack([_probe_pairs(jax.random.fold_in(k, PROBE_KEY))[0, 0] for k in seed_keys(agent.seeds)])
    names = agent.task_set.names

    def rows(state: TrainState) -> list[dict[str, Any]]:
        measured = _expert_measures_all(agent, state.replace(env_states=()), keys)
        m = {name: np.asarray(v) for name, v in measured.items()}
        return [{"seed": seed, "task": task, "expert": e, "weight": m["weight"][s, i, e],
                 "entropy": m["entropy"][s, i], "cosine": m["cosine"][s, i, e],
                 "cosine_raw": m["cosine_raw"][s, i, e]}
                for s, seed in enumerate(agent.seeds) for i, task in enumerate(names)
                for e in range(agent.arch.experts)]

    return rows
