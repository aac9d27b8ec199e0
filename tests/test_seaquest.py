"""Our Seaquest-MinAtar (mtdqn/tasks/seaquest.py) against Young & Tian's ``minatar`` package, step by step."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import QueuedDraws, assert_wrapper_steps_as_its_game
from mtdqn.tasks.seaquest import MAX_DIVERS, MAX_ENEMIES, MAX_F_BULLETS, Seaquest, enemy_bound


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


def _random_policy(p):
    def policy(game, rng):
        return int(rng.choice(6, p=p))

    return policy


def _diver_policy(game, rng) -> int:
    """Fetch divers and surface with them, dodging and shooting, sometimes at random: reaches rescues and the
    difficulty ramp that random play rarely does."""
    enemies = game.e_fish + game.e_subs

    def danger(y):
        return (any(e[1] == y and abs(e[0] - game.sub_x) <= 3 for e in enemies)
                or any(b[1] == y and abs(b[0] - game.sub_x) <= 2 for b in game.e_bullets))

    if game.diver_count > 0 and (game.oxygen < 60 or game.diver_count >= 6) and game.sub_y > 0:
        return 2  # up
    if game.diver_count < 0 and rng.random() < 0.5:  # after a full rescue surfacing is free: ramp up
        return 2 if game.sub_y > 0 else 4
    if game.sub_y > 0 and danger(game.sub_y):
        if game.shot_timer == 0 and any(e[1] == game.sub_y and (e[0] > game.sub_x) == game.sub_or for e in enemies):
            return 5
        if game.sub_y < 8 and not danger(game.sub_y + 1):
            return 4
        if game.sub_y > 1 and not danger(game.sub_y - 1):
            return 2
    if rng.random() < 0.1:
        return int(rng.integers(6))
    if game.divers:
        x, y = game.divers[0][:2]
        if y != game.sub_y:
            return 4 if y > game.sub_y else 2
        if x != game.sub_x:
            return 3 if x > game.sub_x else 1
    return 4 if game.sub_y == 0 else 5


def _play(episodes: int, seed: int, policy, six_divers_at: int = -1) -> tuple[int, float, int]:
    """Step our game and MinAtar's side by side; at step ``six_divers_at`` both are given 6 divers on board."""
    from minatar import Environment

    env = Seaquest()
    params = env.default_params
    step = jax.jit(lambda k, s, a: env.step_env(k, s, a, params))
    draws = jax.jit(jax.vmap(lambda k: jax.random.uniform(k, (5,))))  # an episode's at once: each its key's
    rng = np.random.default_rng(seed)
    checked, rewards, ramps = 0, 0.0, 0
    for episode in range(episodes):
        obs, state = env.reset_env(jax.random.PRNGKey(episode), params)
        oracle = Environment("seaquest", sticky_action_prob=0.0)
        oracle.env.random = stub = QueuedDraws()
        oracle.reset()
        np.testing.assert_array_equal(np.asarray(obs, bool), oracle.state())
        keys = jax.random.split(jax.random.PRNGKey(seed * 1_000 + episode), 5_000)
        episode_draws = np.asarray(draws(keys))
        for t, key in enumerate(np.asarray(keys)):  # numpy rows: indexing a jax array is an op per step
            if t == six_divers_at:
                oracle.env.diver_count = 6
                state = state.replace(diver_count=jnp.int32(6))
            action = policy(oracle.env, rng)
            stub.queue += _oracle_draws(episode_draws[t], oracle.env.e_spawn_timer == 0,
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


def test_minatar_lists_stay_within_the_derived_bounds():
    """Episodes of the ``minatar`` package, random ones and ones that ramp the difficulty to its end (6 divers
    handed over, then surfacing for free): no list is ever longer than the module's bound (the enemy bullets'
    grid needs none, but their count stays below the enemies' bound)."""
    from minatar import Environment

    rng = np.random.default_rng(0)
    most = {"f_bullets": 0, "divers": 0, "enemies": 0, "e_bullets": 0}
    steps = ramps = 0
    for episode in range(400):
        env = Environment("seaquest", sticky_action_prob=0.0)
        env.seed(episode)
        env.reset()
        game = env.env
        ramping = episode % 2 == 1
        policy = _diver_policy if ramping else _random_policy([0.05, 0.15, 0.2, 0.15, 0.25, 0.2])
        for t in range(3_000):
            if ramping and t == 15:
                game.diver_count = 6
            a = policy(game, rng)
            # the spawn point: the lists before the step, plus a spawn if one is due
            most["enemies"] = max(most["enemies"], len(game.e_fish) + len(game.e_subs) + (game.e_spawn_timer == 0))
            most["divers"] = max(most["divers"], len(game.divers) + (game.d_spawn_timer == 0))
            most["f_bullets"] = max(most["f_bullets"], len(game.f_bullets) + (a == 5 and game.shot_timer == 0))
            _, terminal = env.act(a)
            most["e_bullets"] = max(most["e_bullets"], len(game.e_bullets))
            steps += 1
            if terminal:
                break
        ramps = max(ramps, game.ramp_index)
    assert steps > 15_000 and ramps == 19, (steps, ramps)  # the spawn interval reached 1
    assert most["f_bullets"] <= MAX_F_BULLETS and most["divers"] <= MAX_DIVERS, most
    assert most["enemies"] <= enemy_bound() and most["e_bullets"] <= enemy_bound(), most
    assert most["f_bullets"] == 2 and most["divers"] == 2 and most["enemies"] >= 15, most  # the lists were used


@pytest.mark.slow
def test_steps_as_the_minatar_package():
    """Observations (all 10 channels), rewards and terminals equal MinAtar's at every step, terminal steps
    included (no oxygen-gauge difference), over random episodes with the spawn draws aligned."""
    checked, rewards, _ = _play(25, seed=0, policy=_random_policy([0.1, 0.15, 0.15, 0.15, 0.3, 0.15]))
    assert checked > 1_000 and rewards > 0, (checked, rewards)


@pytest.mark.slow
def test_steps_as_the_minatar_package_while_surfacing_often():
    """A policy that fetches divers, with 6 divers handed to both games on step 15: rescues, the full-rescue
    bonus, the diver count at -1 that follows it (MinAtar's quirk), and the difficulty ramp."""
    checked, rewards, ramps = _play(20, seed=1, policy=_diver_policy, six_divers_at=15)
    assert checked > 1_000 and ramps >= 15, (checked, ramps)


@pytest.mark.slow
def test_vmapped_and_jitted_with_auto_reset():
    env = Seaquest()
    params = env.default_params
    n, steps = 8, 300

    def body(states, inputs):
        k, a = inputs
        obs, states, r, term, trunc, _ = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
            jax.random.split(k, n), states, a, params)
        return states, (obs, r, term, trunc)

    @jax.jit  # the resets and the steps: one program
    def reset_and_play(reset_keys, step_keys, actions):
        first, states = jax.vmap(env.reset, in_axes=(0, None))(reset_keys, params)
        return first, jax.lax.scan(body, states, (step_keys, actions))[1]

    actions = jax.random.randint(jax.random.PRNGKey(1), (steps, n), 0, 6)
    first, (obs, r, term, trunc) = reset_and_play(jax.random.split(jax.random.PRNGKey(0), n),
                                                  jax.random.split(jax.random.PRNGKey(2), steps), actions)
    assert first.shape == (n, 10, 10, 10) and first.dtype == jnp.float32
    assert obs.shape == (steps, n, 10, 10, 10)
    assert np.asarray(term).any()  # random play ends episodes; the auto-reset carries on
    assert set(np.unique(np.asarray(obs))) <= {0.0, 1.0}


@pytest.mark.slow
def test_seaquest_task_is_ours_with_gymnax_cut_off_and_the_wrapper_wraps_it():
    from mtdqn.tasks import parse_task
    from mtdqn.tasks.minatar import MinAtarEnv

    plain = parse_task("Seaquest-MinAtar")
    env, params = plain.make()
    assert isinstance(env, Seaquest) and plain.max_episode_steps == 1000 and plain.num_actions == 6
    assert plain.obs_shape == (10, 10, 10)
    published = parse_task("Seaquest-MinAtar:sticky=0.1,actions=full,max_steps=10000")
    wrapped, wparams = published.make()
    assert isinstance(wrapped, MinAtarEnv) and isinstance(wrapped.game, Seaquest)
    assert (published.max_episode_steps, published.num_actions) == (10_000, 6)
    # gymnax's cut-off for the plain task: a truncation at 1,000 steps, not a termination
    _, state = env.reset(jax.random.PRNGKey(0), params)
    state = state.replace(time=jnp.int32(999))
    *_, terminated, truncated, _ = env.step(jax.random.PRNGKey(1), state, 0, params)
    assert bool(truncated) and not bool(terminated)


@pytest.mark.slow
def test_wrapper_without_sticky_actions_steps_our_seaquest():
    """sticky 0: MinAtarEnv steps our game unchanged, given the game's keys (it hands the game the second half)."""
    from mtdqn.tasks.minatar import MinAtarEnv

    wrapped, game = MinAtarEnv("Seaquest-MinAtar", max_steps=1000), Seaquest()
    params = game.default_params
    actions = jnp.array([0, 1, 3, 4, 5])[jax.random.randint(jax.random.PRNGKey(1), (300,), 0, 5)]  # no "up"
    keys = jax.random.split(jax.random.PRNGKey(2), 300)
    assert_wrapper_steps_as_its_game(wrapped, game, params, actions, keys)
