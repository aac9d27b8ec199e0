"""MinAtar as published: sticky actions, the full action set and a settable cut-off, around gymnax's games.

Young & Tian (2019), "MinAtar: An Atari-inspired testbed for thorough and reproducible reinforcement
learning experiments", arXiv:1903.03176; their package (github.com/kenjyoung/MinAtar,
``minatar/environment.py``) differs from gymnax's MinAtar in three ways this wrapper can undo:

- **Sticky actions.** ``Environment(env_name, sticky_action_prob=0.1)``: on every ``act(a)``, with
  probability 0.1 the game executes ``self.last_action`` instead of ``a``; ``last_action`` then becomes the
  executed action.  It starts at 0 (no-op) when the environment is built and is *not* reset between
  episodes (``reset()`` leaves it alone), so it carries over the auto-reset here too.  gymnax has none.
- **The action set.** ``num_actions()`` is 6 for every game (``n l u r d f``) and its example DQN uses it;
  a game treats the actions outside its ``minimal_action_set()`` as a no-op.  gymnax builds each game with
  its minimal set (Breakout 3, Asterix 5, Freeway 3, SpaceInvaders 4, Seaquest 6); with
  ``use_minimal_action_set=False`` its games take the full six and treat the rest as a no-op, as MinAtar does.
- **The cut-off.** MinAtar cuts no episode; Freeway's game itself ends after 2,500 frames (its
  ``terminate_timer`` starts at 2,500 and the episode is terminal on the step it drops below 0, the
  2,501st).  gymnax truncates every game at ``max_steps_in_episode`` (1,000; Freeway 2,500, where the game
  end becomes a truncation).  Here the cut-off is a truncation (the loop bootstraps from it) at
  ``max_steps``, and Freeway's game end is a termination, as MinAtar's DQN sees it.

Task options (``Breakout-MinAtar:sticky=0.1,actions=full,max_steps=10000``) select the wrapper; a plain
MinAtar name is gymnax's game unchanged, except Seaquest, which is ours (:mod:`mtdqn.tasks.seaquest`: MinAtar's
game, ~10x faster than gymnax's; :func:`make_game`), and Asterix, gymnax's game with MinAtar's spawn
(:mod:`mtdqn.tasks.asterix`: gymnax's never tries one free row and overwrites a live one when none is free).
With the defaults (``sticky=0``, minimal actions, gymnax's cut-off) the wrapper steps the same game as the plain
task (tested), though from a different random stream.
"""

from __future__ import annotations

from typing import Any

import gymnax
import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment

from mtdqn.tasks.asterix import Asterix
from mtdqn.tasks.seaquest import Seaquest

__all__ = ["MINATAR_GAMES", "GAME_END", "OUR_GAMES", "MinAtarEnv", "make_game"]

MINATAR_GAMES = ("Breakout-MinAtar", "Asterix-MinAtar", "Freeway-MinAtar", "SpaceInvaders-MinAtar",
                 "Seaquest-MinAtar")

GAME_END: dict[str, int] = {"Freeway-MinAtar": 2_500}
"""Games that end themselves after this many frames (MinAtar's ``time_limit``): terminal on the next step."""

OUR_GAMES = {"Seaquest-MinAtar": Seaquest, "Asterix-MinAtar": Asterix}
"""Games written in this package and used instead of gymnax's (same API, same cut-off)."""


def make_game(name: str, full_actions: bool = False) -> tuple[Any, Any]:
    """(game, default params) of a MinAtar game: ours from :data:`OUR_GAMES`, the rest from gymnax."""
    if name in OUR_GAMES:
        game = OUR_GAMES[name](use_minimal_action_set=not full_actions)
        return game, game.default_params
    return gymnax.make(name, use_minimal_action_set=not full_actions)


@struct.dataclass
class MinAtarState:
    game: Any  # the gymnax game's own state
    last_action: jax.Array  # int32: the action the game executed last (MinAtar's ``last_action``)
    time: jax.Array  # int32: steps in this episode, for the cut-off


class MinAtarEnv(environment.Environment):
    """A MinAtar game (:func:`make_game`) with MinAtar's sticky actions, its full action set and a settable cut-off."""

    def __init__(self, name: str, sticky: float = 0.0, full_actions: bool = False, max_steps: int | None = None):
        super().__init__()
        self.game, game_params = make_game(name, full_actions)
        self.game_name = name
        self.sticky = float(sticky)
        self.max_steps = int(game_params.max_steps_in_episode if max_steps is None else max_steps)
        self._params = game_params.replace(max_steps_in_episode=self.max_steps)

    @property
    def default_params(self) -> Any:
        return self._params

    def reset_env(self, key: jax.Array, params: Any) -> tuple[jax.Array, MinAtarState]:
        obs, game = self.game.reset_env(key, params)
        return obs, MinAtarState(game, jnp.int32(0), jnp.int32(0))

    def step_env(self, key: jax.Array, state: MinAtarState, action: Any, params: Any):
        k_sticky, k_game = jax.random.split(key)
        action = jnp.where(jax.random.uniform(k_sticky) < self.sticky, state.last_action,
                           jnp.asarray(action, jnp.int32))
        obs, game, reward, terminated, info = self.game.step_env(k_game, state.game, action, params)
        time = state.time + 1
        if self.game_name in GAME_END:
            terminated = jnp.logical_or(terminated, time > GAME_END[self.game_name])
        return obs, MinAtarState(game, action, time), reward, terminated, info

    def is_truncated(self, state: MinAtarState, params: Any) -> jax.Array:
        return state.time >= params.max_steps_in_episode

    def step(self, key: jax.Array, state: MinAtarState, action: Any, params: Any = None):
        """gymnax's step with auto-reset, except that the last action survives the reset (as in MinAtar)."""
        params = self.default_params if params is None else params
        key_step, key_reset = jax.random.split(key)
        obs_st, state_st, reward, terminated, info = self.step_env(key_step, state, action, params)
        truncated = self.is_truncated(state_st, params)
        done = jnp.logical_or(terminated, truncated)
        obs_re, state_re = self.reset_env(key_reset, params)
        state_re = state_re.replace(last_action=state_st.last_action)
        state = jax.tree.map(lambda x, y: jax.lax.select(done, x, y), state_re, state_st)
        obs = jax.lax.select(done, obs_re, obs_st)
        info = {**info, "terminated": terminated, "truncated": truncated, "final_observation": obs_st}
        return obs, state, reward, terminated, truncated, info

    @property
    def name(self) -> str:
        return self.game_name

    @property
    def num_actions(self) -> int:
        return self.game.num_actions

    def action_space(self, params: Any = None) -> Any:
        return self.game.action_space(params)

    def observation_space(self, params: Any) -> Any:
        return self.game.observation_space(params)
