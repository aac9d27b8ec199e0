"""Gradient strategies: invariants on hand-made gradient trees, bad input, and how update() uses them."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mtdqn.cli import main
from mtdqn.config import DQNConfig, NetworkConfig, TrainConfig
from mtdqn.errors import ConfigError
from mtdqn.losses import q_taken, td_error_loss
from mtdqn.networks import q_values, split_shared
from mtdqn.replay import replay_sample
from mtdqn.strategies import REGISTRY, make_strategy, parse_strategy_args
from mtdqn.strategies.base import task_gram
from mtdqn.strategies.cagrad import cagrad_coefficients
from mtdqn.train import step
from mtdqn.train.agent import make_agent
from mtdqn.train.loop import init_state

KEY = jax.random.PRNGKey(0)


def tree(rows: np.ndarray) -> dict:
    """A gradient tree with a leading task axis from a (tasks, 10) matrix: leaves (T, 2, 3) and (T, 4)."""
    rows = jnp.asarray(rows, jnp.float32)
    return {"layer": {"kernel": rows[:, :6].reshape(-1, 2, 3)}, "bias": rows[:, 6:]}


def flat(t: dict) -> np.ndarray:
    """Inverse of :func:`tree` for a tree without the task axis -> (10,)."""
    return np.concatenate([np.asarray(t["layer"]["kernel"]).reshape(-1), np.asarray(t["bias"])])


def combine(name: str, rows: np.ndarray, losses=None, args: str = "", weights=None, key=KEY, state=None):
    num_tasks = len(rows)
    strategy = make_strategy(name, args, tuple(weights or (1.0,) * num_tasks))
    state = strategy.init(num_tasks) if state is None else state
    losses = jnp.ones((num_tasks,)) if losses is None else jnp.asarray(losses, jnp.float32)
    grads, state, metrics = jax.jit(strategy.combine)(tree(rows), task_gram(tree(rows), num_tasks), losses, state, key)
    return flat(grads), state, np.asarray(metrics["weights"])


RNG = np.random.default_rng(0)
ROWS = RNG.normal(size=(3, 10))
CONFLICT = np.stack([np.r_[1.0, 0.2, np.zeros(8)], np.r_[-1.0, 1.0, np.zeros(8)] * 100.0])  # cos < 0, 100x norm


# ---------------------------------------------------------------- invariants on hand-made trees


def test_sum_applies_the_static_weights_and_weighted_is_the_same_strategy():
    np.testing.assert_allclose(combine("sum", ROWS)[0], ROWS.sum(0), rtol=1e-5, atol=1e-6)
    for name in ("sum", "weighted"):
        g, _, w = combine(name, ROWS, weights=(2.0, 0.5, 1.0))
        np.testing.assert_allclose(g, 2 * ROWS[0] + 0.5 * ROWS[1] + ROWS[2], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(w, [2.0, 0.5, 1.0])


def test_unit_norm_adds_unit_vectors_and_survives_a_zero_gradient():
    g, _, w = combine("unit-norm", CONFLICT)
    units = CONFLICT / np.linalg.norm(CONFLICT, axis=1, keepdims=True)
    np.testing.assert_allclose(g, units.sum(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(w, 1 / np.linalg.norm(CONFLICT, axis=1), rtol=1e-5, atol=1e-6)
    rows = np.stack([ROWS[0], np.zeros(10)])
    g, _, w = combine("unit-norm", rows, weights=(3.0, 1.0))
    np.testing.assert_allclose(g, 3 * ROWS[0] / np.linalg.norm(ROWS[0]), rtol=1e-5, atol=1e-6)
    assert np.isfinite(g).all() and w[1] == 0.0


def pcgrad_reference(rows: np.ndarray, orders: np.ndarray) -> np.ndarray:
    """Yu et al. 2020, Algorithm 1, written plainly on the gradient vectors."""
    out = []
    for i, g in enumerate(rows.astype(np.float64)):
        g = g.copy()
        for j in orders[i]:
            if j != i and g @ rows[j] < 0:
                g -= (g @ rows[j]) / (rows[j] @ rows[j]) * rows[j]
        out.append(g)
    return np.sum(out, axis=0)


@pytest.mark.parametrize("seed", range(4))
def test_pcgrad_matches_the_papers_procedure(seed):
    rows = np.random.default_rng(seed).normal(size=(4, 10))
    key = jax.random.PRNGKey(seed)
    orders = np.asarray(jax.vmap(lambda k: jax.random.permutation(k, 4))(jax.random.split(key, 4)))
    np.testing.assert_allclose(combine("pcgrad", rows, key=key)[0], pcgrad_reference(rows, orders), rtol=1e-4, atol=1e-5)


def test_pcgrad_leaves_no_conflict_with_the_combined_gradient():
    g, _, w = combine("pcgrad", CONFLICT)
    assert CONFLICT[0] @ CONFLICT[1] < 0
    assert (CONFLICT @ g >= -1e-4 * np.linalg.norm(CONFLICT, axis=1) * np.linalg.norm(g)).all()
    np.testing.assert_allclose(combine("pcgrad", CONFLICT[[0, 0]] * [[1], [2]])[0], 3 * CONFLICT[0], rtol=1e-6, atol=1e-6)


def test_cagrad_with_c0_is_the_mean_and_improves_the_worst_task():
    np.testing.assert_allclose(combine("cagrad", ROWS, args="c=0")[0], ROWS.mean(0), rtol=1e-5, atol=1e-6)
    g0 = CONFLICT.mean(0)
    d, _, w = combine("cagrad", CONFLICT, args="c=0.5")
    assert np.linalg.norm(d - g0) <= 0.5 * np.linalg.norm(g0) * (1 + 1e-4)  # inside the ball
    assert (CONFLICT @ d).min() > (CONFLICT @ g0).min()  # better worst-task improvement than the mean
    np.testing.assert_allclose(w @ CONFLICT, d, rtol=1e-4, atol=1e-4)


def test_cagrad_near_a_cancelling_pair_takes_the_exact_direction():
    """A pair at cosine -0.97 beside a third task: the solver before 2026-12-07 (50 steps of one size) closed most
    of the dual's gap but turned the step 17% off the exact one, and made the second task worse (g_2 . d = -0.060
    where the exact step gives every task +0.064 or more).  Against the official code's solve (SLSQP, float64)."""
    from scipy.optimize import minimize

    rows = np.zeros((3, 10))  # tree()'s 10 parameters
    rows[:, :3] = [[1.0, 0.0, 0.0], [-0.97, np.sqrt(1 - 0.97 ** 2), 0.0], [0.0, 0.5, 1.5]]
    gram, mean = rows @ rows.T, np.full(3, 1 / 3)
    radius = 0.5 * np.sqrt(mean @ gram @ mean)
    x = minimize(lambda x: x @ gram @ mean + radius * np.sqrt(x @ gram @ x), mean, bounds=[(0, 1)] * 3,
                 constraints={"type": "eq", "fun": lambda x: 1 - x.sum()}, options={"ftol": 1e-15}).x
    exact = rows.mean(0) + radius / np.linalg.norm(x @ rows) * (x @ rows)
    d = combine("cagrad", rows, args="c=0.5")[0]
    assert np.linalg.norm(d - exact) <= 0.01 * np.linalg.norm(exact)
    assert (rows @ d).min() > 0.06 and (rows @ exact).min() > 0.06


@pytest.mark.slow
def test_cagrad_dual_matches_a_brute_force_search():
    rows = np.stack([np.r_[1.0, 0.0, 0.3], np.r_[-0.6, 1.0, 0.0], np.r_[0.2, -0.5, 2.0]])
    gram = rows @ rows.T
    g0, c = rows.mean(0), 0.5
    grid = [(a, b, 1 - a - b) for a in np.linspace(0, 1, 201) for b in np.linspace(0, 1, 201) if a + b <= 1]
    obj = [np.array(x) @ rows @ g0 + c * np.linalg.norm(g0) * np.linalg.norm(np.array(x) @ rows) for x in grid]
    x = np.array(grid[int(np.argmin(obj))])
    expected = g0 + c * np.linalg.norm(g0) / np.linalg.norm(x @ rows) * (x @ rows)
    coef = np.asarray(cagrad_coefficients(jnp.asarray(gram, jnp.float32), c, 200, 0.3))
    np.testing.assert_allclose(coef @ rows, expected, atol=2e-2)


def run_steps(name: str, args: str, n: int, losses_fn) -> list:
    """Weights reported over ``n`` combines with random gradients and scripted losses."""
    strategy = make_strategy(name, args, (1.0, 1.0, 1.0))
    fn = jax.jit(strategy.combine)
    state, out = strategy.init(3), []
    for t in range(n):
        rows = np.random.default_rng(t).normal(size=(3, 10)) * [[1.0], [10.0], [0.1]]
        _, state, m = fn(tree(rows), task_gram(tree(rows), 3), jnp.asarray(losses_fn(t), jnp.float32), state, KEY)
        out.append(np.asarray(m["weights"]))
    return out


@pytest.mark.parametrize("name,args", [("gradnorm", "window=5,lr=0.05"), ("dwa", "window=4")])
def test_adaptive_weights_stay_positive_and_sum_to_num_tasks(name, args):
    weights = run_steps(name, args, 40, lambda t: [1.0, 1.0 + 0.1 * t, np.exp(-0.1 * t)])
    for w in weights:
        assert (w > 0).all() and np.isclose(w.sum(), 3.0, rtol=1e-5, atol=1e-6)
    assert not np.allclose(weights[-1], 1.0)  # they did adapt
    if name == "dwa":  # the task whose loss rises gets the most weight
        assert np.argmax(weights[-1]) == 1


def test_gradnorm_balances_gradient_norms():
    w = run_steps("gradnorm", "alpha=0,lr=0.05", 100, lambda t: [1.0, 1.0, 1.0])[-1]
    assert w[2] > w[0] > w[1]  # norms are 1, 10, 0.1 (x sqrt(10)): the small one is scaled up


def test_uncertainty_stays_finite_and_tracks_the_loss():
    w = run_steps("uncertainty", "lr=0.05", 200, lambda t: [0.0, 1e6, 1.0])[-1]
    assert np.isfinite(w).all() and (w > 0).all()
    assert w[0] > w[2] > w[1]  # exp(-s) ~ 1 / L, clipped


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_strategy_is_jittable_deterministic_and_reports_weights(name):
    g1, s1, w1 = combine(name, ROWS, losses=[0.5, 2.0, 1.0])
    g2, s2, w2 = combine(name, ROWS, losses=[0.5, 2.0, 1.0])
    assert w1.shape == (3,) and np.isfinite(w1).all() and np.isfinite(g1).all()
    np.testing.assert_array_equal(g1, g2)
    jax.tree.map(np.testing.assert_array_equal, s1, s2)
    np.testing.assert_allclose(g1, w1 @ ROWS, rtol=1e-4, atol=1e-5)  # every strategy is a reweighting here
    strategy = make_strategy(name, "", (1.0, 1.0, 1.0))  # no shared parameters at all: still fine
    no_shared = {"torso": {}}
    grads, _, metrics = jax.jit(strategy.combine)(no_shared, task_gram(no_shared, 3), jnp.ones((3,)),
                                                  strategy.init(3), KEY)
    assert grads == {"torso": {}} and np.isfinite(metrics["weights"]).all()


# ---------------------------------------------------------------- traced numbers (a sweep's): task weights, options

# Per strategy, each real-valued option and a value far enough from its default to change a dozen combines.
OTHER_VALUE = {"cagrad": {"c": 0.1, "step_size": 0.1}, "dwa": {"temperature": 0.7},
               "gradnorm": {"alpha": 0.5, "lr": 0.05}, "uncertainty": {"lr": 0.05, "clip": 0.01},
               "unit-norm": {"eps": 1.0}}
SMALL_WINDOWS = {"dwa": "window=2", "gradnorm": "window=2"}  # so the windows close within the dozen


def test_every_real_valued_option_is_listed_with_another_value():
    from mtdqn.strategies.base import traced_options

    assert {name: set(traced_options(name)) for name in sorted(REGISTRY) if traced_options(name)} == \
        {name: set(values) for name, values in OTHER_VALUE.items()}


def _combines(strategy, hp, n: int = 12) -> list:
    """Weights, gradients and state over ``n`` jitted combines (``hp`` an argument, so traced; None: the
    strategy's own numbers, compiled in as constants)."""
    fn = jax.jit(lambda g, gram, losses, state, key, hp: strategy.combine(g, gram, losses, state, key, hp))
    state, out = strategy.init(3), []
    for t in range(n):
        rows = np.random.default_rng(t).normal(size=(3, 10)) * [[1.0], [10.0], [0.1]]
        losses = jnp.asarray([1.0, 1.0 + 0.3 * t, np.exp(-0.3 * t)], jnp.float32)
        g, state, m = fn(tree(rows), task_gram(tree(rows), 3), losses, state, jax.random.PRNGKey(t), hp)
        out.append(jax.tree.map(np.asarray, (g, m["weights"], state)))
    return out


@pytest.mark.slow
@pytest.mark.optimized  # bit for bit in the programs users run: XLA's older emitters (make test-fast) round apart
@pytest.mark.parametrize("name, key", [(n, "task_weights") for n in sorted(REGISTRY)] +
                         [(n, k) for n, values in OTHER_VALUE.items() for k in values])
def test_a_traced_number_computes_what_the_same_number_compiled_in_does(name, key):
    """A sweep passes the task weights and the strategy's real-valued options as traced values
    (``StrategyHypers``): with another value they give, bit for bit, what a strategy built with that value
    computes with it compiled in (the numbers of runs before they were traced), and not what the default gives
    (the value reached the computation)."""
    from mtdqn.strategies.base import StrategyHypers, real_options

    base = SMALL_WINDOWS.get(name, "")
    weights = (2.0, 0.5, 1.0) if key == "task_weights" else (1.0, 1.0, 1.0)
    args = base if key == "task_weights" else ",".join(filter(None, [base, f"{key}={OTHER_VALUE[name][key]}"]))
    built = make_strategy(name, args, weights)
    default = make_strategy(name, base, (1.0, 1.0, 1.0))

    def hypers(weights: tuple[float, ...], args: str) -> StrategyHypers:
        numbers = {k: np.float32(v) for k, v in real_options(parse_strategy_args(name, args)).items()}
        return StrategyHypers(np.asarray(weights, np.float32), numbers)

    traced = _combines(default, hypers(weights, args))
    for mine, theirs in zip(traced, _combines(built, None)):
        jax.tree.map(np.testing.assert_array_equal, mine, theirs)
    # what the default gives, traced as well: the program above again (a compilation-cache hit, not a third
    # compile; the default compiled in gives the same bits, as the loop above checks for the other value)
    assert not all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(traced),
                                                       jax.tree.leaves(_combines(default, hypers((1.0,) * 3, base)))))


@pytest.mark.parametrize("name, keys, message", [
    ("cagrad", ["steps"], "cagrad's steps is not a real number, so it is part of the program"),
    ("dwa", ["window"], "its real-valued options: temperature"),
    ("cagrad", ["radius"], "strategy cagrad has no option radius; its real-valued options: c, step_size"),
    ("pcgrad", ["c"], "it has no real-valued options"),
])
def test_only_real_valued_options_can_be_swept(name, keys, message):
    from mtdqn.strategies.base import check_swept_options

    with pytest.raises(ConfigError, match=message) as info:
        check_swept_options(name, keys)
    assert "\n" not in str(info.value)
    check_swept_options("cagrad", ["c", "step_size"])


def test_grad_diagnostics_norms_and_cosines():
    norms, cosine = step.grad_diagnostics(task_gram(tree(CONFLICT), 2))
    np.testing.assert_allclose(norms, np.linalg.norm(CONFLICT, axis=1), rtol=1e-6, atol=1e-6)
    expected = CONFLICT @ CONFLICT.T / np.outer(norms, norms)
    np.testing.assert_allclose(cosine, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(task_gram(tree(CONFLICT), 2), CONFLICT @ CONFLICT.T, rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------- bad input: one line, ConfigError


@pytest.mark.parametrize(
    "name,args,weights,match",
    [
        ("nope", "", (1.0, 1.0), "unknown strategy 'nope'; valid: cagrad, dwa, gradnorm, pcgrad, sum, uncertainty"),
        ("cagrad", "radius=1", (1.0, 1.0), "unknown option 'radius=1'; valid options: c, steps, step_size"),
        ("cagrad", "c", (1.0, 1.0), r"option c needs a value \(c=VALUE\); valid options: c, steps, step_size"),
        ("cagrad", "c=big", (1.0, 1.0), "option c must be float, got 'big'"),
        ("dwa", "window=1.5", (1.0, 1.0), "option window must be int"),
        ("cagrad", "c=-1", (1.0, 1.0), "needs c >= 0"),
        ("gradnorm", "window=0", (1.0, 1.0), "window >= 1"),
        ("unit-norm", "eps=0", (1.0,), "eps must be > 0"),
        ("pcgrad", "", (1.0,), "strategy pcgrad needs at least 2 tasks, got 1"),
    ],
)
def test_bad_strategy_input_is_one_line(name, args, weights, match):
    with pytest.raises(ConfigError, match=match) as info:
        make_strategy(name, args, weights)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "argv,match",
    [
        (["--strategy", "nope"], "unknown strategy"),
        (["--strategy", "dwa", "--strategy-args", "temperature=hot"], "temperature must be float"),
        (["--task-weights", "1", "-2"], "--task-weights must be finite, >= 0"),
        (["--task-weights", "1", "2", "3"], "--task-weights has 3 values for 2 tasks"),
        (["--tasks", "CartPole-v1", "--strategy", "cagrad"], "needs at least 2 tasks, got 1"),
    ],
)
def test_cli_bad_strategy_input_exits_2_with_one_line(argv, match, capsys, tmp_path):
    with pytest.raises(SystemExit) as info:
        main(["train", "--out", str(tmp_path / "run"), *argv])
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1 and match in err


# ---------------------------------------------------------------- update(): per-task parts get w_i grad L_i


@pytest.fixture(scope="module")
def small_state():
    cfg = TrainConfig(
        tasks=("CartPole-v1:reward_scale=100", "Acrobot-v1"),
        network=NetworkConfig(hidden=(16, 16), adapter_width=8),
        dqn=DQNConfig(batch_size=16, buffer_size=64, optimizer="sgd", lr=1.0),
    )
    agent = make_agent(cfg)
    state = jax.jit(lambda k: init_state(agent, k))(KEY)  # one program (op by op: ~70)
    fill = jax.jit(lambda s, k: step.env_step(agent, s, k, jnp.float32(1.0))[0])
    for i in range(4):
        state = fill(state, jax.random.PRNGKey(i))
    return cfg, state


def reference_task_grads(agent, state, key, weights):
    """Gradient of sum_i w_i L_i on the per-task parameters, by one ordinary backward pass (jitted, the weights an
    argument and the strategy's state left out: every strategy's test runs the same program)."""

    @jax.jit
    def per_task_grads(state, key, weights):
        batch = replay_sample(state.replay, jax.random.split(key)[0], agent.cfg.dqn.batch_size)
        targets = step.td_targets(agent, state, batch)

        def total(params):
            q = q_values(agent.arch, params, batch.obs)  # (tasks, batch, actions)
            losses = jax.vmap(lambda qi, a, y: td_error_loss(q_taken(qi, a), y, agent.cfg.dqn.loss))(
                q, batch.action, targets)
            return jnp.sum(weights * losses)

        return split_shared(agent.arch, jax.grad(total)(state.params))[1]

    return per_task_grads(state.replace(strategy_state=()), key, jnp.asarray(weights, jnp.float32))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_update_gives_per_task_parameters_w_times_their_own_gradient(name, small_state):
    cfg, state = small_state
    weights = (1.0, 1.0) if name == "sum" else (2.0, 0.5)
    agent = make_agent(dataclasses.replace(cfg, strategy=name, task_weights=weights))
    state = state.replace(strategy_state=agent.strategy.init(2))
    key = jax.random.PRNGKey(7)
    new_state, metrics = jax.jit(lambda s: step.update(agent, s, key))(state)
    applied = split_shared(agent.arch, optax.tree_utils.tree_sub(state.params, new_state.params))[1]  # sgd, lr 1
    expected = reference_task_grads(agent, state, key, weights)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-6), applied, expected)
    assert metrics["weight"].shape == (2,) and np.isfinite(metrics["grad_norm"]).all()
