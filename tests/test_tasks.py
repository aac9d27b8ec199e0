"""Task specs, padding to a common shape, terminated vs truncated."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtdqn.errors import ConfigError
from mtdqn.tasks import make_task_set, parse_task, reset_envs, step_envs


def test_task_spec_options():
    task = parse_task("CartPole-v1:reward_scale=100")
    assert task.name == "CartPole-v1" and task.reward_scale == 100.0
    assert task.obs_shape == (4,) and task.num_actions == 2


@pytest.mark.parametrize(
    "spec, fragment",
    [("Cartpole-v1", "did you mean 'CartPole-v1'"), ("CartPole-v1:reward_scale=x", "must be a number"),
     ("CartPole-v1:gravity=3", "bad task option"), ("CartPole-v1:reward_scale=-1", "> 0")],
)
def test_bad_specs_are_one_line_errors(spec, fragment):
    with pytest.raises(ConfigError, match=fragment) as info:
        parse_task(spec)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("typed, suggestion", [
    ("cartpole", "CartPole-v1"), ("breakout", "Breakout-MinAtar"), ("DoorKey", "MiniGrid-DoorKey-6x6-v0"),
    ("Acrobat", "Acrobot-v1"), ("Foo-v1", None), ("Pong-v0", None),  # a shared "-v1" is not a near miss
])
def test_a_suggestion_names_the_task_meant_or_none(typed, suggestion):
    from mtdqn.tasknames import unknown_task

    line = unknown_task(typed, [])
    assert (f"did you mean '{suggestion}'?" in line) if suggestion else ("did you mean" not in line), line


def test_mixing_vector_and_image_is_rejected():
    with pytest.raises(ConfigError, match="cannot mix"):
        make_task_set(["CartPole-v1", "Breakout-MinAtar"])


def test_padding_and_action_mask():
    ts = make_task_set(["CartPole-v1", "Acrobot-v1", "MountainCar-v0"])
    assert ts.obs_shape == (6,) and ts.num_actions == 3
    np.testing.assert_array_equal(ts.action_mask(), [[1, 1, 0], [1, 1, 1], [1, 1, 1]])
    obs, _ = reset_envs(ts, jax.random.PRNGKey(0), 4)
    assert obs.shape == (3, 4, 6)
    np.testing.assert_array_equal(obs[0, :, 4:], 0.0)  # CartPole padded from 4 to 6
    images = make_task_set(["Breakout-MinAtar", "Freeway-MinAtar"])
    assert images.obs_shape == (10, 10, 7)


def test_time_limit_is_truncation_not_termination():
    ts = make_task_set(["CartPole-v1"])
    obs, states = reset_envs(ts, jax.random.PRNGKey(0), 2)
    (state,) = states
    # One step before CartPole's 500-step limit, pole upright: the next step truncates.
    state = state.replace(time=jnp.array([499, 3]))
    _, out = step_envs(ts, (state,), jnp.zeros((1, 2), jnp.int32), jax.random.PRNGKey(1))
    np.testing.assert_array_equal(out.done[0], [True, False])
    np.testing.assert_array_equal(out.terminated[0], [False, False])
    # The transition ends in the pre-reset observation, not the fresh episode's.
    assert not np.allclose(out.next_obs[0, 0], out.obs[0, 0])
    np.testing.assert_allclose(out.next_obs[0, 1], out.obs[0, 1])


@pytest.mark.parametrize("spec, limit", [("Acrobot-v1:max_steps=1000", 1000), ("MountainCar-v0:max_steps=1000", 1000),
                                         ("CartPole-v1:max_steps=50", 50)])
def test_a_classic_tasks_time_limit_is_its_max_steps(spec, limit):
    """D'Eramo et al.'s Acrobot and Mountain-Car ran to 1,000 steps (gymnax: 500 and 200): ``max_steps=N`` moves
    the truncation, and the evaluation's horizon with it (``max_episode_steps``)."""
    ts = make_task_set([spec])
    assert ts.tasks[0].max_episode_steps == limit
    _, (state,) = reset_envs(ts, jax.random.PRNGKey(0), 2)
    state = state.replace(time=jnp.array([limit - 1, limit - 2]))  # the next step reaches the limit in env 0
    _, out = step_envs(ts, (state,), jnp.zeros((1, 2), jnp.int32), jax.random.PRNGKey(1))
    np.testing.assert_array_equal(out.done[0], [True, False])
    np.testing.assert_array_equal(out.terminated[0], [False, False])


def test_pole_falling_is_termination():
    ts = make_task_set(["CartPole-v1"])
    _, (state,) = reset_envs(ts, jax.random.PRNGKey(0), 1)
    state = state.replace(theta=jnp.array([0.5]))  # beyond the 12 degree threshold
    _, out = step_envs(ts, (state,), jnp.zeros((1, 1), jnp.int32), jax.random.PRNGKey(1))
    assert bool(out.terminated[0, 0]) and bool(out.done[0, 0])


def test_a_runs_task_is_found_however_it_is_spelled():
    """`play --task X` on a run of 'X:' (trained: the parser reads the two as one task) said "'X' is not one of
    this run's tasks: X:"; options in another order are the same task too, a typo or another option is not."""
    from mtdqn.tasknames import index_of_task

    names = ["MiniGrid-LavaGapS7-v0:", "Breakout-MinAtar:sticky=0.1,actions=full"]
    assert index_of_task(names, "MiniGrid-LavaGapS7-v0:") == 0
    assert index_of_task(names, "MiniGrid-LavaGapS7-v0") == 0
    assert index_of_task(names, "Breakout-MinAtar:actions=full,sticky=0.10") == 1
    assert index_of_task(["Breakout-MinAtar:nonsense=1", "CartPole-v1"], "CartPole-v1:") == 1  # a bad name passed
    listed = re.escape("MiniGrid-LavaGapS7-v0:, Breakout-MinAtar:sticky=0.1,actions=full")
    for other in ("Breakout-MinAtar", "Breakout-MinAtar:sticky=0.2,actions=full", "breakout-minatar",
                  "Breakout-MinAtar:nonsense=1"):  # the one task of that name, however cased, is named
        with pytest.raises(ConfigError, match=rf"^task '{re.escape(other)}' is not one of this run's tasks: {listed} "
                                              r"\(did you mean 'Breakout-MinAtar:sticky=0.1,actions=full'\?\)$"):
            index_of_task(names, other)
    with pytest.raises(ConfigError, match=rf"^task 'MiniGrid-LavaGapS7' is not one of this run's tasks: {listed}$"):
        index_of_task(names, "MiniGrid-LavaGapS7")  # no task of that name: none offered
    with pytest.raises(ConfigError, match=r"tasks: CartPole-v1:gamma=0.9, CartPole-v1:gamma=0.8$"):
        index_of_task(["CartPole-v1:gamma=0.9", "CartPole-v1:gamma=0.8"], "CartPole-v1")  # two: none offered
    for given in (0, None):  # agent.act(0, obs) met str.strip's AttributeError
        with pytest.raises(ConfigError, match=rf"^task: expected a task name \(str\), got {given}; this run's tasks: "):
            index_of_task(names, given)


def test_a_progress_bar_names_minigrid_tasks_apart():
    """distill's bar read 'MiniGrid agree=0.78 MiniGrid agree=0.92' for two MiniGrid tasks."""
    from mtdqn.tasknames import short_name

    assert [short_name(n) for n in ("CartPole-v1", "MiniGrid-LavaGapS7-v0", "MiniGrid-MultiRoom-N2-S4-v0",
                                    "Breakout-MinAtar")] == ["CartPole", "LavaGapS7", "MultiRoom", "Breakout"]
