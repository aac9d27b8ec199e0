"""Watch a trained agent: greedy episodes of one task, their returns, and optionally a GIF.

Frames come from where the environment can draw itself: MinAtar's 10x10
object grids (one colour per channel, scaled up) and Gymnasium's
``rgb_array`` render mode for ``gym:`` tasks.  gymnax's classic-control
tasks have no renderer, so they play without a GIF.  The agent is loaded
with :func:`mtdqn.load_agent` (the network only) and acts greedily.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np

from mtdqn.deploy import LoadedAgent, load_agent
from mtdqn.errors import ConfigError

__all__ = ["PlayResult", "play", "minatar_frame", "write_gif"]

# Distinct colours for up to 10 MinAtar channels (tab10), background black.
_PALETTE = np.array([
    [31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189],
    [140, 86, 75], [227, 119, 194], [127, 127, 127], [188, 189, 34], [23, 190, 207],
], np.uint8)


@dataclass(frozen=True)
class PlayResult:
    returns: list[float]  # one per episode, unscaled
    lengths: list[int]
    gif: Path | None


def minatar_frame(obs: np.ndarray, scale: int = 16) -> np.ndarray:
    """(H, W, C) boolean grid -> (H*scale, W*scale, 3) uint8 image; a cell takes its first active channel's colour."""
    grid = np.asarray(obs, bool)
    active = grid.any(-1)
    first = np.argmax(grid, axis=-1)
    image = np.where(active[..., None], _PALETTE[first % len(_PALETTE)], 0).astype(np.uint8)
    return np.kron(image, np.ones((scale, scale, 1), np.uint8))


def write_gif(frames: list[np.ndarray], path: Path, fps: int = 10) -> Path:
    """An animated GIF of RGB frames, written atomically (a temp file renamed into place)."""
    from PIL import Image

    from mtdqn.io import atomic_write

    if not frames:
        raise ConfigError("no frames to write")
    images = [Image.fromarray(f) for f in frames]
    atomic_write(Path(path), lambda tmp: images[0].save(tmp, format="GIF", save_all=True,
                                                        append_images=images[1:], duration=1000 // fps, loop=0))
    return Path(path)


def _play_gymnax(agent: LoadedAgent, task_index: int, episodes: int, seed: int, record: bool):
    task = agent.task_set.tasks[task_index]
    env, params = task.make()
    reset, step = jax.jit(env.reset), jax.jit(env.step)
    returns, lengths, frames = [], [], []
    key = jax.random.PRNGKey(seed)
    for _ in range(episodes):
        key, k_reset = jax.random.split(key)
        obs, state = reset(k_reset, params)
        total, length, done = 0.0, 0, False
        while not done:
            if record:
                frames.append(minatar_frame(np.asarray(obs)))
            action = int(agent.act(task.spec, np.asarray(obs)))
            key, k_step = jax.random.split(key)
            obs, state, reward, terminated, truncated, _ = step(k_step, state, action, params)
            total += float(reward)
            length += 1
            done = bool(terminated) or bool(truncated)
        returns.append(total)
        lengths.append(length)
    return returns, lengths, frames


def _rgb_frame(frame: object, spec: str) -> np.ndarray:
    """An (H, W, 3) uint8 frame from Gymnasium's render(), or a one-line error for anything else."""
    array = np.asarray(frame) if frame is not None else None
    if array is None or array.ndim != 3 or array.shape[-1] != 3:
        raise ConfigError(f"{spec} rendered no (height, width, 3) rgb frame, so no GIF")
    return array.astype(np.uint8)


def _play_gymnasium(agent: LoadedAgent, task_index: int, episodes: int, seed: int, record: bool):
    from mtdqn.evaluate import HOST_MAX_STEPS
    from mtdqn.tasks.gymnasium_env import make_env

    task = agent.task_set.tasks[task_index]
    env = make_env(task.name, **({"render_mode": "rgb_array"} if record else {}))
    returns, lengths, frames = [], [], []
    try:
        if record and env.render_mode != "rgb_array":
            raise ConfigError(f"{task.spec} cannot render rgb_array frames, so no GIF")
        for episode in range(episodes):
            obs, _ = env.reset(seed=seed + episode)
            total, length, done = 0.0, 0, False
            while not done and length < (task.max_episode_steps or HOST_MAX_STEPS):
                if record:
                    frames.append(_rgb_frame(env.render(), task.spec))
                obs, reward, terminated, truncated, _ = env.step(int(agent.act(task.spec, np.asarray(obs))))
                total += float(reward)
                length += 1
                done = terminated or truncated
            returns.append(total)
            lengths.append(length)
    finally:
        env.close()
    return returns, lengths, frames


def play(run_dir: Path | str, task: str, episodes: int = 1, gif: Path | None = None, seed: int = 0) -> PlayResult:
    """Greedy episodes of ``task`` with the run's first seed's network; ``gif``: also write the frames."""
    if episodes <= 0:
        raise ConfigError(f"--episodes must be > 0, got {episodes}")
    agent = load_agent(run_dir)
    if task not in agent.tasks:
        raise ConfigError(f"task {task!r} is not one of this run's tasks: {', '.join(agent.tasks)}")
    i = agent.tasks.index(task)
    spec = agent.task_set.tasks[i]
    if gif is not None and spec.backend == "gymnax" and agent.task_set.kind != "image":
        raise ConfigError(f"{task} cannot be drawn (gymnax's classic-control tasks have no renderer); "
                          "GIFs are available for MinAtar and gym: tasks")
    runner = _play_gymnasium if spec.backend == "gymnasium" else _play_gymnax
    returns, lengths, frames = runner(agent, i, episodes, seed, gif is not None)
    return PlayResult(returns, lengths, write_gif(frames, gif) if gif is not None else None)
