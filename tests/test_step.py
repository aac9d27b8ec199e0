"""The pieces every reported number rests on: target-network updates, TD targets, greedy rollouts."""

from __future__ import annotations

import dataclasses

import gymnax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import filled_state
from mtdqn.config import DQNConfig, NetworkConfig, TrainConfig
from mtdqn.evaluate import rollout_returns
from mtdqn.networks import q_values
from mtdqn.replay import replay_sample
from mtdqn.tasks import reset_envs
from mtdqn.train import step
from mtdqn.train.agent import make_agent
from mtdqn.train.loop import init_state

BASE = TrainConfig(
    tasks=("CartPole-v1", "Acrobot-v1"), steps=1000, log_every=1000, num_envs=4,
    network=NetworkConfig(hidden=(16,), adapter_width=8),
    dqn=DQNConfig(batch_size=16, buffer_size=256, learning_starts=0),
)


def _agent(**dqn):
    return make_agent(dataclasses.replace(BASE, dqn=dataclasses.replace(BASE.dqn, **dqn)))


@pytest.fixture(scope="module")
def filled():
    """filled_state of BASE's agent, made once: acting and storing read nothing the tests' agents change (tau,
    the target update period, double Q, gamma, dropout), so each of them would fill these same bits."""
    return filled_state(_agent())


def _allclose_trees(a, b, **kw):
    return all(np.allclose(x, y, **kw) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.mark.slow
def test_hard_target_copy_happens_every_n_updates_and_only_then(filled):
    agent = _agent(tau=1.0, target_update_every=3)
    state = filled
    initial_target = state.target_params
    update = jax.jit(lambda s, k: step.update(agent, s, k)[0])
    for i in range(1, 7):
        state = update(state, jax.random.PRNGKey(10 + i))
        if i % 3 == 0:  # a hard copy: the target is the online network, exactly
            jax.tree.map(np.testing.assert_array_equal, state.target_params, state.params)
        else:
            assert not _allclose_trees(state.target_params, state.params)
        if i < 3:
            jax.tree.map(np.testing.assert_array_equal, state.target_params, initial_target)


@pytest.mark.slow
def test_polyak_target_moves_tau_of_the_way_every_update(filled):
    tau = 0.25
    agent = _agent(tau=tau, target_update_every=1)
    state = filled
    update = jax.jit(lambda s, k: step.update(agent, s, k)[0])
    for i in range(3):
        new = update(state, jax.random.PRNGKey(20 + i))
        expected = jax.tree.map(lambda p, t: tau * p + (1 - tau) * t, new.params, state.target_params)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), new.target_params, expected)
        state = new


@pytest.mark.slow
@pytest.mark.parametrize("double, specs, gammas", [
    (False, BASE.tasks, (0.9, 0.9)),
    (True, BASE.tasks, (0.9, 0.9)),
    (False, ("CartPole-v1:gamma=0.5", "Acrobot-v1"), (0.5, 0.9)),  # a task's own gamma; the other keeps --gamma
])
def test_td_targets_by_hand(double, specs, gammas, filled):
    """r + gamma_i * (1 - terminated) * Q_target(s', a*), a* over the task's own actions only."""
    agent = make_agent(dataclasses.replace(BASE, tasks=specs, dqn=dataclasses.replace(BASE.dqn, double=double,
                                                                                        gamma=0.9)))
    assert agent.gammas == gammas
    state = filled.replace(params=jax.tree.map(lambda x: x + 0.05, filled.params))  # online != target
    batch = replay_sample(state.replay, jax.random.PRNGKey(3), 16)
    batch = batch.replace(terminated=batch.terminated.at[:, ::3].set(True))  # some terminal transitions
    got = np.asarray(step.td_targets(agent, state, batch))  # (tasks, batch)

    q_target = np.asarray(q_values(agent.arch, state.target_params, batch.next_obs))
    q_online = np.asarray(q_values(agent.arch, state.params, batch.next_obs))
    for i, task in enumerate(agent.task_set.tasks):
        n = task.num_actions  # CartPole has 2 of the 3 padded actions: the third must never be used
        chooser = q_online if double else q_target
        a_star = chooser[i, :, :n].argmax(-1)
        bootstrap = q_target[i, np.arange(16), a_star]
        not_done = 1 - np.asarray(batch.terminated[i], np.float32)
        want = np.asarray(batch.reward[i]) + gammas[i] * not_done * bootstrap
        np.testing.assert_allclose(got[i], want, rtol=1e-5, atol=1e-5)
    assert np.any(np.asarray(batch.terminated)) and np.any(~np.asarray(batch.terminated))


@pytest.mark.slow
@pytest.mark.parametrize("spec, gamma", [("CartPole-v1", 0.99), ("CartPole-v1:gamma=0.8", 0.8)])
def test_rollout_returns_count_exactly_the_first_episode(spec, gamma):
    """A policy that always pushes left: each CartPole episode's return is its length, counted once.

    The reference steps gymnax's CartPole by hand from the same reset states; a rollout that kept
    adding rewards after an auto-reset would report ~500, one that stopped early less than the length.
    The discounted return uses the task's own gamma when its spec sets one.
    """
    agent = make_agent(dataclasses.replace(BASE, tasks=(spec,)))
    params = init_state(agent, jax.random.PRNGKey(0)).params
    heads = params["heads"]
    params["heads"] = {"kernel": jnp.zeros_like(heads["kernel"]),
                       "bias": jnp.zeros_like(heads["bias"]).at[:, 0].set(1.0)}  # Q(., left) = 1 > Q(., right)
    key, episodes = jax.random.PRNGKey(7), 6
    returns = rollout_returns(agent, params, key, episodes, eps=0.0)
    got, discounted = np.asarray(returns.total), np.asarray(returns.discounted)  # (tasks, episodes)

    k_reset, _ = jax.random.split(key)
    _, env_states = reset_envs(agent.task_set, k_reset, episodes)
    env, env_params = gymnax.make("CartPole-v1")
    lengths = []
    for e in range(episodes):
        s = jax.tree.map(lambda x: x[e], env_states[0])
        length, done = 0, False
        while not done:
            _, s, r, term, trunc, _ = env.step(jax.random.PRNGKey(0), s, 0, env_params)
            length += float(r)
            done = bool(term) or bool(trunc)
        lengths.append(length)
    np.testing.assert_array_equal(got[0], np.asarray(lengths, np.float32))
    assert agent.gammas == (gamma,)  # reward 1 per step: sum_t gamma^t over the episode's length
    want = [(1 - gamma**n) / (1 - gamma) for n in lengths]
    np.testing.assert_allclose(discounted[0], want, rtol=1e-5)
    assert 5 <= min(lengths) and max(lengths) < 30  # pushing one way topples the pole in ~10 steps


def test_gamma_one_is_a_valid_discount():
    """(0, 1] is the rule: gamma = 1 (the undiscounted return) passes validation, as a flag and as a task option."""
    from mtdqn.config import validate
    from mtdqn.tasks import parse_task

    validate(dataclasses.replace(BASE, dqn=dataclasses.replace(BASE.dqn, gamma=1.0)))
    assert parse_task("CarOnHill-v0:gamma=1").discount(0.99) == 1.0
    assert parse_task("CarOnHill-v0").discount(0.99) == 0.99


@pytest.mark.slow
def test_dropout_acts_in_the_losss_online_pass_only(filled):
    plain, dropped = _agent(), _agent(dropout=0.5)
    state = filled  # plain's own; the same network shape: one state serves both agents
    key = jax.random.PRNGKey(3)
    k_sample = jax.random.split(key, 3)[0]  # how update() samples its batch
    batch = replay_sample(state.replay, k_sample, plain.cfg.dqn.batch_size)
    targets = step.td_targets(plain, state, batch)
    np.testing.assert_array_equal(step.td_targets(dropped, state, batch), targets)  # targets: the whole network
    greedy = [step.act(a, state.params, state.obs, key, jnp.float32(0.0)) for a in (plain, dropped)]
    np.testing.assert_array_equal(*greedy)  # acting: the whole network
    update = {a: jax.jit(lambda s, k, a=a: step.update(a, s, k)) for a in (plain, dropped)}
    (_, m_plain), (_, m_drop) = update[plain](state, key), update[dropped](state, key)
    whole_loss = jax.jit(lambda p: step.task_gradients(plain, p, batch, targets)[0])(state.params)
    np.testing.assert_allclose(m_plain["loss"], whole_loss, rtol=1e-6)  # no dropout: the key-less gradient
    assert not np.allclose(m_drop["loss"], whole_loss, rtol=1e-3)  # the loss's own forward pass is dropped
    np.testing.assert_array_equal(update[dropped](state, key)[1]["loss"], m_drop["loss"])  # same key, same masks


def test_the_updates_named_keys_keep_the_two_way_split():
    """update() splits its key three ways (batch, strategy, dropout masks); under JAX's partitionable Threefry
    the first two are the two-way split's, which is why runs without dropout kept their numbers."""
    key = jax.random.PRNGKey(7)
    three, two = jax.random.split(key, 3), jax.random.split(key, 2)
    np.testing.assert_array_equal(jax.random.key_data(three[:2]), jax.random.key_data(two))
    assert len({tuple(np.asarray(jax.random.key_data(k)).ravel()) for k in three}) == 3  # the dropout key is its own


@pytest.mark.slow
@pytest.mark.optimized  # the bits users get: XLA's rewrite of a division by a constant is what it matches
def test_the_learning_rate_schedule_is_the_optax_one_and_its_length_is_traced(monkeypatch):
    """--lr-schedule linear: a run trains to the same bits as with optax's linear_schedule at a constant length,
    and a config that differs only in --steps lowers to the same training program (one compile serves both)."""
    import optax

    import mtdqn.train.agent
    from mtdqn.train.loop import _one_seed_chunk, make_trainer, seed_keys

    def trained(agent) -> list[np.ndarray]:
        trainer = make_trainer(agent)
        state = trainer.init(seed_keys(agent.seeds))
        for c in range(agent.derived.num_chunks):
            state, _ = trainer.run_chunk(state, c * agent.derived.iters_per_chunk)
        return [np.asarray(x).view(np.uint32) for x in jax.tree.leaves(state.params)]

    cfg = dataclasses.replace(BASE, steps=1000, log_every=500)
    ours = trained(make_agent(cfg))
    constant = make_agent(cfg).derived.total_updates
    monkeypatch.setattr(mtdqn.train.agent, "linear_decay",
                        lambda lr, updates: optax.linear_schedule(lr, 0.0, transition_steps=constant))
    for a, b in zip(ours, trained(make_agent(cfg)), strict=True):
        np.testing.assert_array_equal(a, b)
    monkeypatch.undo()

    def chunk_program(steps: int) -> str:
        agent = make_agent(dataclasses.replace(cfg, steps=steps))
        state = jax.eval_shape(lambda: init_state(agent, jax.random.PRNGKey(0)))
        return jax.jit(_one_seed_chunk(agent)).lower(state, agent.hypers, jnp.int32(0)).as_text()

    assert (make_agent(cfg).derived.total_updates
            != make_agent(dataclasses.replace(cfg, steps=3000)).derived.total_updates)
    assert chunk_program(1000) == chunk_program(3000)


@pytest.mark.slow
def test_a_long_horizon_rollout_stops_once_every_episode_has_ended(monkeypatch):
    """Past evaluate.LONG_HORIZON steps (a task's max_steps set far above its default) the rollout runs blocks
    of steps until every episode has ended: MultiRoom with max_steps=10^9 evaluates its random policy (whose
    episodes reach the goal within a few thousand steps), where one scan of the horizon would not end.  Below
    STEP_KEYS_HELD steps each step gets the one scan's key: a random policy on a sticky-action game, two seeds
    vmapped, plays the same episodes either way, to the bit (a stored run evaluates to its numbers)."""
    import mtdqn.evaluate as evaluate

    net = NetworkConfig(conv_channels=(4, 4), conv_dense=16, adapter_channels=4)
    agent = make_agent(dataclasses.replace(BASE, tasks=("MiniGrid-MultiRoom-N2-S4-v0:max_steps=1000000000",),
                                           seeds=1, network=net))
    params = jax.tree.map(lambda x: x[None], init_state(agent, jax.random.PRNGKey(0)).params)
    total = evaluate.evaluate_params(agent, params, 7, 2, eps=1.0).total
    assert np.all(total > 0.99), total  # every episode ended at the goal (1 - 0.9 * its steps / 10^9)
    agent = make_agent(dataclasses.replace(BASE, seeds=2, network=net,
                                           tasks=("SpaceInvaders-MinAtar:sticky=0.1,actions=full,max_steps=1000",)))
    params = jax.vmap(lambda k: init_state(agent, k).params)(jax.random.split(jax.random.PRNGKey(0), 2))
    keys = jax.random.split(jax.random.PRNGKey(7), 2)

    def random_play(in_blocks: bool) -> tuple[np.ndarray, np.ndarray]:  # a new function: traced by today's rule
        def fn(p, k):
            return jax.vmap(lambda pp, kk: evaluate.rollout_returns(agent, pp, kk, 4, 1.0))(p, k)

        assert ("while[" in str(jax.make_jaxpr(fn)(params, keys))) == in_blocks
        got = jax.jit(fn)(params, keys)
        return np.asarray(got.total), np.asarray(got.discounted)

    monkeypatch.setattr(evaluate, "LONG_HORIZON", 100)
    monkeypatch.setattr(evaluate, "BLOCK_STEPS", 16)  # 63 blocks, the last one 8 steps past the horizon
    blocks = random_play(True)
    monkeypatch.setattr(evaluate, "LONG_HORIZON", 10**9)  # one scan of the whole horizon
    scan = random_play(False)
    assert np.any(scan[1] < 0.99**16 * scan[0]), scan  # rewards after the first block (the discount carried)
    for a, b in zip(blocks, scan):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_the_evaluation_in_two_programs_is_rollout_returns_of_each_seed():
    """evaluate_params compiles the reset and the rollout apart (mtdqn/evaluate.py says why): every seed's
    returns are still :func:`rollout_returns` of that seed's key, the same episodes, and epsilon reaches the
    rollout (a random policy scores otherwise on CartPole)."""
    from mtdqn.evaluate import _reset_all, eval_seed, evaluate_params, key_halves

    agent = make_agent(dataclasses.replace(BASE, seeds=2))
    init = jax.jit(jax.vmap(lambda k: init_state(agent, k).params))  # one program (vmapped op by op: ~60)
    params = init(jax.random.split(jax.random.PRNGKey(3), 2))
    keys = jax.random.split(jax.random.PRNGKey(eval_seed(0, 5)), 2)
    obs, _ = _reset_all(agent, jax.vmap(key_halves)(keys)[:, 0], 3)  # each seed's reset half, as rollout_returns's
    for s in range(2):
        np.testing.assert_array_equal(obs[s], reset_envs(agent.task_set, jax.random.split(keys[s])[0], 3)[0])
    # one program for every seed and both epsilons (an argument here; run as is, each epsilon's scan compiles)
    rollout = jax.jit(rollout_returns, static_argnums=(0, 3))
    totals = []
    for eps in (0.0, 1.0):
        got = evaluate_params(agent, params, eval_seed(0, 5), 3, eps=eps)
        for s in range(2):
            one = rollout(agent, jax.tree.map(lambda x: x[s], params), keys[s], 3, eps)
            np.testing.assert_array_equal(got.total[s], np.asarray(one.total))
            np.testing.assert_array_equal(got.discounted[s], np.asarray(one.discounted))
        totals.append(got.total)
    assert not np.array_equal(*totals)  # epsilon reached the rollout: the random policy's episodes differ


def test_gradient_clipping_keeps_independent_networks_apart():
    """--max-grad-norm clipped the whole tree's norm: with --sharing independent one task's large gradient
    shrank the other's update.  Networks that share nothing are clipped task by task; a shared one as before."""
    import optax

    from mtdqn.train.agent import _optimizer

    updates = {"kernel": jnp.array([[30.0, 40.0], [0.3, 0.4]]), "bias": jnp.array([[0.0], [0.0]])}  # norms 50, 0.5

    def clipped(sharing: str) -> np.ndarray:
        cfg = TrainConfig(tasks=("CartPole-v1", "Acrobot-v1"), network=NetworkConfig(sharing=sharing),
                          dqn=DQNConfig(max_grad_norm=1.0, optimizer="sgd", lr=1.0, lr_schedule="constant"))
        opt = _optimizer(cfg, 1.0, 1)
        new, _ = opt.update(updates, opt.init(updates), updates)
        return -np.asarray(new["kernel"])  # sgd: minus the rate times the clipped gradient

    np.testing.assert_allclose(clipped("independent"), [[0.6, 0.8], [0.3, 0.4]], rtol=1e-6)  # task 1 untouched
    np.testing.assert_allclose(clipped("partial:0"), [[0.6, 0.8], [0.3, 0.4]], rtol=1e-6)
    whole = np.asarray(optax.tree.norm(updates))
    np.testing.assert_allclose(clipped("shared"), np.asarray(updates["kernel"]) / whole, rtol=1e-6)
