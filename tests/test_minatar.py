"""MinAtar as published (mtdqn/tasks/minatar.py): sticky actions, the full action set, the cut-off."""

from __future__ import annotations

import functools

import gymnax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import QueuedDraws, assert_wrapper_steps_as_its_game
from mtdqn.errors import ConfigError
from mtdqn.tasks import make_task_set, parse_task, reset_envs, step_envs
from mtdqn.tasks.asterix import Asterix, spawn, spawn_draws
from mtdqn.tasks.minatar import MinAtarEnv, make_game


@functools.partial(jax.jit, static_argnums=0)
def _rollout(env, params, actions, key):
    """Step ``env`` (with auto-reset) through ``actions``; every output stacked over time.  One compiled program
    per env and number of actions: params, actions and key are arguments, so the calls that differ only in them
    share it."""

    def body(state, inputs):
        action, k = inputs
        obs, state, reward, terminated, truncated, info = env.step(k, state, action, params)
        return state, (obs, reward, terminated, truncated, state)

    k_reset, k_steps = jax.random.split(key)
    _, state = env.reset(k_reset, params)
    return jax.lax.scan(body, state, (actions, jax.random.split(k_steps, len(actions))))[1]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["Breakout-MinAtar", "Asterix-MinAtar", "Freeway-MinAtar", "SpaceInvaders-MinAtar"])
def test_without_sticky_actions_the_wrapper_is_its_game(name):
    """sticky 0, minimal actions, gymnax's cut-off: the same game (gymnax's; Asterix ours), step by step, given
    the game's keys."""
    game, params = make_game(name)
    wrapped = MinAtarEnv(name, max_steps=params.max_steps_in_episode)
    actions = jax.random.randint(jax.random.PRNGKey(1), (400,), 0, game.num_actions)
    keys = jax.random.split(jax.random.PRNGKey(2), 400)
    assert_wrapper_steps_as_its_game(wrapped, game, params, actions, keys)

@pytest.mark.slow
def test_sticky_actions_repeat_the_last_executed_action_with_their_probability():
    env = MinAtarEnv("Breakout-MinAtar", sticky=0.1)
    params = env.default_params
    n = 4_000
    actions = jax.random.randint(jax.random.PRNGKey(0), (n,), 0, env.num_actions)
    *_, states = _rollout(env, params, actions, jax.random.PRNGKey(1))
    executed = np.asarray(states.last_action)
    previous = np.concatenate([[0], executed[:-1]])  # MinAtar's last_action starts at 0 (no-op)
    chosen = np.asarray(actions)
    # every step executes either the chosen action or the previous executed one
    assert np.all((executed == chosen) | (executed == previous))
    informative = chosen != previous  # steps where sticking is visible
    stuck = np.mean(executed[informative] != chosen[informative])
    se = np.sqrt(0.1 * 0.9 / informative.sum())
    assert abs(stuck - 0.1) < 4 * se, stuck  # 0.1 within 4 standard errors (~0.02 here)
    # deterministic per key
    *_, again = _rollout(env, params, actions, jax.random.PRNGKey(1))
    np.testing.assert_array_equal(np.asarray(again.last_action), executed)
    *_, other = _rollout(env, params, actions, jax.random.PRNGKey(2))
    assert not np.array_equal(np.asarray(other.last_action), executed)


@pytest.mark.slow
def test_last_action_survives_the_auto_reset_as_in_minatar():
    """MinAtar's Environment.reset() leaves last_action alone; so does the wrapper's auto-reset."""
    env = MinAtarEnv("Breakout-MinAtar", sticky=0.1, max_steps=3)
    params = env.default_params
    _, state = env.reset(jax.random.PRNGKey(0), params)
    for k in jax.random.split(jax.random.PRNGKey(1), 2):
        _, state, *_ = env.step(k, state, 2, params)
    assert int(state.time) == 2
    _, state, _, terminated, truncated, _ = env.step(jax.random.PRNGKey(5), state, 2, params)
    assert bool(truncated) and not bool(terminated)
    assert int(state.time) == 0 and int(state.last_action) == 2


@pytest.mark.slow
def test_full_action_set_maps_extra_actions_to_no_op():
    """Breakout's full set is n l u r d f; u, d and f do what n does, l and r what the minimal set's 1 and 2 do."""
    full = MinAtarEnv("Breakout-MinAtar", full_actions=True)
    minimal = MinAtarEnv("Breakout-MinAtar", max_steps=1000)
    assert full.num_actions == 6 and minimal.num_actions == 3
    key = jax.random.PRNGKey(7)
    moves = jax.random.randint(jax.random.PRNGKey(8), (200,), 0, 3)  # minimal: n l r
    as_full = jnp.array([0, 1, 3])[moves]
    ref = _rollout(minimal, minimal.default_params, moves, key)
    got = _rollout(full, full.default_params, as_full, key)
    np.testing.assert_array_equal(got[0], ref[0])
    noops = jnp.where(moves == 0, jax.random.choice(jax.random.PRNGKey(9), jnp.array([0, 2, 4, 5]), (200,)), as_full)
    got_noop = _rollout(full, full.default_params, noops, key)
    np.testing.assert_array_equal(got_noop[0], ref[0])
    np.testing.assert_array_equal(got_noop[1], ref[1])


@pytest.mark.slow
def test_cut_off_is_a_truncation_and_freeway_ends_itself():
    # One wrapper, two cut-offs: the cut-off is in the params (max_steps=3000 sets the params' limit), so both
    # rollouts are one compiled program.  Sticky actions repeat the no-op here: they change no step.
    default = MinAtarEnv("Freeway-MinAtar", sticky=0.1)
    assert MinAtarEnv("Freeway-MinAtar", max_steps=3000).default_params == \
        default.default_params.replace(max_steps_in_episode=3000)
    params = default.default_params.replace(max_steps_in_episode=3000)
    _, _, terminated, truncated, states = _rollout(default, params, jnp.zeros(2_600, jnp.int32),
                                                   jax.random.PRNGKey(0))
    # MinAtar's Freeway: terminate_timer 2,500 runs out on the 2,501st step, a termination
    assert np.flatnonzero(np.asarray(terminated)).tolist() == [2_500]
    assert not np.asarray(truncated).any()
    # gymnax's default cut-off comes first and stays a truncation, as for the plain task
    _, _, terminated, truncated, _ = _rollout(default, default.default_params, jnp.zeros(2_600, jnp.int32),
                                              jax.random.PRNGKey(0))
    assert np.flatnonzero(np.asarray(truncated)).tolist() == [2_499] and not np.asarray(terminated).any()


@pytest.mark.slow
def test_task_options_reach_the_compiled_loop():
    ts = make_task_set(["Breakout-MinAtar:sticky=0.1,actions=full,max_steps=5", "SpaceInvaders-MinAtar"])
    assert [t.num_actions for t in ts.tasks] == [6, 4] and ts.num_actions == 6
    assert [t.max_episode_steps for t in ts.tasks] == [5, 1000]
    obs, states = reset_envs(ts, jax.random.PRNGKey(0), 3)
    step = jax.jit(lambda s, a, k: step_envs(ts, s, a, k))
    for i, k in enumerate(jax.random.split(jax.random.PRNGKey(1), 5)):
        states, out = step(states, jnp.full((2, 3), 1, jnp.int32), k)
    np.testing.assert_array_equal(out.done[0], True)  # the 5-step cut-off
    np.testing.assert_array_equal(out.terminated[0], False)
    plain = parse_task("Breakout-MinAtar")
    assert (plain.sticky, plain.full_actions, plain.max_steps, plain.num_actions) == (0.0, False, None, 3)
    assert type(plain.make()[0]).__name__ == "MinBreakout"  # a plain name is gymnax's game unchanged


@pytest.mark.parametrize(
    "spec, fragment",
    [("CartPole-v1:sticky=0.1", "MinAtar games only"), ("Breakout-MinAtar:sticky=1", r"\[0, 1\)"),
     ("Breakout-MinAtar:sticky=x", "must be a number"), ("Breakout-MinAtar:actions=all", "full or minimal"),
     ("Breakout-MinAtar:max_steps=0", ">= 1"), ("Breakout-MinAtar:max_steps=2.5", "whole number"),
     ("Breakout-MinAtar:stiky=0.1", "bad task option")],
)
def test_bad_minatar_options_are_one_line_errors(spec, fragment):
    with pytest.raises(ConfigError, match=fragment) as info:
        parse_task(spec)
    assert "\n" not in str(info.value)


def test_command_line_keeps_a_specs_options_together():
    from mtdqn.cli.entry import _split_commas

    argv = ["train", "--tasks", "Breakout-MinAtar:sticky=0.1,actions=full,SpaceInvaders-MinAtar", "--steps", "5"]
    assert _split_commas(argv) == ["train", "--tasks", "Breakout-MinAtar:sticky=0.1,actions=full",
                                   "SpaceInvaders-MinAtar", "--steps", "5"]


@pytest.mark.slow
@pytest.mark.parametrize("game, name", [("breakout", "Breakout-MinAtar"), ("space_invaders", "SpaceInvaders-MinAtar")])
def test_full_action_set_steps_as_the_minatar_package(game, name):
    """Against Young & Tian's own package (the test oracle, ``minatar`` 1.0.15): the same observations, rewards
    and terminals for the same random sequence of the six actions, sticky actions off in both.  SpaceInvaders
    has no randomness; Breakout draws only its ball's start, aligned by choosing the oracle's seed."""
    from minatar import Environment

    env = MinAtarEnv(name, full_actions=True, max_steps=100_000)
    params = env.default_params
    step = jax.jit(lambda k, s, a: env.step(k, s, a, params))
    oracle = Environment(game, sticky_action_prob=0.0)
    rng = np.random.default_rng(0)
    checked, rewards = 0, 0.0
    for episode in range(40):
        obs, state = env.reset(jax.random.PRNGKey(100 + episode), params)
        for seed in range(50):  # an oracle seed whose start is ours
            oracle.seed(seed)
            oracle.reset()
            if np.array_equal(oracle.state(), np.asarray(obs, bool)):
                break
        else:
            pytest.fail("no oracle seed gives our start")
        for t, k in enumerate(jax.random.split(jax.random.PRNGKey(episode), 2_000)):
            a = int(rng.integers(6))
            obs, state, reward, terminated, truncated, info = step(k, state, a)
            ref_reward, ref_terminal = oracle.act(a)
            np.testing.assert_array_equal(np.asarray(info["final_observation"], bool), oracle.state(),
                                          err_msg=f"episode {episode}, step {t}")
            assert (float(reward), bool(terminated)) == (float(ref_reward), bool(ref_terminal)), (episode, t)
            checked += 1
            rewards += float(reward)
            if ref_terminal:
                break
        if checked > 1_000:
            break
    assert checked > 300 and rewards > 0  # long enough, and a reward seen, to have checked something


@pytest.mark.slow
def test_gymnax_seaquest_steps_as_the_minatar_package():
    """gymnax's Seaquest against ``minatar`` 1.0.15 with the spawns' random draws aligned: gymnax's draws of each
    step (read from its key the way ``step_env`` splits it) are handed to MinAtar's game in the order it asks.
    Every observation, reward and terminal agrees, except one known difference in the terminal observation
    when the sub surfaces with no diver: gymnax refills the oxygen gauge first (cell 9, 9 of channel 7)."""
    from minatar import Environment

    env, params = gymnax.make("Seaquest-MinAtar")
    step = jax.jit(lambda k, s, a: env.step_env(k, s, a, params))
    reset = jax.jit(lambda k: env.reset_env(k, params))  # one program (op by op: ~30, and slower per episode)

    @jax.jit
    @jax.vmap  # every step's draws of an episode at once: each step's come from its own key alone
    def draws(key):
        k_enemy, k_diver = jax.random.split(key)
        k_choice, k_y = jax.random.split(k_enemy)
        k_dir, k_diver_y = jax.random.split(k_diver)
        return (jax.random.uniform(k_choice, (2,)), jax.random.randint(k_y, (), 1, 9),
                jax.random.bernoulli(k_dir), jax.random.randint(k_diver_y, (), 1, 9))

    rng = np.random.default_rng(0)
    checked, rewards, gauge_only = 0, 0.0, 0
    for episode in range(15):
        obs, state = reset(jax.random.PRNGKey(episode))
        oracle = Environment("seaquest", sticky_action_prob=0.0)
        oracle.env.random = stub = QueuedDraws()
        oracle.reset()
        np.testing.assert_array_equal(np.asarray(obs, bool), oracle.state())
        keys = jax.random.split(jax.random.PRNGKey(1_000 + episode), 3_000)
        episode_draws = [np.asarray(x) for x in draws(keys)]
        for t, key in enumerate(np.asarray(keys)):  # numpy rows: indexing a jax array is an op per step
            action = int(rng.choice(6, p=[0.1, 0.15, 0.15, 0.15, 0.3, 0.15]))  # dive more than surface
            (u_enemy, y_enemy, right, y_diver) = (x[t] for x in episode_draws)
            if oracle.env.e_spawn_timer == 0:
                stub.queue += [float(u_enemy[0]), float(u_enemy[1]), int(y_enemy)]
            if oracle.env.d_spawn_timer == 0:
                stub.queue += [0.25 if bool(right) else 0.75, int(y_diver)]
            obs, state, reward, terminated, _ = step(key, state, action)
            ref_reward, ref_terminal = oracle.act(action)
            assert not stub.queue  # MinAtar asked for exactly the draws gymnax made
            assert (float(reward), bool(terminated)) == (float(ref_reward), bool(ref_terminal)), (episode, t)
            differ = np.argwhere(np.asarray(obs, bool) != oracle.state()).tolist()
            checked += 1
            rewards += float(reward)
            if ref_terminal:
                assert differ in ([], [[9, 9, 7]]), (episode, t, differ)
                gauge_only += differ == [[9, 9, 7]]
                break
            assert differ == [], (episode, t, differ)
    assert checked > 500 and rewards > 0, (checked, rewards)


def _rows(alive: list[int]) -> jnp.ndarray:
    """Asterix's (8, 5) entities with the rows ``alive`` taken (an enemy moving left at x 5)."""
    rows = np.zeros((8, 5), np.int32)
    for r in alive:
        rows[r] = [5, r + 1, 0, 0, 1]
    return jnp.asarray(rows)


def test_asterix_spawns_into_a_free_row_uniformly_and_never_over_a_live_one():
    """MinAtar's ``_spawn_entity``: a row uniform among the free ones, none when all 8 are taken.  gymnax's
    never tried the first row of its random order (one row free: found 7 times in 8) and, finding none, wrote
    an empty row over a live one."""
    keys = jax.random.split(jax.random.PRNGKey(0), 3000)
    spawned = jax.jit(jax.vmap(spawn, in_axes=(0, None)))
    full = _rows(list(range(8)))
    np.testing.assert_array_equal(spawned(keys[:200], full), np.broadcast_to(full, (200, 8, 5)))
    one_free = np.asarray(spawned(keys[:400], _rows([0, 1, 2, 4, 5, 6, 7])))
    assert (one_free[:, :, 4] == 1).all() and (one_free[:, 3, 1] == 4).all()  # row 3 taken every time
    three_free = np.asarray(spawned(keys, _rows([0, 1, 3, 4, 6])))
    new_rows = np.argmax(three_free[:, :, 4] != np.asarray(_rows([0, 1, 3, 4, 6]))[None, :, 4], axis=1)
    assert set(new_rows.tolist()) == {2, 5, 7} and (three_free[:, :, 4].sum(axis=1) == 6).all()
    np.testing.assert_allclose(np.bincount(new_rows, minlength=8)[[2, 5, 7]] / len(keys), 1 / 3, atol=0.04)
    row = three_free[np.arange(len(keys)), new_rows]  # x 0 moving right, or x 9 moving left; gold a third
    assert set(map(tuple, row[:, [0, 2]].tolist())) == {(0, 1), (9, 0)}
    assert abs(row[:, 3].mean() - 1 / 3) < 0.04 and abs(row[:, 2].mean() - 1 / 2) < 0.04


def test_asterix_is_ours_for_a_plain_name_and_in_the_wrapper():
    from mtdqn.tasks import parse_task

    env, _ = parse_task("Asterix-MinAtar").make()
    wrapped, _ = parse_task("Asterix-MinAtar:sticky=0.1").make()
    assert isinstance(env, Asterix) and isinstance(wrapped, MinAtarEnv) and isinstance(wrapped.game, Asterix)


def _crowded(env, params, oracle, rng):
    """Both games at full difficulty (a spawn and a move every frame) with 7 of the 8 rows taken, the same
    entities in each: where gymnax's spawn lost entities."""
    rows = [None] * 8
    for r in rng.permutation(8)[:7]:
        rows[r] = [int(rng.integers(10)), int(r) + 1, bool(rng.integers(2)), bool(rng.random() < 1 / 3)]
    timers = {"spawn_speed": 1, "spawn_timer": 0, "move_speed": 1, "move_timer": 0, "ramp_index": 10}
    for name, value in {**timers, "entities": rows, "player_x": 5, "player_y": 5}.items():
        setattr(oracle.env, name, value)
    entities = jnp.asarray([[*e[:2], int(e[2]), int(e[3]), 1] if e else [0] * 5 for e in rows], jnp.int32)
    _, state = env.reset_env(jax.random.PRNGKey(0), params)
    return state.replace(entities=entities, **timers)


@pytest.mark.slow
def test_asterix_steps_as_the_minatar_package():
    """Our Asterix against ``minatar`` 1.0.15 with each spawn's draws aligned (:func:`spawn_draws`, handed to
    MinAtar's game in the order it asks: ``rand() < 1/2`` for the direction, ``rand() < 1/3`` for a treasure, then
    ``randint`` over the free rows when one is free, the index of ours among them): the same observations,
    rewards and terminals under random play, every step, from the start and from crowded full-difficulty states
    (:func:`_crowded`), where spawns find one row free or none."""
    from minatar import Environment

    env = Asterix()
    params = env.default_params
    step = jax.jit(lambda k, s, a: env.step_env(k, s, a, params))
    draws = jax.jit(spawn_draws)
    rng = np.random.default_rng(0)
    checked, rewards, spawns, crowded_spawns = 0, 0.0, 0, 0
    for episode in range(100):
        obs, state = env.reset_env(jax.random.PRNGKey(episode), params)
        oracle = Environment("asterix", sticky_action_prob=0.0)
        oracle.env.random = stub = QueuedDraws()
        oracle.reset()
        if episode >= 60:
            state = _crowded(env, params, oracle, rng)
            obs = env.get_obs(state)
        np.testing.assert_array_equal(np.asarray(obs, bool), oracle.state())
        for t, key in enumerate(jax.random.split(jax.random.PRNGKey(1_000 + episode), 1_000)):
            action = int(rng.integers(5))  # the minimal set: n l u r d, MinAtar's first five
            if oracle.env.spawn_timer == 0:
                free = np.array([e is None for e in oracle.env.entities])
                right, gold, row = (x.item() for x in draws(key, jnp.asarray(free)))
                stub.queue += [0.25 if right else 0.75, 0.1 if gold else 0.9]
                stub.queue += [int(free[:row].sum())] if free.any() else []
                spawns += 1
                crowded_spawns += int(free.sum() <= 1)
            obs, state, reward, terminated, _ = step(key, state, action)
            ref_reward, ref_terminal = oracle.act(action)
            assert not stub.queue  # MinAtar asked for exactly the draws we made
            assert (float(reward), bool(terminated)) == (float(ref_reward), bool(ref_terminal)), (episode, t)
            np.testing.assert_array_equal(np.asarray(obs, bool), oracle.state(), err_msg=f"{episode}, {t}")
            checked += 1
            rewards += float(reward)
            if ref_terminal:
                break
    assert checked > 2_000 and rewards > 5 and spawns > 200 and crowded_spawns > 40, (checked, rewards, spawns,
                                                                                      crowded_spawns)

