"""The chain MDP of the custom-environment tests (test_custom_env.py; test_agent_cache.py registers it too): a
plain module, so that no test module imports another.

States 0..3, start at 0; action 1 steps right, action 0 left (0 is a wall); entering state 3 ends the episode
with reward 1 (terminated), 20 steps truncate it.  With discount g the optimal values are V*(s) = g^(2-s),
Q*(s, right) = V*(s) and Q*(s, left) = g V*(max(s-1, 0)).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import environment, spaces

LENGTH = 4
GAMMA = 0.9


@struct.dataclass
class ChainState(environment.EnvState):
    pos: jax.Array


@struct.dataclass
class ChainParams(environment.EnvParams):
    max_steps_in_episode: int = 20


class Chain(environment.Environment):
    """A gymnax >= 1.0 environment: reset_env and step_env, the base class resets and adds final_observation."""

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
        return jax.nn.one_hot(state.pos, LENGTH)

    def action_space(self, params):
        return spaces.Discrete(2)

    def observation_space(self, params):
        return spaces.Box(0.0, 1.0, (LENGTH,), jnp.float32)


def make_chain() -> Chain:
    """The factory an import path names: ``test_custom_env:make_chain`` (imported there), ``chain_env:make_chain``."""
    return Chain()


def optimal_q(gamma: float = GAMMA) -> np.ndarray:
    """(states 0..2, actions [left, right]) of the chain."""
    value = [gamma ** (LENGTH - 2 - s) for s in range(LENGTH - 1)]
    return np.array([[gamma * value[max(s - 1, 0)], value[s]] for s in range(LENGTH - 1)])
