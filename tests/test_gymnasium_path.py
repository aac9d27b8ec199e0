"""The Gymnasium host path (gym: tasks): specs, truncation vs termination, the run directory,
checkpoint and evaluation, determinism, and a cheap but real learning check."""

from __future__ import annotations

import json

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from helpers import IMAGE

from mtdqn.checkpoint import load_checkpoint
from mtdqn.config import DQNConfig, NetworkConfig, TrainConfig
from mtdqn.errors import ConfigError
from mtdqn.evaluate import evaluate_params
from mtdqn.tasks import make_task_set, obs_dtype, parse_task
from mtdqn.tasks.gymnasium_env import HostEnvs
from mtdqn.train.agent import make_agent
from mtdqn.train.host_loop import init_host_state, make_host_trainer
from mtdqn.train.loop import init_state, seed_keys
from mtdqn.rundir import METRIC_COLUMNS
from mtdqn.train.run import train
from mtdqn.train.step import epsilon

# Two chunks: the host loop steps its envs in Python (most of a run's time once compiled), and two_runs trains
# this twice.
TINY = TrainConfig(
    tasks=("gym:CartPole-v1", "gym:Acrobot-v1"), steps=1000, seeds=2, log_every=500, num_envs=4,
    dqn=DQNConfig(learning_starts=200, buffer_size=500, batch_size=32, target_update_every=50, tau=1.0),
)
# The keys of a compiled run's summary.json (tests/test_training.py writes one).
SUMMARY_KEYS = {
    "status", "error", "tasks", "seeds", "sharing", "strategy", "params_total", "params_shared", "env_steps",
    "wall_time_s", "compile_s", "eval_s", "env_steps_per_s", "final_eval", "final_eval_std", "random_return",
    "eval_episodes", "config_hash",
}


class _GridEnv(gym.Env):
    """A 2-D observation the network cannot take."""

    observation_space = gym.spaces.Box(0.0, 1.0, (4, 4))
    action_space = gym.spaces.Discrete(2)


gym.register("MtdqnTest/Grid-v0", entry_point=_GridEnv)


class _StackedFrames(gym.Env):
    """Atari's preprocessing with a frame stack: 4 84x84 frames, channels first; read as a 4x84 image of 84
    channels it failed on the convolutions' 5x5 minimum, saying nothing of the layout."""

    observation_space = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    action_space = gym.spaces.Discrete(2)


gym.register("MtdqnTest/Stacked-v0", entry_point=_StackedFrames)


def test_gym_spec_reads_the_env():
    task = parse_task("gym:CartPole-v1:reward_scale=0.1")
    assert (task.backend, task.name, task.kind, task.obs_shape, task.num_actions, task.max_episode_steps) == (
        "gymnasium", "CartPole-v1", "vector", (4,), 2, 500)
    assert task.reward_scale == 0.1
    ts = make_task_set(["gym:CartPole-v1", "gym:Acrobot-v1"])
    assert ts.backend == "gymnasium" and ts.obs_shape == (6,) and ts.num_actions == 3


@pytest.mark.parametrize(
    "spec, fragment",
    [("gym:Cartpole-v1", "did you mean 'gym:CartPole-v1'"), ("gym:NoSuchThing-v0", "unknown Gymnasium environment"),
     ("gym:Pendulum-v1", "only Discrete"), ("gym:FrozenLake-v1", "only Box"), ("gym:MtdqnTest/Grid-v0", "2-D"),
     ("gym:MtdqnTest/Stacked-v0", r"\(4, 84, 84\), channels first .* a Box of shape \(84, 84, 4\)"),
     ("gym:CartPole-v1:gravity=3", "bad task option")],
)
def test_bad_gym_specs_are_one_line_errors(spec, fragment):
    with pytest.raises(ConfigError, match=fragment) as info:
        parse_task(spec)
    assert "\n" not in str(info.value)


@pytest.mark.filterwarnings("ignore:.*Overriding environment")  # registering again is the point here
def test_an_id_registered_again_is_read_afresh():
    """A notebook registering an id again: the facts read from its first env were cached by id, so the task
    kept a (3,) observation after a (5,) one was registered (training then failed in np.pad) and its old bounds."""
    from mtdqn.tasks.registry import observation_bounds

    def vector(width: int, high: float):
        return type("Vector", (gym.Env,), {"observation_space": gym.spaces.Box(0.0, high, (width,)),
                                           "action_space": gym.spaces.Discrete(2)})

    try:
        gym.register("MtdqnTest/Vector-v0", entry_point=vector(3, 1.0))
        assert parse_task("gym:MtdqnTest/Vector-v0").obs_shape == (3,)
        gym.register("MtdqnTest/Vector-v0", entry_point=vector(5, 1.0))
        assert parse_task("gym:MtdqnTest/Vector-v0").obs_shape == (5,)
        gym.register("MtdqnTest/Vector-v0", entry_point=vector(5, 9.0))
        assert observation_bounds(parse_task("gym:MtdqnTest/Vector-v0"))[1].tolist() == [9.0] * 5
    finally:
        gym.registry.pop("MtdqnTest/Vector-v0", None)


def test_mixing_backends_is_rejected():
    with pytest.raises(ConfigError, match="cannot mix gym: tasks with gymnax tasks") as info:
        make_task_set(["CartPole-v1", "gym:Acrobot-v1"])
    assert "\n" not in str(info.value)


def test_resume_and_periodic_checkpoints_are_refused(tmp_path):
    for kwargs in ({"checkpoint_every": 500}, {"resume": True}):
        with pytest.raises(ConfigError, match="not supported with gym: tasks"):
            train(TINY, tmp_path, progress=False, **kwargs)
    assert not (tmp_path / "config.json").exists()


def test_truncation_is_not_termination():
    ts = make_task_set(["gym:MountainCar-v0"])  # never reaches the flag without pushing: truncated at 200
    envs = HostEnvs(ts, 2, [[3]])
    try:
        obs = envs.reset()
        for _ in range(200):
            prev, out = obs, envs.step(np.ones((1, 1, 2), np.int64))  # action 1: no push
            obs = out.obs
        np.testing.assert_array_equal(out.done[0, 0], [True, True])
        np.testing.assert_array_equal(out.terminated[0, 0], [False, False])
        # The transition ends in the pre-reset observation (a small step from the last one), not the new episode's.
        np.testing.assert_allclose(out.next_obs[0, 0], prev[0, 0], atol=0.01)
        assert not np.allclose(out.next_obs[0, 0], out.obs[0, 0])
    finally:
        envs.close()


def test_pole_falling_is_termination():
    envs = HostEnvs(make_task_set(["gym:CartPole-v1"]), 1, [[0]])
    try:
        envs.reset()
        for _ in range(100):
            out = envs.step(np.zeros((1, 1, 1), np.int64))  # always push left: falls within ~10 steps
            if out.done.any():
                break
        assert bool(out.terminated[0, 0, 0]) and bool(out.done[0, 0, 0])
    finally:
        envs.close()


@pytest.mark.slow
def test_host_init_matches_the_compiled_init():
    """Same key split and fields as loop.init_state (so the two paths cannot drift apart silently)."""
    key = jax.random.PRNGKey(7)
    host = init_host_state(make_agent(TrainConfig(tasks=("gym:CartPole-v1",))), key)
    compiled = init_state(make_agent(TrainConfig(tasks=("CartPole-v1",))), key).replace(env_states=())
    assert jax.tree.structure(host) == jax.tree.structure(compiled)
    for x, y in zip(jax.tree.leaves(host.params), jax.tree.leaves(compiled.params)):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(host.key, compiled.key)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    a = train(TINY, tmp_path_factory.mktemp("a"), progress=False, eval_episodes=2)
    b = train(TINY, tmp_path_factory.mktemp("b"), progress=False, eval_episodes=2)
    return a, b


@pytest.mark.slow
def test_host_run_writes_the_same_run_directory(two_runs):
    a, _ = two_runs
    out = a.out_dir
    for name in ("config.json", "metrics.parquet", "metrics.csv", "summary.json", "grad_tasks.parquet",
                 "grad_pairs.parquet", "cka.parquet", "checkpoints/latest.json"):
        assert (out / name).exists(), name
    assert any((out / "tb").iterdir())
    metrics = pd.read_parquet(out / "metrics.parquet")
    assert list(metrics.columns) == METRIC_COLUMNS
    assert list(pd.read_csv(out / "metrics.csv").columns) == METRIC_COLUMNS
    assert len(metrics) == 2 * 2 * 2  # chunks x tasks x seeds
    assert set(metrics["task"]) == {"gym:CartPole-v1", "gym:Acrobot-v1"}
    summary = json.loads((out / "summary.json").read_text())
    assert SUMMARY_KEYS <= set(summary)
    assert len(summary["final_eval"]["gym:CartPole-v1"]) == 2
    assert int(a.state.updates[0]) > 0 and int(a.state.iteration[0]) == 1000 // 4
    # The compiled loop's epsilon schedule, read at the last iteration of each chunk.
    agent = make_agent(TINY)
    n = agent.derived.iters_per_chunk
    expected = [float(epsilon(agent, jnp.int32((c + 1) * n - 1))) for c in range(agent.derived.num_chunks)]
    np.testing.assert_allclose(metrics.groupby("step")["epsilon"].first().to_numpy(), expected, rtol=1e-6)


@pytest.mark.slow
def test_host_checkpoint_restores_and_evaluates(two_runs):
    a, _ = two_runs
    trainer, _ = make_host_trainer(make_agent(TINY))
    template = jax.eval_shape(trainer.init, seed_keys(trainer.agent.seeds))
    state, _ = load_checkpoint(a.out_dir, trainer.agent.cfg, template)
    for x, y in zip(jax.tree.leaves(state.params), jax.tree.leaves(a.state.params)):
        np.testing.assert_array_equal(x, y)
    returns = evaluate_params(trainer.agent, state.params, 123, 3, eps=0.0)
    assert returns.total.shape == returns.discounted.shape == (2, 2, 3) and np.isfinite(returns.total).all()
    cartpole = returns.total[:, 0]  # reward 1 per step: the discounted return follows from the length
    np.testing.assert_allclose(returns.discounted[:, 0], (1 - 0.99**cartpole) / (1 - 0.99), rtol=1e-4)


@pytest.mark.slow
def test_same_seed_gives_identical_parameters(two_runs):
    a, b = two_runs
    for x, y in zip(jax.tree.leaves(a.state.params), jax.tree.leaves(b.state.params)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    pd.testing.assert_frame_equal(a.metrics, b.metrics)
    kernel = np.asarray(a.state.params["heads"]["kernel"])  # (seeds, tasks, features, actions)
    assert not np.allclose(kernel[0], kernel[1])


@pytest.mark.slow
def test_cartpole_learns_on_the_host(tmp_path):
    """12k env steps (~10-15 s on 2 CPU cores). Random play scores ~22; seeds 0-8 measured 230-500 greedy
    and 197-500 mean training return in the last window."""
    cfg = TrainConfig(
        tasks=("gym:CartPole-v1",), steps=12_000, seeds=1, seed=0, log_every=2_400, num_envs=4,
        network=NetworkConfig(hidden=(64, 64)),
        dqn=DQNConfig(lr=1e-3, tau=0.005, target_update_every=1, loss="mse", train_every=4, eps_fraction=0.25,
                      eps_end=0.02, buffer_size=12_000, learning_starts=1_000, batch_size=64),
    )
    result = train(cfg, tmp_path, progress=False, eval_episodes=10)
    last = result.metrics["episode_return"].iloc[-1]  # mean training return of the last 2,400 steps
    greedy = result.summary["final_eval"]["gym:CartPole-v1"][0]
    assert result.summary["random_return"]["gym:CartPole-v1"] < 40
    # 200, not 100: an untrained network's greedy policy is a fixed controller, and some balance for 100 steps
    # (seeds 0-8's lowest, 230, against the 200; seed 0 scored 500 on the Intel Xeon, 2026-12-07)
    assert greedy >= 200 and last > 100, (last, greedy)


MINIGRID = ("gym:MiniGrid-LavaGapS7-v0:obs=image", "gym:MiniGrid-DistShift1-v0:obs=image")


def test_gym_minigrid_sees_what_our_jax_minigrid_sees():
    """obs=image: the package's ImgObsWrapper view, with the shape, dtype, actions and time limit of our JAX
    task (so one agent runs on either and the two can be compared)."""
    from minigrid.wrappers import ImgObsWrapper

    host, ours = make_task_set(MINIGRID), make_task_set([spec.split(":", 1)[1].split(":")[0] for spec in MINIGRID])
    for h, o in zip(host.tasks, ours.tasks):
        assert (h.kind, h.obs_shape, h.num_actions, h.max_episode_steps) == (
            o.kind, o.obs_shape, o.num_actions, o.max_episode_steps) == ("image", (7, 7, 3), 7, h.max_episode_steps)
    assert host.obs_shape == ours.obs_shape and obs_dtype(host) == obs_dtype(ours) == jnp.uint8
    envs = HostEnvs(host, 2, [[5, 9]])
    try:
        obs = envs.reset()
    finally:
        envs.close()
    assert obs.shape == (1, 2, 2, 7, 7, 3) and obs.dtype == np.uint8
    for i, (spec, seed) in enumerate(zip(MINIGRID, (5, 9))):
        package = ImgObsWrapper(gym.make(spec.split(":")[1]))
        np.testing.assert_array_equal(obs[0, i, 0], package.reset(seed=seed)[0])
        package.close()


@pytest.mark.slow
def test_gym_minigrid_trains_a_few_chunks_with_n_step_targets(tmp_path):
    cfg = TrainConfig(tasks=MINIGRID, steps=600, seeds=1, log_every=200, num_envs=2,
                      network=IMAGE.network,  # a small conv trunk: its programs compile in seconds
                      dqn=DQNConfig(learning_starts=100, buffer_size=600, batch_size=16, n_step=3, train_every=2))
    result = train(cfg, tmp_path, progress=False, eval_episodes=2)
    assert len(result.metrics) == 3 * 2 and int(result.state.updates[0]) > 0
    assert np.isfinite(result.metrics["loss"]).all()
    for spec in MINIGRID:
        assert 0.0 <= result.summary["final_eval"][spec][0] <= 1.0


def test_an_evaluation_episode_no_limit_ends_is_nan_and_warned(monkeypatch):
    """A Gymnasium env without a time limit whose episode never ends was cut at HOST_MAX_STEPS and its partial
    return reported as an episode's (100,000 in final_eval); now NaN, with a warning naming the task."""
    import gymnasium as gym

    import mtdqn.evaluate as evaluate
    from mtdqn.errors import UnfinishedEpisodesWarning
    from mtdqn.train.agent import make_agent
    from mtdqn.train.host_loop import init_host_state
    from mtdqn.train.loop import seed_keys

    class Endless(gym.Env):
        observation_space = gym.spaces.Box(-1.0, 1.0, (2,))
        action_space = gym.spaces.Discrete(2)

        def reset(self, seed=None, options=None):
            super().reset(seed=seed)
            return np.zeros(2, np.float32), {}

        def step(self, action):
            return np.zeros(2, np.float32), 1.0, False, False, {}

    gym.register("MtdqnTest/Endless-v0", entry_point=Endless)
    try:
        agent = make_agent(TrainConfig(tasks=("gym:MtdqnTest/Endless-v0",), seeds=1, num_envs=1))
        params = jax.vmap(lambda k: init_host_state(agent, k).params)(seed_keys([0]))
        monkeypatch.setattr(evaluate, "HOST_MAX_STEPS", 50)
        with pytest.warns(UnfinishedEpisodesWarning, match=r"did not end within 50 steps .*: "
                          r"gym:MtdqnTest/Endless-v0 2 of 2; their returns are NaN"):
            returns = evaluate.evaluate_params(agent, params, 0, 2)
    finally:
        gym.registry.pop("MtdqnTest/Endless-v0", None)
    assert np.isnan(returns.total).all() and np.isnan(returns.discounted).all()
