"""Your own JAX environment as a task (mtdqn.tasks.custom): a chain MDP (chain_env.py) with a known optimal Q,
registered by name from Python and named by import path on the command line (``test_custom_env:make_chain``:
this module, which imports it); and every one-line refusal.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from chain_env import GAMMA, LENGTH, Chain, ChainParams, make_chain, optimal_q  # make_chain: named here by import path
from gymnax.environments import environment, spaces
from gymnax.wrappers.purerl import GymnaxWrapper

import mtdqn
from mtdqn.cli import main
from mtdqn.errors import OneStepEpisodesWarning
from mtdqn.tasks import custom

# 3,000 env steps per task, an update every vector step after 200: ~700 updates, a hard target copy every 20.
CHAIN_OPTIONS = dict(steps=3000, seeds=1, num_envs=4, log_every=1500, hidden=(32,), adapter_width=16, gamma=GAMMA,
                     lr=1e-3, lr_schedule="constant", learning_starts=200, buffer_size=3000, batch_size=32,
                     target_update_every=20, tau=1.0, eps_fraction=0.5, eval_episodes=2)
CHAIN_ARGV = ["--steps", "3000", "--seeds", "1", "--num-envs", "4", "--log-every", "1500", "--hidden", "32",
              "--adapter-width", "16", "--gamma", "0.9", "--lr", "0.001", "--lr-schedule", "constant",
              "--learning-starts", "200", "--buffer-size", "3000", "--batch-size", "32", "--target-update-every",
              "20", "--tau", "1.0", "--eps-fraction", "0.5", "--eval-episodes", "2", "--progress", "False"]


@pytest.fixture
def registered():
    """Chain-v0 registered for one test, then forgotten."""
    mtdqn.register_task("Chain-v0", Chain)
    yield "Chain-v0"
    custom.REGISTERED.pop("Chain-v0", None)


def _check_learned(run: mtdqn.Run, task: str) -> None:
    """The run reaches the goal greedily, and its Q of the chain's states is the optimal one."""
    assert run.summary["final_eval"][task] == [1.0]
    evaluation = run.evaluate(episodes=2)
    assert evaluation.set_index("task").loc[task, "return_mean"] == 1.0
    q = run.agent().q_values(task, np.eye(LENGTH, dtype=np.float32)[: LENGTH - 1])
    np.testing.assert_allclose(q, optimal_q(), atol=0.05)


def test_a_registered_task_is_read_from_its_environment(registered):
    task = mtdqn.register_task("Chain-v0", make_chain)  # again: replaces it, a factory function this time
    assert (task.kind, task.obs_shape, task.num_actions, task.max_episode_steps) == ("vector", (4,), 2, 20)
    from mtdqn.tasks.registry import list_tasks, parse_task

    assert parse_task("Chain-v0:gamma=0.5").gamma == 0.5
    assert "Chain-v0" in [t.name for t in list_tasks()]
    assert parse_task("test_custom_env:make_chain:reward_scale=2").reward_scale == 2.0


class JaxScalarLimit(Chain):
    @property
    def default_params(self):
        return ChainParams(max_steps_in_episode=jnp.int32(7))  # a JAX scalar, as gymnax's own params hold some


def test_a_time_limit_given_as_a_jax_scalar_is_read(registered):
    assert mtdqn.register_task("Chain-v0", JaxScalarLimit).max_episode_steps == 7


class GymnaxDefaultLimit(Chain):
    @property
    def default_params(self):
        return environment.EnvParams()  # params with no time limit of their own: gymnax's default, 1


class WiderBounds(Chain):
    def observation_space(self, params):
        return spaces.Box(0.0, 5.0, (LENGTH,), jnp.float32)


def test_a_task_registered_again_takes_its_new_bounds(registered):
    """The bounds deployment checks observations against were cached per task: registered again with wider
    ones (same shapes), act() still refused 5.0 as outside [0, 1]."""
    from mtdqn.tasks.registry import observation_bounds, parse_task

    assert observation_bounds(parse_task(registered))[1].max() == 1.0
    mtdqn.register_task(registered, WiderBounds)
    assert observation_bounds(parse_task(registered))[1].max() == 5.0


def test_an_action_count_given_as_a_jax_scalar_is_read():
    """Discrete(jnp.int32(2)) was refused as "a Discrete action space; only discrete actions ... are supported"."""
    try:
        assert mtdqn.register_task("JaxCount-v0", JaxActionCount).num_actions == 2
    finally:
        custom.REGISTERED.pop("JaxCount-v0", None)


def test_gymnax_default_time_limit_of_one_step_is_warned(registered):
    """Params that inherit gymnax's max_steps_in_episode (1) trained and evaluated one-step episodes, silently."""
    with pytest.warns(OneStepEpisodesWarning, match="so every episode ends after one step") as caught:
        assert mtdqn.register_task("Chain-v0", GymnaxDefaultLimit).max_episode_steps == 1
    assert [w.filename for w in caught if w.category is OneStepEpisodesWarning] == [__file__]  # the user's line


class Penalized(GymnaxWrapper):
    """The chain with a reward of -1 per step on top, in its wrapper's ``step`` alone (``step_env`` passes
    through to the chain's): the greedy 3-step episode returns 1 - 3."""

    def step(self, key, state, action, params=None):
        obs, state, reward, terminated, truncated, info = self._env.step(key, state, action, params)
        return obs, state, reward - 1.0, terminated, truncated, info


class Outside(Chain):
    """The chain observed as 2 * one-hot, outside its declared Box(0, 1): training takes it as it is."""

    def get_obs(self, state, params=None, key=None):
        return 2.0 * jax.nn.one_hot(state.pos, LENGTH)


class Shorter(Chain):
    """A chain observed with one entry fewer: padded beside CartPole's 4 inputs, it fits the run's network."""

    def get_obs(self, state, params=None, key=None):
        return jax.nn.one_hot(state.pos, LENGTH - 1)

    def observation_space(self, params):
        return spaces.Box(0.0, 1.0, (LENGTH - 1,), jnp.float32)


class Longer(Chain):
    """A chain observed with one more entry (a different environment registered under the same name)."""

    def get_obs(self, state, params=None, key=None):
        return jax.nn.one_hot(state.pos, LENGTH + 1)

    def observation_space(self, params):
        return spaces.Box(0.0, 1.0, (LENGTH + 1,), jnp.float32)


@pytest.mark.slow
def test_a_registered_chain_learns_its_optimal_q_beside_cartpole(registered, tmp_path):
    run = mtdqn.train(tasks=[registered, "CartPole-v1"], out=tmp_path / "run", progress=False, **CHAIN_OPTIONS)
    _check_learned(run, registered)
    # play steps your own environment as training and evaluation do, with its step: a wrapper's is its own (play
    # stepped the inner env's step_env, and read 1 where evaluate read -2)
    mtdqn.register_task(registered, lambda: Penalized(Chain()))
    assert mtdqn.play(run.path, registered).returns == [-2.0]
    assert run.evaluate(episodes=2).set_index("task").loc[registered, "return_mean"] == -2.0
    # ... and acts on its observations as training did, those outside their declared bounds too (play refused them
    # and offered a --clip it has not)
    mtdqn.register_task(registered, Outside)
    assert mtdqn.play(run.path, registered).lengths[0] >= 1
    # an environment that observes otherwise under the run's task name: one line saying so, not a corrupt checkpoint
    mtdqn.register_task(registered, Longer)
    with pytest.raises(mtdqn.ConfigError, match=r"does not fit its task now: your own environment \(Chain-v0\) "
                                                r"observes or acts otherwise .* \(observations \(4,\) and 2 actions "
                                                r"then, \(5,\) and 2 now\)"):
        mtdqn.load_agent(run.path)
    # ... a shorter one too, whose padding beside CartPole's 4 inputs fit the network: evaluate scored it silently
    mtdqn.register_task(registered, Shorter)
    scored = (run.path / "eval.json").read_text()  # the evaluation of Penalized above
    with pytest.raises(mtdqn.ConfigError, match=r"observations \(4,\) and 2 actions then, \(3,\) and 2 now"):
        run.evaluate(episodes=1)
    assert (run.path / "eval.json").read_text() == scored  # not overwritten with another environment's scores


@pytest.mark.slow
def test_a_chain_named_by_import_path_learns_its_optimal_q(tmp_path):
    out = tmp_path / "run"
    main(["train", "--tasks", "test_custom_env:make_chain", *CHAIN_ARGV, "--out", str(out)])
    _check_learned(mtdqn.open_run(out), "test_custom_env:make_chain")


# ---------------------------------------------------------------- refusals: one line each, nothing written

class WideObs(Chain):
    def get_obs(self, state, params=None, key=None):
        return jnp.zeros(LENGTH + 1)


class Grid(Chain):
    def get_obs(self, state, params=None, key=None):
        return jnp.zeros((2, LENGTH))

    def observation_space(self, params):
        return spaces.Box(0.0, 1.0, (2, LENGTH), jnp.float32)


class Continuous(Chain):
    def action_space(self, params):
        return spaces.Box(-1.0, 1.0, (1,), jnp.float32)


class OldStep(Chain):
    """gymnax < 1.0's step: (obs, state, reward, done, info)."""

    def step(self, key, state, action, params=None):
        obs, state, reward, done, info = self.step_env(key, state, action, params)
        return obs, state, reward, done, info


class NoFinalObservation(Chain):
    def step(self, key, state, action, params=None):
        obs, state, reward, done, info = self.step_env(key, state, action, params)
        return obs, state, reward, done, jnp.bool_(False), info


class NoStep:
    default_params = ChainParams()

    def reset(self, key, params):
        return jnp.zeros(LENGTH), None


class NoLimit(Chain):
    @property
    def default_params(self):
        return None


class FloatImage(Chain):
    """Images in [0, 1], as floats: stored as uint8 they trained as all zeros, silently."""

    def get_obs(self, state, params=None, key=None):
        return jnp.full((5, 5, 1), 0.5)

    def observation_space(self, params):
        return spaces.Box(0.0, 1.0, (5, 5, 1), jnp.float32)


class FloatImageObservations(FloatImage):
    def observation_space(self, params):
        return spaces.Box(0, 255, (5, 5, 1), jnp.uint8)


class ByteImageUntypedSpace(FloatImage):
    """uint8 images under a Box without a dtype (gymnax's default: float32): nothing wrong."""

    def get_obs(self, state, params=None, key=None):
        return jnp.zeros((5, 5, 1), jnp.uint8)

    def observation_space(self, params):
        return spaces.Box(0, 255, (5, 5, 1))


class WideImage(FloatImage):
    def get_obs(self, state, params=None, key=None):
        return jnp.zeros((5, 5, 1), jnp.int32)

    def observation_space(self, params):
        return spaces.Box(0, 1000, (5, 5, 1), jnp.int32)


class StateDtypeChanges(Chain):
    """An auto-reset of its own that turns the int32 position into a float: registered, it failed training
    after config.json was written, with JAX's multi-line scan error."""

    def step(self, key, state, action, params=None):
        obs, state, reward, done, info = self.step_env(key, state, action, params)
        state = state.replace(pos=jnp.where(done, 0.0, state.pos))
        return obs, state, reward, done, jnp.bool_(False), {**info, "final_observation": obs}


class ActionsFromOne(Chain):
    def action_space(self, params):
        import gymnasium

        return gymnasium.spaces.Discrete(2, start=1)


class JaxActionCount(Chain):
    def action_space(self, params):
        return spaces.Discrete(jnp.int32(2))


def make_with_an_argument(size):
    return Chain()


class Raises(Chain):
    def __init__(self):
        raise ValueError("no licence file")


BAD_ENVS = [
    ("wide-observations", WideObs, "reset returns observations of shape (5,); its observation_space says (4,)"),
    ("2-d-observations", Grid, "has 2-D observations (2, 4); only 1-D vectors or (H, W, C) images"),
    ("continuous-actions", Continuous, "has a Box action space; only discrete actions"),
    ("five-value-step", OldStep, "step returns 5 values (gymnax < 1.0's obs, state, reward, done, info)"),
    ("no-final-observation", NoFinalObservation, "step's info has no 'final_observation'"),
    ("state-dtype-changes", StateDtypeChanges, "step returns a state whose .pos is float32[], where reset's is "
                                               "int32[]; the loop carries the state from step to step"),
    ("actions-from-one", ActionsFromOne, "its Discrete action space starts at 1; the agent sends actions 0..n-1"),
    ("no-step", NoStep, "the environment has no method step()"),
    ("no-time-limit", NoLimit, "default_params.max_steps_in_episode must be a whole number >= 1"),
    ("float-images", FloatImage, "reset returns float32 image observations; images are stored as uint8"),
    ("float-images-declared-bytes", FloatImageObservations, "reset returns float32 image observations"),
    ("images-above-255", WideImage, "image observations are stored as uint8, so they must be whole numbers in "
                                    "0..255; its observation_space declares [0, 1000]"),
    ("factory-needs-an-argument", make_with_an_argument, "making the environment fails (TypeError: "),
    ("constructor-raises", Raises, "making the environment fails (ValueError: no licence file); the factory must"),
    ("not-callable", 3, "task 'Bad-v0': 3 is neither an environment nor a callable making one"),
]


@pytest.mark.parametrize("env, expected", [c[1:] for c in BAD_ENVS], ids=[c[0] for c in BAD_ENVS])
def test_register_task_refuses_with_one_line(env, expected):
    with pytest.raises(mtdqn.ConfigError, match=None) as exc:
        mtdqn.register_task("Bad-v0", env)
    assert expected in str(exc.value) and "\n" not in str(exc.value)
    assert "Bad-v0" not in custom.REGISTERED


def test_byte_images_under_a_box_without_a_dtype_are_taken(registered):
    """gymnax's Box defaults to float32: the space's dtype says nothing of what the env returns."""
    assert mtdqn.register_task("Chain-v0", ByteImageUntypedSpace).kind == "image"


def test_wider_integer_images_are_stored_clipped_into_bytes_not_wrapped():
    """An env declaring 0..255 and returning 300 trained on 44 (a uint8 cast wraps) while act refused the 300 it
    saw; stored clipped, it trains on 255, the value act's --clip gives."""
    from types import SimpleNamespace

    from mtdqn.tasks import pad_obs

    images = SimpleNamespace(kind="image", obs_shape=(1, 2, 2))
    stored = pad_obs(jnp.array([[[300, -1]]], jnp.int32), images)
    assert stored.dtype == jnp.uint8 and stored.tolist() == [[[255, 0]]]
    assert pad_obs(jnp.array([[[7, 1]]], jnp.uint8), images).tolist() == [[[7, 1]]]


def test_register_task_refuses_a_built_in_name_and_a_wrong_kind():
    for name in ("CartPole-v1", "CARTPOLE-v1"):  # cased otherwise: the same folder on a case-insensitive disk
        with pytest.raises(mtdqn.ConfigError, match=f"'{name}' is a built-in task"):
            mtdqn.register_task(name, Chain)
    with pytest.raises(mtdqn.ConfigError, match="kind='image', but its observations"):
        mtdqn.register_task("Chain-v0", Chain, kind="image")
    assert "Chain-v0" not in custom.REGISTERED


CLI_CASES = [
    ("missing-module", "no_such_module_here:make", "cannot import 'no_such_module_here': no module named"),
    ("missing-attribute", "test_custom_env:make_nothing", "module 'test_custom_env' has no attribute 'make_nothing'"),
    ("no-environment-api", "test_custom_env:NoStep", "has no method step()"),
    ("five-value-step", "test_custom_env:OldStep", "step returns 5 values"),
    ("unregistered-name", "Chain-v9", "unknown task 'Chain-v9'"),
    ("factory-needs-an-argument", "test_custom_env:make_with_an_argument", "making the environment fails"),
    ("not-callable", "test_custom_env:NOT_AN_ENV", "task 'test_custom_env:NOT_AN_ENV': 3 is neither an environment"),
]
NOT_AN_ENV = 3


@pytest.mark.parametrize("spec, expected", [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES])
def test_the_command_line_refuses_a_bad_import_path_with_one_line(tmp_path, capsys, spec, expected):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exc:
        main(["train", "--tasks", spec, "--out", str(out), "--progress", "False"])
    assert exc.value.code == 2
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], lines
    assert not out.exists()


def test_an_import_path_is_found_in_the_current_directory(tmp_path, monkeypatch):
    """The `mtdqn` command does not search the current directory as `python -m` does, so the README's
    `--tasks examples.register_your_env:Chain` from a checkout failed: a module missing from the installed
    packages is looked for there, once, and the directory is not left on the path when it is not there either."""
    import sys

    (tmp_path / "cwd_only_envs").mkdir()
    (tmp_path / "cwd_only_envs" / "__init__.py").write_text("from chain_env import make_chain\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    assert custom._import("cwd_only_envs:make_chain") is make_chain
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(tmp_path)])
    with pytest.raises(mtdqn.ConfigError, match="no module named 'not_here_either'.*the current directory"):
        custom._import("not_here_either:make")
    assert str(tmp_path) not in sys.path


class NanAtTheEnd(Chain):
    """Observes NaN in the state before the goal: passes the up-front check (its reset observation is finite)."""

    def get_obs(self, state, params=None, key=None):
        return jnp.where(state.pos == LENGTH - 2, jnp.nan, jax.nn.one_hot(state.pos, LENGTH))


class NanRewardNeverEnds(Chain):
    """A NaN reward one step from the start, no goal and a cut-off beyond the budget: no episode ends, so no
    episode return (the metric) is NaN; the replay's rewards are."""

    @property
    def default_params(self) -> ChainParams:
        return ChainParams(max_steps_in_episode=100_000)

    def step_env(self, key, state, action, params):
        obs, state, _, _, info = super().step_env(key, state, action, params)
        reward = jnp.where(state.pos == 1, jnp.nan, 0.0)
        return obs, state, reward, jnp.bool_(False), info


@pytest.mark.slow
@pytest.mark.parametrize("env, cause", [("NanAtTheEnd", "observations"), ("NanRewardNeverEnds", "rewards")])
def test_an_environments_non_finite_values_are_named_as_its_own(tmp_path, capsys, env, cause):
    """A learner fed NaN diverges; the advice was to lower --lr, which cannot help: it names the environment.
    Rewards are read from the replay too: with no episode ended in the chunk, no episode return is NaN."""
    with pytest.raises(SystemExit) as exc:
        main(["train", "--tasks", f"test_custom_env:{env}", *CHAIN_ARGV, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 3 and "\n" not in err, err
    assert f"task test_custom_env:{env}'s environment gives non-finite {cause} (no learner option fixes" in err, err


def test_your_own_environment_has_no_gif_and_play_says_so(registered):
    """The message asked the user to edit the library (add to mtdqn.render.RENDERERS)."""
    from mtdqn.render import open_renderer

    with pytest.raises(mtdqn.ConfigError, match=r"Chain-v0 has no drawing for --gif .*: play it without --gif"):
        open_renderer(registered)


def test_a_run_of_a_task_registered_elsewhere_names_the_run(tmp_path, capsys):
    """A run of a task registered with mtdqn.register_task in the process that made it, reopened where it is not
    registered: the line names the run, not only the task (load_agent, and the CLI's evaluate and resume)."""
    import json

    from helpers import fake_run

    fake_run(tmp_path / "run")
    record = json.loads((tmp_path / "run" / "config.json").read_text())
    record["config"]["tasks"] = ["Unregistered-v0"]
    (tmp_path / "run" / "config.json").write_text(json.dumps(record))
    said = f"{tmp_path / 'run'}: unknown task 'Unregistered-v0'"
    with pytest.raises(mtdqn.ConfigError, match=said):
        mtdqn.load_agent(tmp_path / "run")
    for argv in (["evaluate", str(tmp_path / "run")], ["train", "--resume", str(tmp_path / "run")]):
        with pytest.raises(SystemExit):
            main(argv)
        assert said in capsys.readouterr().err


def test_a_study_on_ray_refuses_a_task_registered_in_this_process_before_writing(registered, tmp_path):
    """Ray's workers do not share this process's registrations: a walk-through's study sent the cell to Ray,
    which failed it there ("unknown task ... register it in this process") and wrote a FAILED report; now one
    line before anything is written (and before Ray starts), naming the import path as the way."""
    spec = {"name": "reg", "tasks": [registered, "CartPole-v1"], "steps": 3000, "seeds": 2,
            "thresholds": {registered: 0.5}, "variants": {"shared": {"sharing": "shared"}}}
    with pytest.raises(mtdqn.ConfigError, match=r"^task 'Chain-v0' was registered with mtdqn.register_task in this "
                                                r"process, which Ray's workers do not share: name it by its import "
                                                r"path \(module:factory\)"):
        mtdqn.study(spec, tmp_path / "s", ray_address="local", progress=False)
    assert not (tmp_path / "s").exists()


class Endless(Chain):
    """Ignores its own time limit (its step_env never ends an episode, nothing truncates it)."""

    def step_env(self, key, state, action, params):
        state = type(state)(time=state.time + 1, pos=state.pos)
        return self.get_obs(state), state, jnp.float32(1.0), jnp.bool_(False), {}

    def is_truncated(self, state, params):
        return jnp.bool_(False)


def test_an_evaluation_episode_that_never_ends_is_nan_and_warned(registered):
    """The compiled evaluation rolls out to the time limit; an env that ignores it left its episodes running, and
    their partial returns (20 steps' worth) were reported as episodes' returns."""
    from mtdqn.config import TrainConfig
    from mtdqn.errors import UnfinishedEpisodesWarning
    from mtdqn.evaluate import evaluate_params
    from mtdqn.networks import init_params
    from mtdqn.train.agent import make_agent

    mtdqn.register_task(registered, Endless)
    agent = make_agent(TrainConfig(tasks=(registered, "CartPole-v1"), seeds=1, num_envs=1))
    params = jax.vmap(lambda k: init_params(agent.arch, k))(jax.random.split(jax.random.PRNGKey(0), 1))
    with pytest.warns(UnfinishedEpisodesWarning, match=r"did not end within 500 steps .*: Chain-v0 2 of 2; their "):
        returns = evaluate_params(agent, params, 0, 2)
    assert np.isnan(returns.total[:, 0]).all() and np.isnan(returns.discounted[:, 0]).all()
    assert np.isfinite(returns.total[:, 1]).all() and (returns.total[:, 1] >= 1).all()  # CartPole's: untouched
