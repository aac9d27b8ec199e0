"""One gymnax ``Environment`` class for every MiniGrid task, and the tasks we have.

A task is a layout generator, its default ``max_steps``, whether it sees
through walls, and a reward rule: ``"goal"`` (MiniGridEnv.step alone),
``"redblue"`` (RedBlueDoorEnv.step) or ``"memory"`` (MemoryEnv.step).  All
tasks share the grid size, the observation (7, 7, 3) and the 7 actions, so a
task set of them runs in one compiled program.

The observation is MiniGrid's ``image``, as ``ImgObsWrapper`` returns it: the
raw (object, colour, state) ids in 3 uint8 channels.  MOORE (Hendawy et al.
2024, ``moore/environments/minigrid_env.py`` and ``utils/networks_ppo.py``)
feeds exactly these ids, cast to float, to its conv trunk; so do we.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, Callable

import jax
import jax.numpy as jnp
from gymnax.environments import environment, spaces

from mtdqn.tasks.minigrid import layouts
from mtdqn.tasks.minigrid.core import OPEN, VIEW, EnvParams, EnvState, act, observe, success_reward

__all__ = ["MiniGridSpec", "MiniGrid", "SPECS"]


@dataclass(frozen=True)
class MiniGridSpec:
    """What makes one ``MiniGrid-...-v0`` task: see the module docstring."""

    name: str
    generate: Callable[[jax.Array], tuple[jax.Array, jax.Array, jax.Array, jax.Array]]
    max_steps: int
    see_through_walls: bool = False
    rule: str = "goal"


# name -> spec; max_steps are each env's defaults in minigrid 3.2.0 (e.g. DoorKeyEnv: 10 * size**2).
SPECS: dict[str, MiniGridSpec] = {
    s.name: s
    for s in (
        MiniGridSpec("MiniGrid-DoorKey-6x6-v0", partial(layouts.doorkey, size=6), 10 * 6**2),
        MiniGridSpec("MiniGrid-LavaGapS7-v0", partial(layouts.lavagap, size=7), 4 * 7**2),
        MiniGridSpec("MiniGrid-DistShift1-v0", partial(layouts.distshift, width=9, height=7, strip2_row=2),
                     4 * 9 * 7, see_through_walls=True),
        MiniGridSpec("MiniGrid-SimpleCrossingS9N2-v0", partial(layouts.simple_crossing, size=9, crossings=2),
                     4 * 9**2),
        MiniGridSpec("MiniGrid-RedBlueDoors-6x6-v0", partial(layouts.red_blue_doors, size=6), 20 * 6**2,
                     rule="redblue"),
        MiniGridSpec("MiniGrid-MultiRoom-N2-S4-v0", layouts.multiroom, 2 * 20),
        MiniGridSpec("MiniGrid-MemoryS11-v0", partial(layouts.memory, size=11), 5 * 11**2, rule="memory"),
    )
}


class MiniGrid(environment.Environment):
    """A MiniGrid task with gymnax's API; ``step_env`` returns the observation before any auto-reset."""

    def __init__(self, spec: MiniGridSpec) -> None:
        super().__init__()
        self.spec = spec
        self.obs_shape = (VIEW, VIEW, 3)

    @property
    def default_params(self) -> EnvParams:
        return EnvParams(max_steps_in_episode=self.spec.max_steps)

    def step(self, key: jax.Array, state: EnvState, action: int | jax.Array, params: EnvParams | None = None
             ) -> tuple[jax.Array, EnvState, jax.Array, jax.Array, jax.Array, dict[Any, Any]]:
        """gymnax's ``Environment.step`` (auto-reset, ``final_observation`` in ``info``), observing once.

        gymnax observes the stepped state in ``step_env`` and the fresh layout
        in ``reset_env``, then keeps one of them per env.  Here the state is
        chosen first and both views come from one :func:`observe` over the
        pair: MiniGrid's occlusion is most of a step's ops, so this compiles it
        once instead of twice and runs it once on twice the data.  Same outputs.
        """
        params = self.default_params if params is None else params
        key_step, key_reset = jax.random.split(key)
        stepped, reward, terminated = self._transition(state, action, params)
        truncated = self.is_truncated(stepped, params)
        done = terminated | truncated
        fresh = self._layout(key_reset)
        next_state = jax.tree.map(lambda r, s: jax.lax.select(done, r, s), fresh, stepped)
        both = jax.tree.map(lambda a, b: jnp.stack([a, b]), stepped, next_state)
        final_obs, obs = jax.vmap(self.get_obs)(both)
        info = {"discount": jnp.where(terminated, 0.0, 1.0), "terminated": terminated, "truncated": truncated,
                "final_observation": jax.lax.stop_gradient(final_obs)}
        return jax.lax.stop_gradient(obs), jax.lax.stop_gradient(next_state), reward, terminated, truncated, info

    def step_env(self, key: jax.Array, state: EnvState, action: int | jax.Array,
                 params: EnvParams) -> tuple[jax.Array, EnvState, jax.Array, jax.Array, dict[Any, Any]]:
        """One MiniGrid step; the dynamics are deterministic, so ``key`` is unused."""
        del key
        next_state, reward, terminated = self._transition(state, action, params)
        return (jax.lax.stop_gradient(self.get_obs(next_state)), jax.lax.stop_gradient(next_state), reward,
                terminated, {"discount": jnp.where(terminated, 0.0, 1.0)})

    def _transition(self, state: EnvState, action: int | jax.Array,
                    params: EnvParams) -> tuple[EnvState, jax.Array, jax.Array]:
        """(next state, reward, terminated) of one step, without the observation."""
        action = jnp.asarray(action, jnp.int32)
        if self.spec.rule == "memory":  # MemoryEnv.step: pickup acts as toggle
            action = jnp.where(action == 3, 5, action)
        next_state, reward, terminated = act(state, action, params)
        reward, terminated = self._rule(state, next_state, reward, terminated, params)
        return next_state, reward, terminated

    def _rule(self, before: EnvState, after: EnvState, reward: jax.Array, terminated: jax.Array,
              params: EnvParams) -> tuple[jax.Array, jax.Array]:
        """The task's own reward and termination on top of ``MiniGridEnv.step``'s."""
        if self.spec.rule == "goal":
            return reward, terminated
        win = success_reward(after.time, params)
        if self.spec.rule == "redblue":  # RedBlueDoorEnv.step; marks = (red door, blue door)
            def is_open(s: EnvState, i: int) -> jax.Array:
                return s.grid[s.marks[i, 0], s.marks[i, 1], 2] == OPEN
            red_before, blue_before = is_open(before, 0), is_open(before, 1)
            red_after, blue_after = is_open(after, 0), is_open(after, 1)
            wrong = ~blue_after & red_after & blue_before
            reward = jnp.where(blue_after, jnp.where(red_before, win, 0.0), jnp.where(wrong, 0.0, reward))
            return reward.astype(jnp.float32), terminated | blue_after | wrong
        # MemoryEnv.step; marks = (success cell, failure cell)
        success = jnp.all(after.pos == after.marks[0])
        failure = jnp.all(after.pos == after.marks[1])
        reward = jnp.where(success, win, jnp.where(failure, 0.0, reward))
        return reward.astype(jnp.float32), terminated | success | failure

    def reset_env(self, key: jax.Array, params: EnvParams) -> tuple[jax.Array, EnvState]:
        state = self._layout(key)
        return self.get_obs(state), state

    def _layout(self, key: jax.Array) -> EnvState:
        """A fresh episode's state: the task's layout, hands empty, step 0."""
        grid, pos, direction, marks = self.spec.generate(key)
        return EnvState(grid=grid, pos=pos.astype(jnp.int32), dir=jnp.asarray(direction, jnp.int32),
                        carrying=jnp.zeros(2, jnp.int32), marks=marks, time=jnp.int32(0))

    def get_obs(self, state: EnvState, params: EnvParams | None = None, key: jax.Array | None = None) -> jax.Array:
        return observe(state, self.spec.see_through_walls)

    def is_terminated(self, state: EnvState, params: EnvParams) -> jax.Array:
        """Termination is decided by the step (goal, lava, a door, a cell), not readable from the state alone."""
        return jnp.asarray(False)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def num_actions(self) -> int:
        return 7

    def action_space(self, params: EnvParams | None = None) -> spaces.Discrete:
        return spaces.Discrete(7)

    def observation_space(self, params: EnvParams) -> spaces.Box:
        return spaces.Box(0, 10, (VIEW, VIEW, 3), jnp.uint8)
