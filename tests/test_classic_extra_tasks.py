"""Car-On-Hill and the LSPI pendulum: dynamics against an independent reference, ends, rewards, the loop.

The reference is the published equations written again here in plain numpy and
integrated with scipy's ``odeint``, the integrator mushroom-rl uses for both
tasks; the JAX environments are never called to produce expected numbers.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import odeint

from mtdqn.config import DQNConfig, TrainConfig, derive
from mtdqn.errors import ConfigError
from mtdqn.tasks import list_tasks, make_task_set, parse_task, reset_envs, step_envs
from mtdqn.tasks.car_on_hill import CarOnHill, car_derivative
from mtdqn.tasks.control_env import fixed_start_deterministic
from mtdqn.tasks.registry import make_env
from mtdqn.tasks.car_on_hill import EnvState as CarState
from mtdqn.tasks.inverted_pendulum import EnvState as PendulumState
from mtdqn.tasks.inverted_pendulum import InvertedPendulumDiscrete, pendulum_derivative

CAR = CarOnHill()
PENDULUM = InvertedPendulumDiscrete()


def car_reference(y, _t, u, m=1.0, g=9.81):
    """Ernst et al. (2005): ds/dt = (u - g m H' - m s^2 H' H'') / (m (1 + H'^2))."""
    p, s = y
    if p < 0:
        d1, d2 = 2 * p + 1, 2.0
    else:
        d1, d2 = (1 + 5 * p**2) ** -1.5, -15 * p * (1 + 5 * p**2) ** -2.5
    return [s, (u - g * m * d1 - s**2 * m * d1 * d2) / (m * (1 + d1**2))]


def pendulum_reference(y, _t, u, m=2.0, big_m=8.0, length=0.5, g=9.8):
    """Lagoudakis & Parr (2003): the inverted pendulum on a cart."""
    theta, omega = y
    a = 1 / (m + big_m)
    num = g * np.sin(theta) - a * m * length * omega**2 * np.sin(2 * theta) / 2 - a * np.cos(theta) * u
    return [omega, num / (4 * length / 3 - a * m * length * np.cos(theta) ** 2)]


def reference_step(derivative, y, u):
    return odeint(derivative, np.asarray(y, float), [0.0, 0.1], args=(u,), rtol=1e-11, atol=1e-11)[-1]


def car_state(p, s, t=0):
    return CarState(position=jnp.float32(p), velocity=jnp.float32(s), time=jnp.int32(t))


def pendulum_state(theta, omega, t=0):
    return PendulumState(angle=jnp.float32(theta), angular_velocity=jnp.float32(omega), time=jnp.int32(t))


def test_derivatives_at_hand_computed_points():
    params = CAR.default_params
    # Valley bottom p = -0.5: H' = 0, so ds/dt = u / m = 4.
    np.testing.assert_allclose(car_derivative(jnp.array([-0.5, 0.0]), True, 4.0, params), [0.0, 4.0], atol=1e-6)
    # p = 0, s = 1: H' = 1 on both branches, H'' = 2 (left) or 0 (right): (4 - 9.81 - 2) / 2 and (4 - 9.81) / 2.
    np.testing.assert_allclose(car_derivative(jnp.array([0.0, 1.0]), True, 4.0, params), [1.0, -3.905], atol=1e-5)
    np.testing.assert_allclose(car_derivative(jnp.array([0.0, 1.0]), False, 4.0, params), [1.0, -2.905], atol=1e-5)
    # Upright pendulum at rest pushed with +50 N: -alpha u / (4l/3 - alpha m l) = -5 / (2/3 - 0.1).
    np.testing.assert_allclose(
        pendulum_derivative(jnp.array([0.0, 0.0]), 50.0, PENDULUM.default_params), [0.0, -5 / (2 / 3 - 0.1)], rtol=1e-6
    )


def test_car_on_hill_trajectory_matches_odeint():
    # From the hill's kink at p = 0 moving right, 20 steps that cross p = 0 (the curvature jump) three times.
    actions = [1, 0, 0, 0, 1, 1, 1, 0, 1, 0, 1, 1, 1, 1, 0, 1, 0, 0, 0, 1]
    params = CAR.default_params
    step = jax.jit(CAR.step_env)
    state = car_state(0.0, 1.0)
    y = np.array([0.0, 1.0])
    signs = set()
    for a in actions:
        obs, state, reward, terminated, _ = step(jax.random.PRNGKey(0), state, a, params)
        y = reference_step(car_reference, y, 4.0 if a == 1 else -4.0)
        signs.add(bool(y[0] < 0))
        np.testing.assert_allclose(obs, y, atol=2e-5)
        assert obs.dtype == jnp.float32 and obs.shape == (2,)
        assert not bool(terminated) and float(reward) == 0.0
    assert signs == {True, False}


@pytest.mark.slow
def test_one_step_matches_odeint_over_random_states():
    rng = np.random.default_rng(0)
    car_y = rng.uniform([-1, -3], [1, 3], (64, 2)).astype(np.float32)
    car_a = rng.integers(0, 2, 64)
    states = CarState(position=jnp.asarray(car_y[:, 0]), velocity=jnp.asarray(car_y[:, 1]),
                      time=jnp.zeros(64, jnp.int32))
    keys = jax.random.split(jax.random.PRNGKey(0), 64)
    obs = jax.vmap(CAR.step_env, in_axes=(0, 0, 0, None))(keys, states, jnp.asarray(car_a), CAR.default_params)[0]
    expected = [reference_step(car_reference, y, 4.0 * (2 * a - 1)) for y, a in zip(car_y, car_a)]
    np.testing.assert_allclose(obs, expected, atol=1e-5)

    # Without noise the pendulum is deterministic: actions 0, 1, 2 push with -50, 0, +50 N.
    params = PENDULUM.default_params.replace(force_noise=0.0)
    pend_y = rng.uniform([-1.5, -3], [1.5, 3], (64, 2)).astype(np.float32)
    pend_a = rng.integers(0, 3, 64)
    states = PendulumState(angle=jnp.asarray(pend_y[:, 0]), angular_velocity=jnp.asarray(pend_y[:, 1]),
                           time=jnp.zeros(64, jnp.int32))
    obs = jax.vmap(PENDULUM.step_env, in_axes=(0, 0, 0, None))(keys, states, jnp.asarray(pend_a), params)[0]
    expected = [reference_step(pendulum_reference, y, 50.0 * (a - 1)) for y, a in zip(pend_y, pend_a)]
    np.testing.assert_allclose(obs, expected, atol=1e-5)


def test_pendulum_noise_comes_from_the_key_and_spans_plus_minus_ten_newtons():
    params = PENDULUM.default_params
    state = pendulum_state(0.1, 0.0)
    step = jax.jit(jax.vmap(PENDULUM.step_env, in_axes=(0, None, None, None)))
    keys = jax.random.split(jax.random.PRNGKey(3), 512)
    velocities = np.asarray(step(keys, state, 0, params)[0][:, 1])
    np.testing.assert_array_equal(velocities, np.asarray(step(keys, state, 0, params)[0][:, 1]))  # same keys
    assert len(np.unique(velocities)) > 500  # different keys, different noise
    # theta_ddot falls as the force grows, so -50 N +- 10 N bounds the outcome between -40 N and -60 N.
    low = reference_step(pendulum_reference, [0.1, 0.0], -40.0)[1]
    high = reference_step(pendulum_reference, [0.1, 0.0], -60.0)[1]
    assert low - 1e-5 < velocities.min() < low + 0.02 * (high - low)
    assert high - 0.02 * (high - low) < velocities.max() < high + 1e-5


def test_car_on_hill_ends_and_rewards():
    params = CAR.default_params
    step = jax.jit(CAR.step)
    key = jax.random.PRNGKey(0)
    cases = [  # (p, s, action) -> reward, terminated
        ((0.99, 1.0, 1), 1.0, True),  # over the top at legal speed
        ((-0.99, -1.0, 0), -1.0, True),  # off the left edge
        ((-0.3, -2.9, 0), -1.0, True),  # downhill past |s| = 3 while still on the hill
        ((-0.5, 0.0, 1), 0.0, False),
    ]
    for (p, s, a), reward, terminated in cases:
        obs, state, r, term, trunc, info = step(key, car_state(p, s), a, params)
        final = np.asarray(info["final_observation"])
        assert float(r) == reward and bool(term) == terminated and not bool(trunc), (p, s, a)
        if terminated:  # auto-reset: the next episode starts at the valley bottom; the final obs is the exit
            np.testing.assert_allclose(obs, [-0.5, 0.0])
            assert abs(final[0]) > 1 or abs(final[1]) > 3
            assert int(state.time) == 0
        else:
            np.testing.assert_allclose(obs, final)
    expected_exit = reference_step(car_reference, [0.99, 1.0], 4.0)
    np.testing.assert_allclose(step(key, car_state(0.99, 1.0), 1, params)[5]["final_observation"], expected_exit,
                               atol=1e-5)


def test_pendulum_ends_and_rewards():
    params = PENDULUM.default_params
    step = jax.jit(PENDULUM.step)
    key = jax.random.PRNGKey(0)
    obs, state, r, term, trunc, info = step(key, pendulum_state(1.5, 1.0), 1, params)  # falling past pi/2
    assert float(r) == -1.0 and bool(term) and not bool(trunc)
    assert np.asarray(info["final_observation"])[0] > math.pi / 2
    assert abs(float(obs[0])) <= math.pi / 8 and float(obs[1]) == 0.0  # reset near upright, at rest
    obs, state, r, term, trunc, info = step(key, pendulum_state(0.0, 0.0), 1, params)
    assert float(r) == 0.0 and not bool(term)


@pytest.mark.parametrize("env, state", [(CAR, car_state(-0.5, 0.0, 99)), (PENDULUM, pendulum_state(0.0, 0.0, 2999))])
def test_time_limit_truncates(env, state):
    _, new_state, r, term, trunc, _ = jax.jit(env.step)(jax.random.PRNGKey(0), state, 1, env.default_params)
    assert bool(trunc) and not bool(term) and float(r) == 0.0 and int(new_state.time) == 0


@pytest.mark.slow
def test_jit_and_vmap_over_keys():
    keys = jax.random.split(jax.random.PRNGKey(0), 8)
    for env in (CAR, PENDULUM):
        params = env.default_params
        obs, states = jax.jit(jax.vmap(env.reset, in_axes=(0, None)))(keys, params)
        assert obs.shape == (8, 2) and obs.dtype == jnp.float32
        starts = np.asarray(obs)  # the pendulum's, after the loop: its resets from the 8 keys
        actions = jnp.zeros(8, jnp.int32)
        obs, states, r, term, trunc, info = jax.jit(jax.vmap(env.step, in_axes=(0, 0, 0, None)))(
            keys, states, actions, params)
        assert obs.shape == info["final_observation"].shape == (8, 2)
        assert r.shape == term.shape == trunc.shape == (8,) and r.dtype == jnp.float32
    assert len(np.unique(starts[:, 0])) == 8 and np.all(np.abs(starts[:, 0]) <= math.pi / 8)
    np.testing.assert_array_equal(starts[:, 1], 0.0)


def random_policy_episodes(env, episodes: int, steps: int, key: jax.Array):
    """(returns, lengths, finished) of each env's first episode under uniformly random actions."""
    params = env.default_params
    k_reset, k_run = jax.random.split(key)
    _, states = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(k_reset, episodes), params)

    def body(carry, key):
        states, returns, lengths, alive = carry
        k_act, k_step = jax.random.split(key)
        actions = jax.random.randint(k_act, (episodes,), 0, env.num_actions)
        _, states, r, term, trunc, _ = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
            jax.random.split(k_step, episodes), states, actions, params)
        returns = returns + jnp.where(alive, r, 0.0)
        return (states, returns, lengths + alive, alive & ~(term | trunc)), None

    zeros = jnp.zeros(episodes)
    init = (states, zeros, zeros, jnp.ones(episodes, bool))
    (_, returns, lengths, alive), _ = jax.lax.scan(body, init, jax.random.split(k_run, steps))
    return returns, lengths, ~alive


@pytest.mark.slow
def test_random_policy_returns():
    # Car-On-Hill, 100-step horizon: measured over 40,000 episodes, a random policy reaches the top 1.3% of the
    # time and mostly crashes (85%); mean return -0.83 (odeint on the same equations, 1,000 episodes: -0.81).
    returns, lengths, finished = map(np.asarray, jax.jit(random_policy_episodes, static_argnums=(0, 1, 2))(
        CAR, 2000, 100, jax.random.PRNGKey(0)))
    assert finished.all()
    assert -0.9 < returns.mean() < -0.75
    assert 0.002 < (returns > 0).mean() < 0.04
    # Pendulum: LSPI reports random episodes of about 6 steps from near-upright starts; from mushroom-rl's
    # U(-pi/8, pi/8) starts we measure 7.9 steps (odeint: 7.8), and every episode falls (return -1).
    returns, lengths, finished = map(np.asarray, jax.jit(random_policy_episodes, static_argnums=(0, 1, 2))(
        PENDULUM, 2000, 80, jax.random.PRNGKey(0)))
    assert finished.all() and (returns == -1.0).all()
    assert 6.5 < lengths.mean() < 9.5


def test_registered_and_listed():
    car, pend = parse_task("CarOnHill-v0:reward_scale=2"), parse_task("InvertedPendulumDiscrete-v0")
    assert (car.kind, car.obs_shape, car.num_actions, car.max_episode_steps, car.reward_scale) == (
        "vector", (2,), 2, 100, 2.0)
    assert (pend.kind, pend.obs_shape, pend.num_actions, pend.max_episode_steps) == ("vector", (2,), 3, 3000)
    assert {"CarOnHill-v0", "InvertedPendulumDiscrete-v0"} <= {t.name for t in list_tasks()}
    assert isinstance(car.make()[0], CarOnHill)


@pytest.mark.slow
def test_steps_beside_gymnax_tasks_in_one_task_set():
    task_set = make_task_set(["CarOnHill-v0", "InvertedPendulumDiscrete-v0", "CartPole-v1"])
    assert task_set.obs_shape == (4,) and task_set.num_actions == 3
    np.testing.assert_array_equal(task_set.action_mask(), [[1, 1, 0], [1, 1, 1], [1, 1, 0]])
    obs, states = reset_envs(task_set, jax.random.PRNGKey(0), 3)
    np.testing.assert_array_equal(obs[0], [[-0.5, 0.0, 0.0, 0.0]] * 3)  # Car-On-Hill padded from 2 to 4
    states, out = jax.jit(lambda s, k: step_envs(task_set, s, jnp.ones((3, 3), jnp.int32), k))(
        states, jax.random.PRNGKey(1))
    assert out.obs.shape == out.next_obs.shape == (3, 3, 4) and out.reward.shape == (3, 3)
    np.testing.assert_array_equal(out.obs[:2, :, 2:], 0.0)


@pytest.mark.parametrize("spec, suggestion", [("CarOnHil-v0", "CarOnHill-v0"),
                                              ("InvertedPendulum-v0", "InvertedPendulumDiscrete-v0")])
def test_near_misses_get_a_suggestion(spec, suggestion):
    with pytest.raises(ConfigError, match=f"did you mean '{suggestion}'") as info:
        parse_task(spec)
    assert "\n" not in str(info.value)


@pytest.mark.slow
def test_trains_through_the_compiled_loop(tmp_path):
    # Both new tasks in one agent (2 and 3 actions), through training, logging and the final evaluation.
    from mtdqn.analysis.ranges import return_bounds
    from mtdqn.train.run import train  # imported here: the loop is only needed by this test

    cfg = TrainConfig(
        tasks=("CarOnHill-v0", "InvertedPendulumDiscrete-v0"), steps=400, log_every=200, num_envs=4,
        dqn=DQNConfig(learning_starts=100, buffer_size=400, batch_size=32, target_update_every=50, tau=1.0),
    )
    result = train(cfg, tmp_path / "run", progress=False, eval_episodes=2)
    metrics = result.metrics
    assert set(metrics["task"]) == set(cfg.tasks) and len(metrics) == 2 * len(cfg.tasks)  # chunks x tasks
    # Updates from learning_starts on, for both tasks in every chunk: a positive loss in every row (0: no update).
    assert metrics["loss"].notna().all() and (metrics["loss"] > 0).all(), metrics
    d = derive(cfg)
    assert np.asarray(result.state.updates).tolist() == [d.total_iters - d.learning_starts_iters]
    assert (metrics.groupby("task")["episodes"].sum() > 0).all()  # episodes end in both tasks
    for task in cfg.tasks:
        lo, hi = return_bounds(task)
        assert all(lo <= r <= hi for r in result.summary["final_eval"][task]), result.summary["final_eval"]


def _trajectory(env, params, key, steps: int = 30) -> np.ndarray:
    """Observations of ``steps`` steps under a fixed action sequence, every random draw from ``key``."""
    k_reset, k_steps = jax.random.split(key)
    obs, state = env.reset(k_reset, params)
    out = [obs]
    for i, k in enumerate(jax.random.split(k_steps, steps)):
        obs, state = env.step(k, state, i % env.num_actions, params)[:2]
        out.append(obs)
    return np.stack(out)


@pytest.mark.parametrize("name, declared", [("CarOnHill-v0", True), ("InvertedPendulumDiscrete-v0", False),
                                            ("CartPole-v1", False), ("MountainCar-v0", False)])
def test_fixed_start_and_deterministic_dynamics_are_declared_only_where_true(name, declared):
    env, params = make_env(name)
    assert fixed_start_deterministic(env) is declared
    a, b = (_trajectory(env, params, jax.random.PRNGKey(k)) for k in (0, 1))
    assert np.array_equal(a, b) is declared  # other keys: the same path exactly, or another one
