"""Our Seaquest-MinAtar (mtdqn/tasks/seaquest.py) against Young & Tian's ``minatar`` package, step by step."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtdqn.tasks import seaquest
from mtdqn.tasks.seaquest import MAX_DIVERS, MAX_ENEMIES, MAX_F_BULLETS, Seaquest, enemy_bound


class _Draws:
    """Stands in for MinAtar's ``np.random.RandomState``: answers its calls with values given beforehand."""

    def __init__(self) -> None:
        self.queue: list[float] = []

    def rand(self) -> float:
        return self.queue.pop(0)

    def randint(self, low: int, high: int | None = None) -> int:
        return int(self.queue.pop(0))


def _lane(u: float) -> int:
    return 1 + int(np.floor(np.float32(u) * np.float32(8)))


def _oracle_draws(u: np.ndarray, enemy: bool, diver: bool) -> list[float]:
    """Our step's draws (one uniform(key, (5,))) in the order MinAtar's game asks for them."""
    out: list[float] = []
    if enemy:
        out += [float(u[0]), float(u[1]), _lane(u[2])]
    if diver:
        out += [float(u[3]), _lane(u[4])]
    return out


def test_capacity_covers_the_derived_bound():
    assert enemy_bound() == 31  # the docstring's derivation
    assert MAX_ENEMIES >= enemy_bound() and MAX_F_BULLETS >= 2 and MAX_DIVERS >= 2


def test_minatar_lists_stay_within_the_derived_bounds():
    """Random episodes of the ``minatar`` package, surfacing often so the difficulty ramps: no list is ever
    longer than the bound the module derives (the enemy bullets' grid needs none, but stays below the enemies')."""
    from minatar import Environment

    rng = np.random.default_rng(0)
    most = {"f_bullets": 0, "divers": 0, "enemies": 0, "e_bullets": 0}
    steps = 0
    for episode in range(300):
        env = Environment("seaquest", sticky_action_prob=0.0)
        env.seed(episode)
        env.reset()
        game = env.env
        while True:
            a = int(rng.choice(6, p=[0.05, 0.15, 0.2, 0.15, 0.25, 0.2]))
            # the spawn point: the lists before the step, plus a spawn if one is due
            most["enemies"] = max(most["enemies"], len(game.e_fish) + len(game.e_subs) + (game.e_spawn_timer == 0))
            most["divers"] = max(most["divers"], len(game.divers) + (game.d_spawn_timer == 0))
            most["f_bullets"] = max(most["f_bullets"], len(game.f_bullets) + (a == 5 and game.shot_timer == 0))
            _, terminal = env.act(a)
            most["e_bullets"] = max(most["e_bullets"], len(game.e_bullets))
            steps += 1
            if terminal:
                break
    assert steps > 7_000, steps
    assert most["f_bullets"] <= MAX_F_BULLETS and most["divers"] <= MAX_DIVERS, most
    assert most["enemies"] <= enemy_bound() and most["e_bullets"] <= enemy_bound(), most
    print(most)
    assert most["f_bullets"] == 2 and most["divers"] >= 1 and most["enemies"] >= 3, most  # the lists were used


def _play(episodes: int, seed: int, policy_p) -> tuple[int, float, int]:
    from minatar import Environment

    env = Seaquest()
    params = env.default_params
    step = jax.jit(lambda k, s, a: env.step_env(k, s, a, params))
    draw = jax.jit(lambda k: jax.random.uniform(k, (5,)))
    rng = np.random.default_rng(seed)
    checked, rewards, ramps = 0, 0.0, 0
    for episode in range(episodes):
        obs, state = env.reset_env(jax.random.PRNGKey(episode), params)
        oracle = Environment("seaquest", sticky_action_prob=0.0)
        oracle.env.random = stub = _Draws()
        oracle.reset()
        np.testing.assert_array_equal(np.asarray(obs, bool), oracle.state())
        for t, key in enumerate(jax.random.split(jax.random.PRNGKey(seed * 1_000 + episode), 5_000)):
            action = int(rng.choice(6, p=policy_p))
            stub.queue += _oracle_draws(np.asarray(draw(key)), oracle.env.e_spawn_timer == 0,
                                        oracle.env.d_spawn_timer == 0)
            obs, state, reward, terminated, _ = step(key, state, action)
            ref_reward, ref_terminal = oracle.act(action)
            assert not stub.queue  # MinAtar asked for exactly the draws we made
            assert (float(reward), bool(terminated)) == (float(ref_reward), bool(ref_terminal)), (episode, t)
            differ = np.argwhere(np.asarray(obs, bool) != oracle.state()).tolist()
            assert differ == [], (episode, t, differ)
            checked += 1
            rewards += float(reward)
            if ref_terminal:
                break
        ramps = max(ramps, oracle.env.ramp_index)
    return checked, rewards, ramps


def test_steps_as_the_minatar_package():
    """Observations (all 10 channels), rewards and terminals equal MinAtar's at every step, terminal steps
    included (no oxygen-gauge difference), over random episodes with the spawn draws aligned."""
    checked, rewards, _ = _play(25, seed=0, policy_p=[0.1, 0.15, 0.15, 0.15, 0.3, 0.15])
    assert checked > 1_000 and rewards > 0, (checked, rewards)


def test_steps_as_the_minatar_package_while_surfacing_often():
    """A policy that shoots and bobs at the surface: rescues, ramps, the full-rescue bonus path."""
    checked, rewards, ramps = _play(25, seed=1, policy_p=[0.05, 0.1, 0.3, 0.1, 0.25, 0.2])
    assert checked > 1_000 and ramps >= 1, (checked, ramps)


def test_vmapped_and_jitted_with_auto_reset():
    env = Seaquest()
    params = env.default_params
    n, steps = 8, 300
    keys = jax.random.split(jax.random.PRNGKey(0), n)
    obs, states = jax.vmap(env.reset, in_axes=(0, None))(keys, params)
    assert obs.shape == (n, 10, 10, 10) and obs.dtype == jnp.float32

    def body(states, inputs):
        k, a = inputs
        obs, states, r, term, trunc, _ = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
            jax.random.split(k, n), states, a, params)
        return states, (obs, r, term, trunc)

    actions = jax.random.randint(jax.random.PRNGKey(1), (steps, n), 0, 6)
    _, (obs, r, term, trunc) = jax.jit(lambda s: jax.lax.scan(body, s, (jax.random.split(jax.random.PRNGKey(2), steps),
                                                                        actions)))(states)
    assert obs.shape == (steps, n, 10, 10, 10)
    assert np.asarray(term).any()  # random play ends episodes; the auto-reset carries on
    assert set(np.unique(np.asarray(obs))) <= {0.0, 1.0}
