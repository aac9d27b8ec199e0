"""Plain helpers shared by test modules (no fixtures: those are in conftest.py).

``fake_run`` writes a run directory holding one checkpoint of random state: no
training, no compile.  ``TINY`` is the one small training config that the
session fixtures of conftest.py train (and that tests needing a trained run
share, so the suite compiles its training program once); ``TINY_ARGV`` is the
same config as ``mtdqn train`` options.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from mtdqn.checkpoint import save_checkpoint
from mtdqn.config import DQNConfig, NetworkConfig, TrainConfig, config_hash, config_to_dict
from mtdqn.io import write_json
from mtdqn.train.agent import make_agent
from mtdqn.train.loop import init_state, make_trainer, seed_keys
from mtdqn.train.step import env_step

VECTOR = TrainConfig(
    tasks=("CartPole-v1", "Acrobot-v1"), steps=1200, log_every=200, num_envs=4, seeds=2,
    network=NetworkConfig(hidden=(32,), adapter_width=16),
    dqn=DQNConfig(buffer_size=64, learning_starts=100, batch_size=16),
)
IMAGE = TrainConfig(
    tasks=("Breakout-MinAtar", "Asterix-MinAtar"), steps=1200, log_every=200, num_envs=2, seeds=2,
    network=NetworkConfig(conv_channels=(4, 4), conv_dense=16, adapter_channels=4),
    dqn=DQNConfig(buffer_size=32, learning_starts=100, batch_size=8),
)

# 4 windows of 500 env steps per task; learning starts at 600, so the first window has no update and the
# second straddles the start; the epsilon schedule ends inside the last window (0.9 of the run).
TINY = TrainConfig(
    tasks=("CartPole-v1", "Acrobot-v1"), steps=2000, seeds=2, log_every=500, num_envs=4,
    network=NetworkConfig(hidden=(32, 32)),
    dqn=DQNConfig(learning_starts=600, buffer_size=1000, batch_size=32, target_update_every=50, tau=1.0,
                  eps_fraction=0.9),
)
TINY_ARGV = [
    "--tasks", *TINY.tasks, "--steps", "2000", "--seeds", "2", "--log-every", "500", "--num-envs", "4",
    "--hidden", "32", "32", "--learning-starts", "600", "--buffer-size", "1000", "--batch-size", "32",
    "--target-update-every", "50", "--tau", "1.0", "--eps-fraction", "0.9",
]


# A tiny study: 2 tasks, independent (the automatic reference) vs shared, 2 seeds, 2000 steps per task.  Its
# shared cell is helpers.TINY: the training program the rest of the suite compiles.  conftest.local_study trains
# it once per session (test_study and test_ray read it).
TINY_STUDY = """
name = "tiny"
tasks = ["CartPole-v1", "Acrobot-v1"]
steps = 2000
seeds = 2
eval_episodes = 2
eval_every = 1000

[options]  # the shared cell is helpers.TINY: the training program the rest of the suite compiles
learning_starts = 600
buffer_size = 1000
batch_size = 32
log_every = 500
hidden = [32, 32]
target_update_every = 50
tau = 1.0
eps_fraction = 0.9

[variants.shared]
sharing = "shared"
"""


def spec_file(tmp: Path, text: str = TINY_STUDY, name: str = "tiny.toml") -> Path:
    """``text`` written to ``tmp/name``: a study spec file."""
    path = tmp / name
    path.write_text(text)
    return path


# A tiny search (`mtdqn tune`): 2 trials of 1,000 steps over the learning rate (test_tune, test_ray).
TUNE_SMALL = {"name": "small", "tasks": ["CartPole-v1", "Acrobot-v1"], "steps": 1000, "seeds": 1, "trials": 2,
              "pruner": "median", "eval_every": 500, "eval_episodes": 2,
              "options": {"log_every": 500, "hidden": [16], "adapter_width": 8, "learning_starts": 200,
                          "buffer_size": 1000, "batch_size": 16},
              "space": {"lr": {"log": [1e-4, 1e-2]}}}


def random_bits(abstract, seed: int = 0):
    """Arrays shaped like ``abstract`` whose bytes are random: every bit pattern of every dtype."""
    rng = np.random.default_rng(seed)

    def fill(s):
        if s.dtype == np.bool_:
            return jnp.asarray(rng.integers(0, 2, s.shape).astype(bool))
        raw = rng.integers(0, 256, (*s.shape, s.dtype.itemsize), dtype=np.uint8)
        return jnp.asarray(raw.view(s.dtype).reshape(s.shape))

    return jax.tree.map(fill, abstract)


def fake_run(run_dir: Path, cfg: TrainConfig = VECTOR, chunk: int = 1, seed: int = 0):
    """A run directory with config.json and one checkpoint of random state; no training, no compile."""
    trainer = make_trainer(make_agent(cfg))
    abstract = jax.eval_shape(trainer.init, seed_keys(trainer.agent.seeds))
    state = random_bits(abstract, seed)
    write_json(Path(run_dir) / "config.json", {"config": config_to_dict(cfg), "config_hash": config_hash(cfg)})
    save_checkpoint(run_dir, trainer.agent.cfg, state, chunk, {"options": {"checkpoint_every": 0, "eval_episodes": 2}})
    return trainer, abstract, state


def checkpoint_data_file(run: Path) -> Path:
    """The largest data file of a run's live checkpoint."""
    meta = json.loads((run / "checkpoints" / "latest.json").read_text())
    return max((run / "checkpoints" / meta["path"]).rglob("d/*"), key=lambda p: p.stat().st_size)


def garble(run: Path) -> None:
    """Flip one byte in the middle of the live checkpoint's largest data file."""
    f = checkpoint_data_file(run)
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF
    f.write_bytes(bytes(data))


def filled_state(agent, steps: int = 40):
    """A fresh training state of ``agent`` whose replay holds ``steps`` vector steps of random-policy transitions.

    Acting and storing never read the optimizer's, the strategy's or the value normalization's state, nor the
    target network: the fill is compiled without them, so agents that differ only there (another strategy,
    optimizer or freeze) share one compiled fill."""
    state = init_state(agent, jax.random.PRNGKey(0))
    unread = {"opt_state": state.opt_state, "strategy_state": state.strategy_state,
              "value_norm": state.value_norm, "target_params": state.target_params}

    @jax.jit
    def fill(s):
        def body(s, key):
            s, _ = env_step(agent, s, key, jnp.float32(1.0))
            return s, None
        return jax.lax.scan(body, s, jax.random.split(jax.random.PRNGKey(1), steps))[0]

    return fill(state.replace(**{name: () for name in unread})).replace(**unread)


class QueuedDraws:
    """Stands in for MinAtar's ``np.random.RandomState``: answers its calls with values queued beforehand, so the
    ``minatar`` package's games take the random draws our JAX games took (tests/test_minatar.py, test_seaquest.py)."""

    def __init__(self) -> None:
        self.queue: list[float] = []

    def rand(self) -> float:
        return self.queue.pop(0)

    def randint(self, low: int, high: int | None = None) -> int:
        return int(self.queue.pop(0))


def assert_wrapper_steps_as_its_game(wrapped, game, params, actions, keys) -> None:
    """With sticky actions off, :class:`mtdqn.tasks.minatar.MinAtarEnv` steps exactly as the game it wraps: the same
    observations, rewards and terminals (up to the first terminal), and the executed action is the chosen one.
    The wrapper hands the game the second half of its step key (the first draws the sticky coin)."""
    _, w_state = wrapped.reset_env(jax.random.PRNGKey(3), wrapped.default_params)
    _, g_state = game.reset_env(jax.random.PRNGKey(3), params)

    def body(carry, inputs):
        w_state, g_state = carry
        a, k = inputs
        w_obs, w_state, w_r, w_term, _ = wrapped.step_env(k, w_state, a, wrapped.default_params)
        g_obs, g_state, g_r, g_term, _ = game.step_env(jax.random.split(k)[1], g_state, a, params)
        return (w_state, g_state), (w_obs, g_obs, w_r, g_r, w_term, g_term, w_state.last_action)

    _, (w_obs, g_obs, w_r, g_r, w_term, g_term, executed) = jax.jit(
        lambda c: jax.lax.scan(body, c, (actions, keys)))((w_state, g_state))
    alive = np.cumsum(np.asarray(g_term)) - np.asarray(g_term) == 0  # up to and including the first terminal
    assert alive.sum() > 10
    for w, g in ((w_obs, g_obs), (w_r, g_r), (w_term, g_term), (executed, actions)):
        np.testing.assert_array_equal(np.asarray(w)[alive], np.asarray(g)[alive])


def _drawn_ticks(ax) -> list:
    """The tick labels of `ax` inside its view (the locator also returns the next tick past each end, not drawn)."""
    (x0, x1), (y0, y1) = sorted(ax.get_xlim()), sorted(ax.get_ylim())
    return ([t for t in ax.get_xticklabels() if x0 <= t.get_position()[0] <= x1]
            + [t for t in ax.get_yticklabels() if y0 <= t.get_position()[1] <= y1])


def labels_outside(fig) -> list[str]:
    """The axis labels, titles and drawn tick labels of `fig` not wholly inside the figure (a clipped label):
    [] when every one is."""
    fig.canvas.draw()
    renderer, box = fig.canvas.get_renderer(), fig.bbox
    clipped = []
    for ax in fig.axes:
        for t in [ax.yaxis.label, ax.xaxis.label, ax.title, *_drawn_ticks(ax)]:
            if t.get_text() and t.get_visible():
                e = t.get_window_extent(renderer)
                if e.x0 < box.x0 - 1 or e.y0 < box.y0 - 1 or e.x1 > box.x1 + 1 or e.y1 > box.y1 + 1:
                    clipped.append(t.get_text())
    return clipped
