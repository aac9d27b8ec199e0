"""The Gymnasium host loop: the compiled loop's iteration, with envs stepped in Python.

Gymnasium environments (``gym:`` tasks) live in Python, so they cannot run
inside ``lax.scan``.  Each vector step here does what
:func:`mtdqn.train.step.iteration` does, around one host env step, with the
same functions, jitted once for all seeds (vmapped):

1. ``begin``: split the key as ``iteration`` does; :func:`epsilon`, then :func:`act`;
2. the host steps every (seed, task) ``SyncVectorEnv`` (same-step autoreset);
3. ``record``: :func:`record_transition`, the second half of :func:`env_step`
   (truncation bootstraps, termination does not; running episode returns);
4. ``learn``: :func:`update` when due, by the same learning-starts / train-every rule.

:class:`HostChunk` is a chunk runner like the compiled one, so
:func:`mtdqn.train.run.train` drives both the same way and a host run's
directory reads like a compiled one.  Unsupported: ``--checkpoint-every`` and
``--resume`` (env state lives in Python and cannot be restored); the final
state is checkpointed for evaluation.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from mtdqn.tasks import EnvStep, obs_dtype
from mtdqn.tasks.gymnasium_env import HostEnvs, env_seeds
from mtdqn.train.affinity import measures_affinity
from mtdqn.train.agent import Agent, TrainState
from mtdqn.train.hypers import stack_hypers
from mtdqn.train.loop import Trainer, chunk_compiler_options, fresh_state, split_root, summarize_chunk
from mtdqn.train.step import (
    act, empty_update_metrics, epsilon, record_transition, split_env_step_key, split_iteration_key, update,
)

__all__ = ["make_host_trainer", "init_host_state", "HostChunk"]


def init_host_state(agent: Agent, key: jax.Array) -> TrainState:
    """:func:`mtdqn.train.loop.init_state` for host envs: the same key split, no env states, zero
    observations until the envs are reset (so it stays pure and ``eval_shape``-able)."""
    keys = split_root(key)  # keys.env seeds the host envs (env_seed_table)
    ts = agent.task_set
    obs = jnp.zeros((agent.num_tasks, agent.cfg.num_envs, *ts.obs_shape), obs_dtype(ts))
    return fresh_state(agent, keys.params, keys.run, obs, ())


def env_seed_table(keys: jax.Array, num_tasks: int) -> list[list[int]]:
    """Gymnasium seeds (seeds, tasks) from each seed's root key, via the ``k_env`` part of its split."""
    return [env_seeds(split_root(k).env, num_tasks) for k in keys]


def _begin(agent: Agent, key: jax.Array, params: Any, obs: jax.Array, t: jax.Array):
    """Key split, epsilon and actions exactly as ``iteration`` / ``env_step`` draw them."""
    keys = split_iteration_key(key)
    eps = epsilon(agent, t)
    k_act, _ = split_env_step_key(keys.env)  # the other half steps gymnax envs in the compiled loop
    return keys.carry, act(agent, params, obs, k_act, eps), keys.update, eps


class HostChunk:
    """``run_chunk(state, start)`` for host envs: one logging window of vector steps.

    :meth:`compile` compiles ``begin`` / ``record`` / ``learn`` once (ahead of
    time, so a shape change is an error rather than a silent recompile).
    """

    resumable = False  # env state lives in Python: a checkpoint cannot restore it

    def __init__(self, agent: Agent):
        self.agent = agent
        self.init = jax.jit(jax.vmap(lambda k: init_host_state(agent, k)))  # keys (seeds, 2) -> batched state
        self.envs: HostEnvs | None = None
        self.fns: dict[str, Callable] = {}

    def start(self, keys: jax.Array) -> tuple[TrainState, float]:
        """A fresh state with the envs made, seeded and reset, and every step function compiled."""
        state = self.reset(self.init(keys), keys)
        return state, self.compile(state)

    def reset(self, state: TrainState, keys: jax.Array) -> TrainState:
        """Make and seed the envs; the state's observations become their first ones."""
        self.close()
        a = self.agent
        self.envs = HostEnvs(a.task_set, a.cfg.num_envs, env_seed_table(keys, a.num_tasks))
        return state.replace(obs=jnp.asarray(self.envs.reset()))

    def compile(self, state: TrainState) -> float:
        """Compile every step function for ``state``'s shapes; returns the seconds it took."""
        t0 = time.perf_counter()
        a = self.agent
        options = chunk_compiler_options(a)  # the networks' XLA options, as the compiled loop's
        begin = jax.jit(jax.vmap(lambda k, p, o, t: _begin(a, k, p, o, t), in_axes=(0, 0, 0, None)),
                        compiler_options=options)
        record = jax.jit(jax.vmap(lambda s, x, o: record_transition(a, s, x, o)), donate_argnums=0)
        # The affinity flag is un-batched, as in the compiled loop: its lax.cond stays a branch.
        learn = jax.jit(jax.vmap(lambda s, k, m: update(a, s, k, m), in_axes=(0, 0, None)), donate_argnums=0,
                        compiler_options=options)
        t = jnp.int32(0)
        _, actions, k_update, _ = jax.eval_shape(begin, state.key, state.params, state.obs, t)
        lead = state.ep_return.shape  # (seeds, tasks, envs)
        out = EnvStep(state.obs, state.obs, jax.ShapeDtypeStruct(lead, jnp.float32),
                      jax.ShapeDtypeStruct(lead, bool), jax.ShapeDtypeStruct(lead, bool))
        seeds = lead[0]
        idle = jax.vmap(lambda _: empty_update_metrics(a))(jnp.arange(seeds))
        self.idle = {**idle, "updated": jnp.zeros((seeds,), jnp.float32)}
        self.busy = jnp.ones((seeds,), jnp.float32)
        one_iter = {**jax.eval_shape(record, state, actions, out)[1], **self.idle, "epsilon": self.busy}
        per_iter = jax.tree.map(lambda x: jax.ShapeDtypeStruct((self.agent.derived.iters_per_chunk, *x.shape),
                                                               x.dtype), one_iter)
        summarize = jax.jit(jax.vmap(summarize_chunk, in_axes=1))  # (iters, seeds, ...) -> (seeds, ...)
        self.fns = {
            "begin": begin.lower(state.key, state.params, state.obs, t).compile(),
            "record": record.lower(state, actions, out).compile(),
            "learn": learn.lower(state, k_update, np.bool_(False)).compile(),
            "summarize": summarize.lower(per_iter).compile(),
        }
        return time.perf_counter() - t0

    def __call__(self, state: TrainState, start: int) -> tuple[TrainState, dict[str, jax.Array]]:
        d, f = self.agent.derived, self.fns
        per_iter = []
        for t in range(start, start + d.iters_per_chunk):
            key, actions, k_update, eps = f["begin"](state.key, state.params, state.obs, np.int32(t))
            out = self.envs.step(np.asarray(actions))
            state, stats = f["record"](state.replace(key=key), actions, out)
            if t >= d.learning_starts_iters and t % d.train_every_iters == 0:
                measure = np.bool_(measures_affinity(d, self.agent.cfg.affinity_every, t))
                state, metrics = f["learn"](state, k_update, measure)
                metrics = {**metrics, "updated": self.busy}
            else:
                metrics = self.idle
            per_iter.append({**stats, **metrics, "epsilon": eps})
        return state, f["summarize"](jax.tree.map(lambda *xs: np.stack(xs), *per_iter))

    def close(self) -> None:
        if self.envs is not None:
            self.envs.close()
            self.envs = None


def make_host_trainer(agent: Agent) -> tuple[Trainer, HostChunk]:
    """A :class:`Trainer` for gym: tasks (a pure ``init``, for checkpoint templates; its ``chunk`` steps the
    host envs with the config's hyperparameters) and the :class:`HostChunk` behind it, the run's runner."""
    chunk = HostChunk(agent)
    return Trainer(agent, chunk.init, lambda state, _hypers, start: chunk(state, start),
                   stack_hypers([agent.hypers] * len(agent.seeds))), chunk
