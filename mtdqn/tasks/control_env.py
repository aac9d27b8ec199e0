"""gymnax's ``Environment`` API for our own classic-control tasks, written once.

Car-On-Hill and the LSPI pendulum differ in their physics only; what gymnax
asks around it (default parameters, the five-value step, the names and the
action space) lives here, so a third such task adds its dynamics and nothing else.
"""

from __future__ import annotations

from typing import Any, ClassVar

import jax
from gymnax.environments import environment, spaces

__all__ = ["ControlEnv", "fixed_start_deterministic"]


class ControlEnv(environment.Environment):
    """A task whose observation is its two-dimensional physical state.

    Subclasses set ``env_name``, ``actions`` and ``params_type`` and write
    ``step_env`` (ending in :meth:`transition`), ``reset_env``, ``get_obs`` and
    ``is_terminated``; ``observation_space`` states their bounds.
    """

    env_name: ClassVar[str]
    actions: ClassVar[int]
    params_type: ClassVar[type]
    fixed_start_deterministic: ClassVar[bool] = False
    """True when every episode starts in the same state and the dynamics draw no randomness: the same actions
    always give the same trajectory (a policy's states are then the same few paths, whatever the keys)."""

    def __init__(self) -> None:
        super().__init__()
        self.obs_shape = (2,)

    @property
    def default_params(self) -> Any:
        return self.params_type()

    def transition(self, state: Any, reward: jax.Array,
                   params: Any) -> tuple[jax.Array, Any, jax.Array, jax.Array, dict[Any, Any]]:
        """What ``step_env`` returns for the next ``state``: gymnax's (obs, state, reward, done, info)."""
        return (
            jax.lax.stop_gradient(self.get_obs(state)),
            jax.lax.stop_gradient(state),
            reward,
            self.is_terminated(state, params),
            {"discount": self.discount(state, params)},
        )

    @property
    def name(self) -> str:
        return self.env_name

    @property
    def num_actions(self) -> int:
        return self.actions

    def action_space(self, params: Any | None = None) -> spaces.Discrete:
        return spaces.Discrete(self.actions)


def fixed_start_deterministic(env: Any) -> bool:
    """Whether ``env`` (any gymnax environment) declares a fixed start and deterministic dynamics.  gymnax's
    own tasks draw their starts at random (CartPole, Acrobot, MountainCar, the MinAtar games) and declare
    nothing; of ours, Car-On-Hill does, the LSPI pendulum (random tilt, force noise) does not."""
    return bool(getattr(env, "fixed_start_deterministic", False))
