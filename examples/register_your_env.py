"""Your own JAX environment as a task: a chain MDP written against gymnax's API, trained beside CartPole.

    python examples/register_your_env.py

Subclass gymnax's ``Environment`` (``reset_env``, ``step_env``, ``observation_space``, ``action_space``,
``default_params``), then either register it by name in this process, as here, or name it by import path
anywhere a task goes: ``mtdqn train --tasks examples.register_your_env:Chain,CartPole-v1``.  It steps inside
the compiled training loop like the built-in tasks.

The chain: states 0..3, start at 0; action 1 steps right, 0 left; entering state 3 ends the episode with
reward 1.  Its optimal Q-values are known, so we can check what the agent learned.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import environment, spaces

import mtdqn

LENGTH = 4


@struct.dataclass
class ChainState(environment.EnvState):
    pos: jax.Array


@struct.dataclass
class ChainParams(environment.EnvParams):
    max_steps_in_episode: int = 20  # the time limit: a truncation, which bootstraps


class Chain(environment.Environment):
    @property
    def default_params(self) -> ChainParams:
        return ChainParams()

    def reset_env(self, key, params):
        state = ChainState(time=0, pos=jnp.int32(0))
        return self.get_obs(state), state

    def step_env(self, key, state, action, params):
        pos = jnp.clip(state.pos + 2 * action - 1, 0, LENGTH - 1)
        state = ChainState(time=state.time + 1, pos=pos)
        done = pos == LENGTH - 1
        return self.get_obs(state), state, done.astype(jnp.float32), done, {}

    def get_obs(self, state, params=None, key=None):
        return jax.nn.one_hot(state.pos, LENGTH)  # (4,): a vector task, read by the MLP trunk

    def action_space(self, params):
        return spaces.Discrete(2)

    def observation_space(self, params):
        return spaces.Box(0.0, 1.0, (LENGTH,), jnp.float32)


def optimal_q(gamma: float) -> np.ndarray:
    """(states 0..2, [left, right]): V*(s) = gamma^(2-s), Q*(s, right) = V*(s), Q*(s, left) = gamma V*(s-1)."""
    value = [gamma ** (LENGTH - 2 - s) for s in range(LENGTH - 1)]
    return np.array([[gamma * value[max(s - 1, 0)], value[s]] for s in range(LENGTH - 1)])


def main(out: Path = Path("runs/examples/chain"), steps: int = 10_000, gamma: float = 0.9,
         **options: Any) -> np.ndarray:
    """Register the chain, train it beside CartPole; returns the learned Q of states 0..2."""
    print(mtdqn.register_task("MyChain-v0", Chain))
    run = mtdqn.train(tasks=["MyChain-v0", "CartPole-v1"], steps=steps, seeds=1, out=out, gamma=gamma,
                      progress=False, force=True, **options)
    print(run.evaluate(episodes=5).to_string(index=False))
    q = run.agent().q_values("MyChain-v0", np.eye(LENGTH, dtype=np.float32)[: LENGTH - 1])
    print("learned Q (left, right):\n", q.round(3), "\noptimal Q:\n", optimal_q(gamma).round(3))
    return q


if __name__ == "__main__":
    main()
