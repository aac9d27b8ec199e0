"""The discrete inverted pendulum of LSPI as a gymnax environment.

Lagoudakis & Parr (2003), "Least-Squares Policy Iteration", JMLR 4:1107-1149,
the inverted-pendulum experiment: balance a pendulum hinged on a cart by
pushing the cart left, not at all, or right.  mushroom-rl implements it as
``InvertedPendulumDiscrete`` (``mushroom/environments/inverted_pendulum.py``,
later renamed ``CartPole`` in ``mushroom_rl/environments/cart_pole.py``); that
is the version D'Eramo et al. (ICLR 2020, "Sharing Knowledge in Multi-Task
Deep Reinforcement Learning") used (github.com/carloderamo/shared).

State (theta, theta_dot), theta = 0 upright.  With alpha = 1 / (m + M),

    theta_ddot = (g sin(theta) - alpha m l theta_dot**2 sin(2 theta) / 2 - alpha cos(theta) u)
                 / (4 l / 3 - alpha m l cos(theta)**2)

where u is the chosen force in {-50, 0, +50} N plus uniform noise in
[-10, 10] N, held for 0.1 s.  The episode ends when |theta| > pi/2 (reward -1);
every other step gives 0.  Note mushroom-rl's later ``CartPole`` uses l/2 where
this equation has l; we follow the paper and the ``InvertedPendulumDiscrete``
that D'Eramo et al. ran.

Integration: mushroom-rl calls scipy's adaptive ``odeint``; we take 10 fixed RK4
sub-steps of 0.01 s (:func:`mtdqn.tasks.integrate.rk4`; the dynamics are smooth
for |theta| < pi/2).  Over 2,000 random states in [-pi/2, pi/2] x [-4, 4] with
noisy forces, one 0.1 s step differs from ``odeint`` at rtol = atol = 1e-11 by
at most 3.4e-7 in angle and 1.2e-6 in angular velocity (float32).
mushroom-rl also wraps theta into [-pi, pi]; that only changes states that are
already terminal, so we leave theta unwrapped.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment, spaces

from mtdqn.tasks.control_env import ControlEnv
from mtdqn.tasks.integrate import rk4

__all__ = ["InvertedPendulumDiscrete", "EnvState", "EnvParams", "pendulum_derivative"]


@struct.dataclass
class EnvState(environment.EnvState):
    angle: jax.Array
    angular_velocity: jax.Array
    time: int


@struct.dataclass
class EnvParams(environment.EnvParams):
    """Constants of the problem; every default is Lagoudakis & Parr (2003) unless a comment says otherwise."""

    pendulum_mass: float = 2.0  # m = 2.0 kg; mushroom-rl: m=2.
    cart_mass: float = 8.0  # M = 8.0 kg; mushroom-rl: M=8.
    length: float = 0.5  # l = 0.5 m; mushroom-rl: l=.5
    gravity: float = 9.8  # g = 9.8 m/s^2; mushroom-rl: g=9.8
    force: float = 50.0  # actions -50, 0, +50 N; mushroom-rl: max_u=50.
    force_noise: float = 10.0  # uniform noise in [-10, 10] N on the force; mushroom-rl: noise_u=10.
    dt: float = 0.1  # control time step 0.1 s; mushroom-rl: self._dt = .1
    max_angle: float = 0.5 * math.pi  # |theta| > pi/2: the pendulum fell
    # LSPI starts near (0, 0) without giving a range; mushroom-rl reset(): U(-pi/8, pi/8), theta_dot = 0.
    initial_angle: float = math.pi / 8.0
    # 3000 steps (5 minutes) counts as balanced in LSPI; mushroom-rl: horizon=3000.
    max_steps_in_episode: int = 3000
    substeps: int = struct.field(pytree_node=False, default=10)  # ours: RK4 steps per control step


def pendulum_derivative(y: jax.Array, force: jax.Array, params: EnvParams) -> jax.Array:
    """d/dt of y = [theta, theta_dot] under a constant force (Lagoudakis & Parr 2003)."""
    angle, angular_velocity = y[0], y[1]
    m, ml = params.pendulum_mass, params.pendulum_mass * params.length
    alpha = 1.0 / (m + params.cart_mass)
    numerator = (
        params.gravity * jnp.sin(angle)
        - alpha * ml * angular_velocity**2 * jnp.sin(2.0 * angle) / 2.0
        - alpha * jnp.cos(angle) * force
    )
    denominator = 4.0 * params.length / 3.0 - alpha * ml * jnp.cos(angle) ** 2
    return jnp.stack([angular_velocity, numerator / denominator])


class InvertedPendulumDiscrete(ControlEnv):
    """LSPI's pendulum with gymnax's API: actions 0, 1, 2 push with -50, 0, +50 N (plus noise)."""

    env_name = "InvertedPendulumDiscrete-v0"
    actions = 3
    params_type = EnvParams

    def step_env(
        self, key: jax.Array, state: EnvState, action: int | jax.Array, params: EnvParams
    ) -> tuple[jax.Array, EnvState, jax.Array, jax.Array, dict[Any, Any]]:
        """One 0.1 s step; ``key`` draws the force noise."""
        noise = jax.random.uniform(key, (), jnp.float32, -params.force_noise, params.force_noise)
        force = (jnp.asarray(action, jnp.float32) - 1.0) * params.force + noise
        y = jnp.stack([state.angle, state.angular_velocity])
        y = rk4(lambda y: pendulum_derivative(y, force, params), y, params.dt, params.substeps)
        state = EnvState(angle=y[0], angular_velocity=y[1], time=state.time + 1)
        reward = jnp.where(self.is_terminated(state, params), -1.0, 0.0).astype(jnp.float32)  # LSPI: -1 if it fell
        return self.transition(state, reward, params)

    def reset_env(self, key: jax.Array, params: EnvParams) -> tuple[jax.Array, EnvState]:
        """Upright with a random tilt in [-pi/8, pi/8] and no motion (mushroom-rl's reset)."""
        angle = jax.random.uniform(key, (), jnp.float32, -params.initial_angle, params.initial_angle)
        state = EnvState(angle=angle, angular_velocity=jnp.float32(0.0), time=jnp.int32(0))
        return self.get_obs(state), state

    def get_obs(self, state: EnvState, params: EnvParams | None = None, key: jax.Array | None = None) -> jax.Array:
        return jnp.stack([state.angle, state.angular_velocity]).astype(jnp.float32)

    def is_terminated(self, state: EnvState, params: EnvParams) -> jax.Array:
        """The pendulum fell past horizontal."""
        return jnp.abs(state.angle) > params.max_angle

    def observation_space(self, params: EnvParams) -> spaces.Box:
        """Unbounded, as in mushroom-rl (the speed has no limit)."""
        high = jnp.full((2,), jnp.finfo(jnp.float32).max, jnp.float32)
        return spaces.Box(-high, high, (2,), jnp.float32)
