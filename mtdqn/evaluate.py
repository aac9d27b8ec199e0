"""Greedy (or epsilon-) policy rollouts per task, for every seed at once.

Each task runs ``episodes`` environments in parallel and every environment
counts only its first episode, so the result is exactly ``episodes`` returns
per task and seed.  The rollout reuses the training code's ``act`` and
``step_envs``; with ``eps=1`` it measures the uniform-random policy that
normalized scores are relative to.

Gymnasium (``gym:``) tasks run the same policy on the host
(:func:`host_rollout_returns`): the same jitted ``act``, environments stepped in
Python, and the same (seeds, tasks, episodes) result.
"""

from __future__ import annotations

from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from mtdqn.callables import callable_as_api
from mtdqn.errors import UnfinishedEpisodesWarning, warn_user
from mtdqn.tasks import reset_envs, step_envs
from mtdqn.train.agent import Agent, policy_agent
from mtdqn.train.step import act

__all__ = ["EpisodeReturns", "rollout_returns", "rollout_from", "key_halves", "host_rollout_returns", "evaluate_params",
           "EvalStream", "eval_seed"]


# A rollout runs every step of its longest task's episodes in one scan: a loop that stops once every episode has
# ended ran the default tasks 1.4-1.7x slower where no episode ends early (untrained MiniGrid: 437 against 295 ms,
# 2026-12-05).  Past LONG_HORIZON steps (a task's max_steps set far above its default: the longest built-in,
# InvertedPendulumDiscrete, has 3,000) it runs blocks of BLOCK_STEPS steps until every episode has ended or the
# horizon is reached (benchmarks/eval_horizon.py: the minatar preset's 10,000-step games 0.7 s per evaluation
# instead of 6-8; a random policy on MultiRoom-N2-S4 with max_steps=100000 0.41 s instead of 22; a policy that
# never finishes 11% slower).  Each step gets the one scan's key up to STEP_KEYS_HELD steps (the keys held as the
# scan held them: 8 bytes a step and seed), so sticky actions and epsilon-greedy play the same episodes and a
# stored run evaluates to its numbers; past it, keys of each block's own (``fold_in``: one scan of such a horizon
# never ended anyway).
LONG_HORIZON = 4096
BLOCK_STEPS = 1024
STEP_KEYS_HELD = 1 << 22


class EpisodeReturns(NamedTuple):
    """Unscaled first-episode returns, each (..., episodes): the sum of rewards, and sum_t gamma^t r_t with
    each task's gamma (the metric D'Eramo et al. 2020 report); ``unfinished``: the episodes still running when
    the rollout stopped (None: not recorded), whose returns :func:`evaluate_params` makes NaN."""

    total: Any
    discounted: Any
    unfinished: Any = None

class EvalStream:
    """Which evaluation a key stream serves: each gets its own block of seeds, far from training's.

    Training seeds are ``seed, seed+1, ...``; the evaluations a run makes use
    ``seed + offset`` so their episodes never share starts with each other or
    with training, and stay the same across versions (reported numbers depend on them).
    """

    FINAL_GREEDY = 10_000  # the greedy evaluation at the end of training (summary.json)
    RANDOM_POLICY = 20_000  # the uniform-random policy beside it (normalization anchor)
    EVALUATE_COMMAND = 30_000  # `mtdqn evaluate RUN` (eval.json)
    DURING_TRAINING = 40_000  # greedy evaluations every --eval-every steps (evals.parquet), the step folded in
    DISTILL = 50_000  # `mtdqn distill`: teacher and student on the same episodes (distill.json)
    TEST = 60_000  # the test evaluation at the end of a run (--test-episodes, test_eval.json)


def eval_seed(first_seed: int, stream: int) -> int:
    """The root seed of one evaluation stream (:class:`EvalStream`) of a run whose first seed is ``first_seed``."""
    return first_seed + stream


HOST_MAX_STEPS = 100_000
"""The steps an evaluation of Gymnasium tasks runs at least (their own time limits, where longer, extend it): an
env that sets no limit and never ends its episode is stopped there, and that episode's returns are NaN."""


def evaluation_horizon(agent: Agent) -> int:
    """The steps an evaluation rolls out: the longest task's episode limit (JAX tasks end there), for Gymnasium
    tasks at least :data:`HOST_MAX_STEPS`.  An episode still running then is unfinished (NaN)."""
    longest = max(task.max_episode_steps for task in agent.task_set.tasks)
    return max(HOST_MAX_STEPS, longest) if agent.task_set.backend == "gymnasium" else longest


def key_halves(key: jax.Array) -> jax.Array:
    """(reset key, rollout key) of one seed's evaluation key: the one convention every evaluation path uses
    (the compiled one, its two programs, the host one), so they play the same episodes."""
    return jax.random.split(key)


def rollout_returns(agent: Agent, params: Any, key: jax.Array, episodes: int, eps: float) -> EpisodeReturns:
    """First-episode returns, each (tasks, episodes), of one seed's policy."""
    k_reset, k_run = key_halves(key)
    obs, env_states = reset_envs(agent.task_set, k_reset, episodes)
    return rollout_from(agent, params, obs, env_states, k_run, eps)


def rollout_from(agent: Agent, params: Any, obs: jax.Array, env_states: Any, key: jax.Array,
                 eps: float) -> EpisodeReturns:
    """First-episode returns, each (tasks, episodes), of one seed's policy from reset environments ``obs`` /
    ``env_states`` (:func:`rollout_returns` with the reset done by the caller)."""
    t, episodes = obs.shape[:2]
    horizon = evaluation_horizon(agent)
    gamma = jnp.asarray(agent.gammas, jnp.float32)[:, None]  # (tasks, 1)

    def body(carry, key):
        obs, env_states, total, discounted, weight, alive = carry  # weight: gamma^t of this step
        k_act, k_env = jax.random.split(key)
        actions = act(agent, params, obs, k_act, jnp.float32(eps))
        env_states, out = step_envs(agent.task_set, env_states, actions, k_env)
        reward = jnp.where(alive, out.reward, 0.0)
        return (out.obs, env_states, total + reward, discounted + weight * reward, weight * gamma,
                alive & ~out.done), None

    zeros = jnp.zeros((t, episodes))
    init = (obs, env_states, zeros, zeros, jnp.ones((t, 1)), jnp.ones((t, episodes), bool))
    if horizon <= LONG_HORIZON:
        (_, _, total, discounted, _, alive), _ = jax.lax.scan(body, init, jax.random.split(key, horizon))
        return EpisodeReturns(total, discounted, alive)

    blocks = -(-horizon // BLOCK_STEPS)
    if horizon <= STEP_KEYS_HELD:  # the one scan's keys, step for step: the same episodes, the same returns
        held = jax.random.split(key, horizon)
        held = jnp.concatenate([held, jnp.repeat(held[-1:], blocks * BLOCK_STEPS - horizon, axis=0)])
        held = held.reshape(blocks, BLOCK_STEPS, *held.shape[1:])

        def step_keys(b: jax.Array) -> jax.Array:
            return jax.lax.dynamic_index_in_dim(held, b, keepdims=False)
    else:
        def step_keys(b: jax.Array) -> jax.Array:  # keys of each block's own
            return jax.random.split(jax.random.fold_in(key, b), BLOCK_STEPS)

    def within(carry: tuple, x: tuple[jax.Array, jax.Array]) -> tuple[tuple, None]:
        key, inside = x  # the last block's steps past the horizon change nothing (an env need not end there)
        stepped, _ = body(carry, key)
        return jax.tree.map(lambda new, old: jnp.where(inside, new, old), stepped, carry), None

    def block(state: tuple[jax.Array, tuple]) -> tuple[jax.Array, tuple]:
        b, carry = state
        inside = b * BLOCK_STEPS + jnp.arange(BLOCK_STEPS) < horizon
        carry, _ = jax.lax.scan(within, carry, (step_keys(b), inside))
        return b + 1, carry

    def going(state: tuple[jax.Array, tuple]) -> jax.Array:
        b, carry = state
        return (b < blocks) & jnp.any(carry[-1])

    _, (_, _, total, discounted, _, alive) = jax.lax.while_loop(going, block, (jnp.int32(0), init))
    return EpisodeReturns(total, discounted, alive)


def _evaluate_all(agent: Agent, params: Any, keys: jax.Array, episodes: int, eps: jax.Array) -> EpisodeReturns:
    """Every seed's returns (:func:`rollout_returns` vmapped), as two compiled programs: the reset, then the
    rollout from it.  Why two: on a GPU (a lent H200, JAX 0.11.2) a scan of the policy alone took 85.8 ms per
    step with the environments' reset in its program and 0.04 ms with its observations passed in
    (benchmarks/gpu_policy_bisect.py; benchmarks/results/minigrid_mt5.md), and the evaluation in one program
    11.7 ms per step; whether two programs restore its speed there is not yet measured.  On the CPU the two
    cost about the same.  The same keys, the same episodes, the same returns (tests/test_step.py)."""
    k_reset, k_run = jnp.moveaxis(jax.vmap(key_halves)(keys), 1, 0)
    obs, env_states = _reset_all(agent, k_reset, episodes)
    return _rollout_all(agent, params, obs, env_states, k_run, eps)


@partial(jax.jit, static_argnums=(0, 2))
def _reset_all(agent: Agent, reset_keys: jax.Array, episodes: int) -> tuple[jax.Array, Any]:
    """Every seed's reset environments, one reset key (:func:`key_halves`) per seed."""
    return jax.vmap(lambda k: reset_envs(agent.task_set, k, episodes))(reset_keys)


@partial(jax.jit, static_argnums=0)
def _rollout_all(agent: Agent, params: Any, obs: jax.Array, env_states: Any, run_keys: jax.Array,
                 eps: jax.Array) -> EpisodeReturns:
    """Every seed's returns from its reset environments, one rollout key (:func:`key_halves`) per seed;
    ``eps`` is traced, so the greedy and the random-policy evaluation of a run share one compiled program."""
    return jax.vmap(lambda p, o, s, k: rollout_from(agent, p, o, s, k, eps))(params, obs, env_states, run_keys)


@partial(jax.jit, static_argnums=0)
def _act_all(agent: Agent, params: Any, obs: jax.Array, keys: jax.Array, t: jax.Array, eps: jax.Array) -> jax.Array:
    """Actions (seeds, tasks, envs) of every seed's policy at rollout step ``t``."""
    return jax.vmap(lambda p, o, k: act(agent, p, o, jax.random.fold_in(k, t), eps))(params, obs, keys)


def host_rollout_returns(agent: Agent, params: Any, keys: jax.Array, episodes: int, eps: float) -> EpisodeReturns:
    """First-episode returns, each (seeds, tasks, episodes), of Gymnasium tasks, one key per seed."""
    from mtdqn.tasks.gymnasium_env import HostEnvs, env_seeds

    k_reset, k_run = jnp.moveaxis(jax.vmap(key_halves)(keys), 1, 0)
    envs = HostEnvs(agent.task_set, episodes, [env_seeds(k, agent.num_tasks) for k in k_reset])
    try:
        obs = envs.reset()
        total = np.zeros(obs.shape[:3], np.float64)
        discounted = np.zeros(obs.shape[:3], np.float64)
        alive = np.ones(obs.shape[:3], bool)
        for t in range(evaluation_horizon(agent)):  # time limits end episodes themselves
            if not alive.any():
                break
            actions = np.asarray(_act_all(agent, params, obs, k_run, jnp.int32(t), jnp.float32(eps)))
            out = envs.step(actions)
            reward = np.where(alive, out.reward, 0.0)
            total += reward
            discounted += np.asarray(agent.gammas)[None, :, None] ** t * reward
            alive &= ~out.done
            obs = out.obs
    finally:
        envs.close()
    return EpisodeReturns(total.astype(np.float32), discounted.astype(np.float32), alive)


def _without_unfinished(agent: Agent, returns: EpisodeReturns) -> EpisodeReturns:
    """``returns`` with the episodes that had not ended when the rollout stopped made NaN, and a warning naming
    their tasks: a partial return read as an episode's (an endless Gymnasium env scored 100,000; a registered
    env that ignores its own time limit, its first horizon's worth).  Episodes that ended are untouched."""
    alive = np.asarray(returns.unfinished, bool)
    total, discounted = np.array(returns.total, np.float32), np.array(returns.discounted, np.float32)
    if alive.any():
        per_task = alive.reshape(-1, *alive.shape[-2:]).sum(axis=(0, 2))  # (tasks,) over seeds and episodes
        of = alive.size // alive.shape[-2]
        names = ", ".join(f"{name} {n} of {of}" for name, n in zip(agent.task_set.names, per_task) if n)
        warn_user(f"evaluation episodes that did not end within {evaluation_horizon(agent):,} steps (no time limit "
                  f"ended them): {names}; their returns are NaN", UnfinishedEpisodesWarning)
        total[alive], discounted[alive] = np.nan, np.nan
    return EpisodeReturns(total, discounted, alive)


def evaluate_params(agent: Agent, params: Any, seed: int, episodes: int, eps: float = 0.0,
                    step: int | None = None) -> EpisodeReturns:
    """Returns, each (seeds, tasks, episodes), for vmapped ``params``; keys derive from ``seed`` (and from
    ``step``, when one stream serves evaluations at several training steps).  The programs are compiled for
    :func:`~mtdqn.train.agent.policy_agent`: once per network and tasks in a process, not once per config."""
    agent = policy_agent(agent)
    n_seeds = jax.tree.leaves(params)[0].shape[0]
    root = jax.random.PRNGKey(seed)
    if step is not None:
        root = jax.random.fold_in(root, step)
    keys = jax.random.split(root, n_seeds)
    if agent.task_set.backend == "gymnasium":
        return _without_unfinished(agent, host_rollout_returns(agent, params, keys, episodes, eps))
    return _without_unfinished(agent, EpisodeReturns(*(np.asarray(x) for x in _evaluate_all(
        agent, params, keys, episodes, jnp.float32(eps)))))


callable_as_api(__name__)  # mtdqn.evaluate(run, episodes=...) as mtdqn.play(...): last, the module complete
