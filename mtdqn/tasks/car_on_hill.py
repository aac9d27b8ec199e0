"""Car-On-Hill as a gymnax environment, so it steps inside the compiled loop.

The problem is the "car on the hill" of Ernst, Geurts & Wehenkel (2005),
"Tree-Based Batch Mode Reinforcement Learning", JMLR 6:503-556 (appendix
describing the test problems), as implemented by mushroom-rl's ``CarOnHill``
(``mushroom_rl/environments/car_on_hill.py``), which D'Eramo et al. (ICLR 2020,
"Sharing Knowledge in Multi-Task Deep Reinforcement Learning") used for their
multi-task DQN benchmark (github.com/carloderamo/shared).

A car of mass m drives on the hill

    Hill(p) = p**2 + p                 for p < 0
    Hill(p) = p / sqrt(1 + 5 p**2)     for p >= 0

and its state (position p, speed s) follows

    dp/dt = s
    ds/dt = (u - g m Hill'(p) - m s**2 Hill'(p) Hill''(p)) / (m (1 + Hill'(p)**2))

with the force u in {-4, +4} held for 0.1 s.  The episode ends when the car
leaves [-1, 1] or its speed exceeds 3: reward +1 for leaving on the right
(|s| <= 3), -1 for leaving on the left or too fast, 0 otherwise.

Integration: mushroom-rl calls scipy's adaptive ``odeint`` over [0, 0.1] s.  We
take 10 fixed RK4 sub-steps of 0.01 s and split a sub-step where the car
crosses p = 0, where the hill's curvature (and so the acceleration) jumps
(:func:`mtdqn.tasks.integrate.rk4_switched`).  Over 2,000 random states in
[-1, 1] x [-3, 3] and both actions, one 0.1 s step differs from ``odeint`` at
rtol = atol = 1e-11 by at most 2.4e-7 in position and 2.4e-6 in speed (float32);
mushroom-rl's own ``odeint`` at default tolerances differs from it by 9e-8 and
7e-7.  Plain RK4 with 10 sub-steps would be off by up to 1.9e-3 and 3.3e-2.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment, spaces

from mtdqn.tasks.control_env import ControlEnv
from mtdqn.tasks.integrate import rk4_switched

__all__ = ["CarOnHill", "EnvState", "EnvParams", "hill_slopes", "car_derivative"]


@struct.dataclass
class EnvState(environment.EnvState):
    position: jax.Array
    velocity: jax.Array
    time: int


@struct.dataclass
class EnvParams(environment.EnvParams):
    """Constants of the problem; every default is Ernst et al. (2005) unless a comment says otherwise."""

    mass: float = 1.0  # m; mushroom-rl: self._m = 1.
    gravity: float = 9.81  # g; mushroom-rl: self._g = 9.81
    force: float = 4.0  # U = {-4, +4}; mushroom-rl: self._discrete_actions = [-4., 4.]
    dt: float = 0.1  # control time step; mushroom-rl: self._dt = .1
    max_position: float = 1.0  # |p| > 1 ends the episode; mushroom-rl: self.max_pos = 1.
    max_velocity: float = 3.0  # |s| > 3 ends the episode; mushroom-rl: self.max_velocity = 3.
    initial_position: float = -0.5  # mushroom-rl reset(): np.array([-0.5, 0]) (the valley bottom)
    initial_velocity: float = 0.0
    max_steps_in_episode: int = 100  # mushroom-rl CarOnHill(horizon=100)
    substeps: int = struct.field(pytree_node=False, default=10)  # ours: RK4 steps per control step


def hill_slopes(position: jax.Array, left_branch: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(Hill'(p), Hill''(p)) of one branch of Ernst et al.'s hill: p**2 + p, or p / sqrt(1 + 5 p**2).

    ``left_branch`` picks the formula for p < 0.  It is passed, not read from
    ``p``, so the integrator can keep one formula for a whole sub-step
    (:func:`mtdqn.tasks.integrate.rk4_switched`).
    """
    one_plus = 1.0 + 5.0 * position**2
    slope = jnp.where(left_branch, 2.0 * position + 1.0, one_plus**-1.5)
    curvature = jnp.where(left_branch, 2.0, -15.0 * position * one_plus**-2.5)
    return slope, curvature


def car_derivative(y: jax.Array, left_branch: jax.Array, force: jax.Array, params: EnvParams) -> jax.Array:
    """d/dt of y = [p, s] under a constant force (Ernst et al. 2005, the car-on-the-hill dynamics)."""
    position, velocity = y[0], y[1]
    slope, curvature = hill_slopes(position, left_branch)
    m, g = params.mass, params.gravity
    acceleration = (force - g * m * slope - m * velocity**2 * slope * curvature) / (m * (1.0 + slope**2))
    return jnp.stack([velocity, acceleration])


class CarOnHill(ControlEnv):
    """Car-On-Hill (Ernst et al. 2005) with gymnax's API: two actions, push left (0) or right (1)."""

    env_name = "CarOnHill-v0"
    actions = 2
    params_type = EnvParams
    fixed_start_deterministic = True  # mushroom-rl's fixed start (-0.5, 0) and ODE dynamics without noise

    def step_env(
        self, key: jax.Array, state: EnvState, action: int | jax.Array, params: EnvParams
    ) -> tuple[jax.Array, EnvState, jax.Array, jax.Array, dict[Any, Any]]:
        """One 0.1 s step; the dynamics are deterministic, so ``key`` is unused."""
        del key
        force = jnp.where(action == 1, params.force, -params.force)
        y = jnp.stack([state.position, state.velocity])
        y = rk4_switched(lambda y, left: car_derivative(y, left, force, params), y, params.dt, params.substeps)
        state = EnvState(position=y[0], velocity=y[1], time=state.time + 1)
        return self.transition(state, self.reward(state, params), params)

    def reset_env(self, key: jax.Array, params: EnvParams) -> tuple[jax.Array, EnvState]:
        """The fixed start of mushroom-rl, (-0.5, 0); ``key`` is unused."""
        del key
        state = EnvState(
            position=jnp.asarray(params.initial_position, jnp.float32),
            velocity=jnp.asarray(params.initial_velocity, jnp.float32),
            time=jnp.int32(0),
        )
        return self.get_obs(state), state

    def reward(self, state: EnvState, params: EnvParams) -> jax.Array:
        """+1 leaving on the right at legal speed, -1 leaving on the left or too fast, else 0 (Ernst et al.)."""
        too_fast = jnp.abs(state.velocity) > params.max_velocity
        lost = (state.position < -params.max_position) | too_fast
        won = (state.position > params.max_position) & ~too_fast
        return jnp.where(won, 1.0, jnp.where(lost, -1.0, 0.0)).astype(jnp.float32)

    def get_obs(self, state: EnvState, params: EnvParams | None = None, key: jax.Array | None = None) -> jax.Array:
        return jnp.stack([state.position, state.velocity]).astype(jnp.float32)

    def is_terminated(self, state: EnvState, params: EnvParams) -> jax.Array:
        """The car left the hill or exceeded the speed limit: an absorbing state."""
        return (jnp.abs(state.position) > params.max_position) | (jnp.abs(state.velocity) > params.max_velocity)

    def observation_space(self, params: EnvParams) -> spaces.Box:
        """mushroom-rl's bounds; the final observation of an episode lies just outside them."""
        high = jnp.array([params.max_position, params.max_velocity], jnp.float32)
        return spaces.Box(-high, high, (2,), jnp.float32)
