"""Greedy (or epsilon-) policy rollouts per task, for every seed at once.

Each task runs ``episodes`` environments in parallel and every environment
counts only its first episode, so the result is exactly ``episodes`` returns
per task and seed.  The rollout reuses the training code's ``act`` and
``step_envs``; with ``eps=1`` it measures the uniform-random policy that
normalized scores are relative to.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mtdqn.tasks import reset_envs, step_envs
from mtdqn.train.agent import Agent
from mtdqn.train.step import act

__all__ = ["rollout_returns", "evaluate_params"]


def rollout_returns(agent: Agent, params: Any, key: jax.Array, episodes: int, eps: float) -> jax.Array:
    """Unscaled first-episode returns (tasks, episodes) of one seed's policy."""
    k_reset, k_run = jax.random.split(key)
    obs, env_states = reset_envs(agent.task_set, k_reset, episodes)
    t = agent.num_tasks
    horizon = max(task.max_episode_steps for task in agent.task_set.tasks)

    def body(carry, key):
        obs, env_states, returns, alive = carry
        k_act, k_env = jax.random.split(key)
        actions = act(agent, params, obs, k_act, jnp.float32(eps))
        env_states, out = step_envs(agent.task_set, env_states, actions, k_env)
        returns = returns + jnp.where(alive, out.reward, 0.0)
        return (out.obs, env_states, returns, alive & ~out.done), None

    init = (obs, env_states, jnp.zeros((t, episodes)), jnp.ones((t, episodes), bool))
    (_, _, returns, _), _ = jax.lax.scan(body, init, jax.random.split(k_run, horizon))
    return returns


@partial(jax.jit, static_argnums=(0, 3, 4))
def _evaluate_all(agent: Agent, params: Any, keys: jax.Array, episodes: int, eps: float) -> jax.Array:
    return jax.vmap(lambda p, k: rollout_returns(agent, p, k, episodes, eps))(params, keys)


def evaluate_params(agent: Agent, params: Any, seed: int, episodes: int, eps: float = 0.0) -> np.ndarray:
    """Returns (seeds, tasks, episodes) for vmapped ``params``; keys derive from ``seed``."""
    n_seeds = jax.tree.leaves(params)[0].shape[0]
    keys = jax.random.split(jax.random.PRNGKey(seed), n_seeds)
    return np.asarray(_evaluate_all(agent, params, keys, episodes, eps))
