"""Watch a trained agent: greedy episodes of one task, their returns and lengths, and optionally a GIF.

Every registered task can be drawn: JAX tasks from their gymnax state
(:mod:`mtdqn.render`: MinAtar's grids, Gymnasium's classic-control renderers,
our drawings of Car-On-Hill, the pendulum and the MiniGrid grids), ``gym:`` tasks by their own
``rgb_array`` render mode.  A GIF holds one frame per state an episode visits:
its start and the state after each step, so ``steps + 1`` frames per episode
(``gif_every=k`` keeps every k-th and each episode's last).  A caption under
each frame gives the episode, step and return so far.  The agent is loaded
with :func:`mtdqn.load_agent` (the network only) and acts greedily.
"""

from __future__ import annotations

import os
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import jax
import numpy as np
from PIL import Image

from mtdqn.callables import callable_as_api
from mtdqn.config import MAX_SEED
from mtdqn.deploy import LoadedAgent, load_agent
from mtdqn.errors import ConfigError, Unwritable, check_number
from mtdqn.evaluate import HOST_MAX_STEPS
from mtdqn.io import atomic_write
from mtdqn.render import RENDER_EXTRA, offscreen_pygame, open_renderer, with_caption
from mtdqn.tasknames import index_of_task, is_own_task

__all__ = ["PlayResult", "play", "write_gif", "Recorder"]


@dataclass(frozen=True)
class PlayResult:
    returns: list[float]  # one per episode, unscaled
    lengths: list[int]
    gif: Path | None
    frames: int = 0  # frames in the GIF
    iteration: int | None = None  # the checkpoint played (a run still training moves on while it plays)
    cut: list[bool] = field(default_factory=list)  # per episode: stopped at the step limit, before its own end


class Recorder:
    """Frames of the episodes as they are played: each captioned, kept as a palette image (a third of RGB)."""

    def __init__(self, every: int = 1):
        self.every = every
        self.images: list[Image.Image] = []

    def __call__(self, frame: np.ndarray, episode: int, step: int, total: float, last: bool) -> None:
        """Keep the frame of ``step`` (0: the episode's start) if it is an every-th one or the episode's last."""
        if step % self.every and not last:
            return
        captioned = with_caption(frame, f"step {step}  return {total:g}  episode {episode + 1}")
        self.images.append(Image.fromarray(captioned).convert("P", palette=Image.Palette.ADAPTIVE))


def write_gif(images: list[Image.Image], path: Path, fps: int = 30) -> Path:
    """An animated GIF of the frames, written atomically (a temp file renamed into place).  Frames of several
    sizes (a MiniGrid task's layouts differ between episodes: :func:`mtdqn.render.minigrid_frame`) are set in
    the top-left corner of the largest: a GIF has one canvas, the first frame's, and clipped the others.  The
    canvas is white, as the margin :func:`mtdqn.render.with_caption` adds where a caption outgrows its frame
    (captions widen as the step and return grow: on black, that margin flickered white and black)."""
    if not images:
        raise ConfigError("no frames to write")
    size = (max(i.width for i in images), max(i.height for i in images))
    images = [i if i.size == size else _on_canvas(i, size) for i in images]
    atomic_write(Path(path), lambda tmp: images[0].save(tmp, format="GIF", save_all=True,
                                                        append_images=images[1:], duration=10 * round(100 / fps),
                                                        loop=0))  # GIFs count hundredths: the nearest
    return Path(path)


def _on_canvas(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    canvas = Image.new("RGB", size, (255, 255, 255))
    canvas.paste(image.convert("RGB"), (0, 0))
    return canvas.convert("P", palette=Image.Palette.ADAPTIVE)


Record = Callable[[np.ndarray, int, int, float, bool], None] | None


def _play_gymnax(agent: LoadedAgent, task_index: int, episodes: int, seed: int, max_steps: int,
                 record: Record) -> tuple[list[float], list[int], list[bool]]:
    """Episodes of a built-in task stepped with ``step_env`` (no auto-reset), so the state each one ends in can
    be drawn; of your own environment with its ``step``, as training and evaluation step it (a gymnax wrapper's
    ``step`` is its own, its ``step_env`` the inner env's: play showed the unwrapped env's returns, and an env
    with gymnax's API alone has no ``step_env``).  Your own has no drawing (:func:`mtdqn.render.open_renderer`),
    so the state after its auto-reset is never drawn."""
    task = agent.task_set.tasks[task_index]
    env, params = task.make()  # with the task's options (MinAtar's sticky actions, action set, cut-off)
    own = is_own_task(task.spec)

    @jax.jit
    def step(key: jax.Array, state: Any, action: jax.Array) -> tuple[Any, ...]:
        if own:
            obs, state, reward, terminated, truncated, _ = env.step(key, state, action, params)
            return obs, state, reward, terminated | truncated
        obs, state, reward, terminated, _ = env.step_env(key, state, action, params)
        return obs, state, reward, terminated | env.is_truncated(state, params)

    reset = jax.jit(lambda key: env.reset(key, params))
    returns, lengths, cut = [], [], []
    key = jax.random.PRNGKey(seed)
    with open_renderer(task.name) if record else nullcontext() as draw:
        for episode in range(episodes):
            key, k_reset = jax.random.split(key)
            obs, state = reset(k_reset)
            total, length, done = 0.0, 0, False
            if record:
                record(draw(state, np.asarray(obs)), episode, 0, total, False)
            while not done:
                action = int(agent.act(task.spec, np.asarray(obs), check_bounds=False))  # the env's own
                key, k_step = jax.random.split(key)
                obs, state, reward, ended = step(k_step, state, action)
                total += float(reward)
                length += 1
                done = bool(ended) or length >= max_steps
                if record:
                    record(draw(state, np.asarray(obs)), episode, length, total, done)
            returns.append(total)
            lengths.append(length)
            cut.append(not bool(ended))
    return returns, lengths, cut


def _rgb_frame(env: Any, spec: str) -> np.ndarray:
    """An (H, W, 3) uint8 frame from Gymnasium's render(), or a one-line error for anything else."""
    import gymnasium as gym

    try:
        frame = env.render()
    except gym.error.DependencyNotInstalled as exc:
        needs = "pygame: " + RENDER_EXTRA if "pygame" in str(exc) else str(exc).strip().splitlines()[0]
        raise ConfigError(f"drawing {spec} needs {needs}") from None
    array = np.asarray(frame) if frame is not None else None
    if array is None or array.ndim != 3 or array.shape[-1] != 3:
        raise ConfigError(f"{spec} rendered no (height, width, 3) rgb frame, so no GIF")
    return array.astype(np.uint8)


def _play_gymnasium(agent: LoadedAgent, task_index: int, episodes: int, seed: int, max_steps: int,
                    record: Record) -> tuple[list[float], list[int], list[bool]]:
    from mtdqn.tasks.gymnasium_env import make_env as make_gym_env  # imported late: gymnasium is slow

    task = agent.task_set.tasks[task_index]
    if record:
        offscreen_pygame()
    env = make_gym_env(task.name, task.image_obs, **({"render_mode": "rgb_array"} if record else {}))
    returns, lengths, cut = [], [], []
    try:
        if record and env.render_mode != "rgb_array":
            raise ConfigError(f"{task.spec} cannot render rgb_array frames, so no GIF")
        for episode in range(episodes):
            obs, _ = env.reset(seed=seed + episode)
            total, length, done = 0.0, 0, False
            if record:
                record(_rgb_frame(env, task.spec), episode, 0, total, False)
            while not done:
                action = int(agent.act(task.spec, np.asarray(obs), check_bounds=False))  # the env's own
                obs, reward, terminated, truncated, _ = env.step(action)
                total += float(reward)
                length += 1
                done = terminated or truncated or length >= max_steps
                if record:
                    record(_rgb_frame(env, task.spec), episode, length, total, done)
            returns.append(total)
            lengths.append(length)
            cut.append(not (terminated or truncated))
    finally:
        env.close()
    return returns, lengths, cut


def _check_gif_path(gif: Path) -> None:
    if gif.is_dir():
        raise ConfigError(f"--gif {gif} is a directory; give a file name, e.g. {gif / 'play.gif'}")
    if gif.suffix.lower() != ".gif":  # GIF data under another name: a viewer would mistake or refuse it
        raise ConfigError(f"--gif {gif}: the file written is a GIF; give a name ending in .gif, e.g. "
                          f"{gif.with_suffix('.gif')}")
    if gif.exists() and not gif.is_file():  # a device, a pipe: the GIF is written beside it and renamed over it
        raise ConfigError(f"--gif {gif} exists and is not a regular file; give a file name")
    if not gif.parent.is_dir():
        raise ConfigError(f"--gif {gif}: directory {gif.parent} does not exist")


def play(run_dir: Path | str, task: str, episodes: int = 1, gif: Path | str | None = None, seed: int = 0,
         max_steps: int = 0, gif_every: int = 1, fps: int = 30, agent_seed: int | None = None) -> PlayResult:
    """Greedy episodes of ``task`` with the run's first seed's network (``agent_seed``: that seed's);
    ``seed`` seeds the environments' starts; ``gif``: also write their frames.

    ``max_steps`` > 0 ends each episode after that many steps (0: at the task's own end or time limit);
    ``gif_every`` keeps every k-th frame (and each episode's last); ``fps``: the GIF's frame rate.
    Bad input is a one-line ConfigError raised before anything is played or written.
    """
    for name, value, least in (("--episodes", episodes, 1), ("--max-steps", max_steps, 0),
                               ("--gif-every", gif_every, 1), ("--fps", fps, 1), ("--seed", seed, 0)):
        check_number(name, value, least)
    if agent_seed is not None:
        check_number("--agent-seed", agent_seed, 0)
    if seed > MAX_SEED:  # a key takes a 64-bit integer: 2**63 was a traceback from jax.random.PRNGKey
        raise ConfigError(f"--seed must be in [0, {MAX_SEED:,}], got {seed}")
    if fps > 50:  # 1/100 s a frame: browsers play such GIFs at 10 frames per second
        raise ConfigError(f"--fps must be <= 50 (a GIF counts time in hundredths of a second, and browsers play "
                          f"frames shorter than 2 of them at 10 per second), got {fps}")
    gif = Path(gif) if gif is not None else None
    if gif is not None:
        _check_gif_path(gif)
        if not os.access(gif.parent.absolute(), os.W_OK):  # found before the episodes play, not after
            raise Unwritable(f"--gif {gif}: its folder {gif.parent.absolute()} is not writable")
    agent = load_agent(run_dir)
    if agent_seed is not None:
        if agent_seed not in agent.seeds:  # said by its flag: play's --seed seeds the episodes
            raise ConfigError(f"--agent-seed {agent_seed} is not one of this run's seeds: "
                              f"{', '.join(map(str, agent.seeds))}")
        agent = agent.of_seed(agent_seed)
    i = index_of_task(agent.tasks, task)
    spec = agent.task_set.tasks[i]
    # the task's own time limit, as evaluation rolls out to (an env of your own that does not end its episodes
    # there would play forever); a gym env without one HOST_MAX_STEPS
    limit = max_steps or spec.max_episode_steps or HOST_MAX_STEPS
    recorder = Recorder(gif_every) if gif is not None else None
    runner = _play_gymnasium if spec.backend == "gymnasium" else _play_gymnax
    returns, lengths, cut = runner(agent, i, episodes, seed, limit, recorder)
    if recorder is None:
        return PlayResult(returns, lengths, None, iteration=agent.iteration, cut=cut)
    try:
        written = write_gif(recorder.images, gif, fps)
    except OSError as exc:  # its folder became unwritable, or the disk filled, while the episodes played
        played = ", ".join(f"{r:g} ({n} steps)" for r, n in zip(returns, lengths))
        raise Unwritable(f"--gif {gif}: cannot write it ({exc.strerror or exc}); the episodes' returns: "
                         f"{played}") from None
    return PlayResult(returns, lengths, written, len(recorder.images), agent.iteration, cut)


callable_as_api(__name__)  # mtdqn.play(run, task, ...) as mtdqn.train(...): last, the module complete
