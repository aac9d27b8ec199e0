"""Frames of every registered JAX task, drawn from its gymnax state: what `mtdqn play --gif` shows.

- MinAtar: the 10x10 object grid, one colour per channel, scaled up.
- CartPole, Acrobot, MountainCar: Gymnasium's own classic-control renderers.
  gymnax's states are the same physical variables as Gymnasium's, so the
  unwrapped Gymnasium env gets the gymnax state and draws it
  (``render_mode="rgb_array"``).  They need pygame: ``pip install 'mtdqn[render]'``.
- Car-On-Hill and the LSPI pendulum (ours): drawings of our own (PIL): the hill
  profile and the car, the pole on its cart; a bar under each shows the speed.

``gym:`` tasks draw themselves (their env's ``rgb_array`` mode, see
:mod:`mtdqn.play`).  A new task family adds a renderer to :data:`RENDERERS`
and nothing else.
- MiniGrid: the whole grid from its state, the agent's 7x7 view lit, the agent
  a red triangle (:func:`minigrid_frame`).
"""

from __future__ import annotations

import math
import os
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import numpy as np
from PIL import Image, ImageDraw

from mtdqn.errors import ConfigError
from mtdqn.taskfacts import FACTS
from mtdqn.tasks.minigrid.core import BALL, BOX, DOOR, FLOOR, GOAL, KEY, LAVA, LOCKED, OPEN, VIEW, WALL

__all__ = ["Draw", "RENDERERS", "open_renderer", "minatar_frame", "minigrid_frame", "car_on_hill_frame",
           "pendulum_frame",
           "with_caption", "offscreen_pygame", "RENDER_EXTRA"]

Draw = Callable[[Any, np.ndarray], np.ndarray]  # (gymnax env state, its observation) -> (H, W, 3) uint8
RENDER_EXTRA = "pip install 'mtdqn[render]'"

# Distinct colours for up to 10 MinAtar channels (tab10), background black.
_PALETTE = np.array([
    [31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189],
    [140, 86, 75], [227, 119, 194], [127, 127, 127], [188, 189, 34], [23, 190, 207],
], np.uint8)


def minatar_frame(obs: np.ndarray, scale: int = 16) -> np.ndarray:
    """(H, W, C) boolean grid -> (H*scale, W*scale, 3) uint8 image; a cell takes its first active channel's colour."""
    grid = np.asarray(obs, bool)
    active = grid.any(-1)
    first = np.argmax(grid, axis=-1)
    image = np.where(active[..., None], _PALETTE[first % len(_PALETTE)], 0).astype(np.uint8)
    return np.kron(image, np.ones((scale, scale, 1), np.uint8))


def _speed_bar(draw: ImageDraw.ImageDraw, width: int, y: int, value: float, limit: float) -> None:
    """A bar from the middle of the frame at height ``y``: right for positive ``value``, full width at ``limit``."""
    middle = width // 2
    end = middle + int(np.clip(value / limit, -1.0, 1.0) * (middle - 10))
    draw.line([(10, y), (width - 10, y)], fill=(200, 200, 200), width=1)
    draw.rectangle([min(middle, end), y - 3, max(middle, end), y + 3], fill=(214, 39, 40))
    draw.line([(middle, y - 6), (middle, y + 6)], fill=(0, 0, 0), width=1)


def _hill(position: np.ndarray) -> np.ndarray:
    """Ernst et al.'s hill: p**2 + p for p < 0, p / sqrt(1 + 5 p**2) for p >= 0 (mtdqn/tasks/car_on_hill.py)."""
    return np.where(position < 0, position**2 + position, position / np.sqrt(1.0 + 5.0 * position**2))


def car_on_hill_frame(position: float, velocity: float, width: int = 480) -> np.ndarray:
    """The hill over p in [-1.2, 1.2], the goal edge p = 1 (flag) and the car at p; below, its speed in [-3, 3]."""
    scale = width / 2.4  # pixels per unit, the same on both axes
    height = int(0.95 * scale) + 30
    ground = int(0.62 * scale)  # pixel row of hill height 0

    def to_pixel(p: float, h: float) -> tuple[float, float]:
        return (p + 1.2) * scale, ground - h * scale

    image = Image.new("RGB", (width, height), (235, 245, 255))
    draw = ImageDraw.Draw(image)
    ps = np.linspace(-1.2, 1.2, 241)
    draw.polygon([to_pixel(-1.2, -1.0), *map(to_pixel, ps, _hill(ps)), to_pixel(1.2, -1.0)], fill=(120, 170, 90))
    for edge in (-1.0, 1.0):  # the episode ends past these
        x, y = to_pixel(edge, float(_hill(np.float64(edge))))
        draw.line([(x, y), (x, y - 40)], fill=(60, 60, 60), width=2)
    x, y = to_pixel(1.0, float(_hill(np.float64(1.0))))
    draw.polygon([(x, y - 40), (x + 16, y - 34), (x, y - 28)], fill=(214, 39, 40))  # the goal on the right
    cx, cy = to_pixel(position, float(_hill(np.float64(position))))
    draw.ellipse([cx - 9, cy - 18, cx + 9, cy], fill=(31, 119, 180), outline=(0, 0, 0))
    _speed_bar(draw, width, height - 14, velocity, 3.0)
    return np.asarray(image)


def pendulum_frame(angle: float, angular_velocity: float, width: int = 360) -> np.ndarray:
    """The pole on its cart (angle 0 upright, positive leaning right; the dashed line is where it has fallen,
    |angle| = pi/2); below, the angular speed in [-4, 4] rad/s."""
    height = int(width * 0.75)
    image = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    track = height - 60
    pivot = (width / 2, track - 20)
    draw.line([(0, track), (width, track)], fill=(0, 0, 0), width=1)
    draw.line([(10, pivot[1]), (width - 10, pivot[1])], fill=(180, 180, 180), width=1)  # |angle| = pi/2
    draw.rectangle([pivot[0] - 40, pivot[1] - 2, pivot[0] + 40, track], fill=(60, 60, 60))
    length = 0.55 * height
    tip = (pivot[0] + length * math.sin(angle), pivot[1] - length * math.cos(angle))
    draw.line([pivot, tip], fill=(202, 152, 101), width=10)
    draw.ellipse([pivot[0] - 5, pivot[1] - 5, pivot[0] + 5, pivot[1] + 5], fill=(129, 132, 203))
    _speed_bar(draw, width, height - 18, angular_velocity, 4.0)
    return np.asarray(image)


def with_caption(frame: np.ndarray, text: str) -> np.ndarray:
    """``frame`` with a white band under it holding ``text`` (step and return: no two frames of an episode are
    identical, so a GIF keeps every one).  A frame narrower than the text (a small MiniGrid layout's, 96 px) is
    widened with white on its right, so the whole caption shows; :func:`mtdqn.play.write_gif` sets frames of
    several sizes on one canvas."""
    frame = np.asarray(frame, np.uint8)
    width = max(frame.shape[1], math.ceil(ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength(text)) + 8)
    band = Image.new("RGB", (width, 16), (255, 255, 255))
    ImageDraw.Draw(band).text((4, 2), text, fill=(0, 0, 0))
    if width > frame.shape[1]:
        frame = np.pad(frame, ((0, 0), (0, width - frame.shape[1]), (0, 0)), constant_values=255)
    return np.concatenate([frame, np.asarray(band)], axis=0)


def offscreen_pygame() -> None:
    """Draw off-screen: no window, no sound, no banner (pygame.init() would otherwise probe a display and a
    sound card and complain on stderr).  Settings the user made stay."""
    for var, value in (("PYGAME_HIDE_SUPPORT_PROMPT", "1"), ("SDL_VIDEODRIVER", "dummy"), ("SDL_AUDIODRIVER", "dummy")):
        os.environ.setdefault(var, value)


@contextmanager
def _plain(draw: Draw) -> Iterator[Draw]:
    yield draw


# gymnax state -> Gymnasium's ``env.state`` (the same physical variables, in Gymnasium's order)
_GYMNASIUM_STATE: dict[str, Callable[[Any], tuple[Any, ...]]] = {
    "CartPole-v1": lambda s: (s.x, s.x_dot, s.theta, s.theta_dot),
    "Acrobot-v1": lambda s: (s.joint_angle1, s.joint_angle2, s.velocity_1, s.velocity_2),
    "MountainCar-v0": lambda s: (s.position, s.velocity),
}


@contextmanager
def _gymnasium_classic(name: str) -> Iterator[Draw]:
    """Gymnasium's renderer for ``name``, drawing the gymnax state it is given; closed on exit."""
    offscreen_pygame()
    try:
        import pygame  # noqa: F401  (Gymnasium's classic-control renderer draws with it)
    except ImportError:
        raise ConfigError(f"drawing {name} needs pygame: {RENDER_EXTRA}") from None
    import gymnasium as gym

    env = gym.make(name, render_mode="rgb_array").unwrapped
    to_state = _GYMNASIUM_STATE[name]

    def draw(state: Any, obs: np.ndarray) -> np.ndarray:
        env.state = np.array([float(v) for v in to_state(state)])
        return np.asarray(env.render(), np.uint8)

    try:
        yield draw
    finally:
        env.close()


def _minatar(state: Any, obs: np.ndarray) -> np.ndarray:
    return minatar_frame(obs)


# MiniGrid's colour ids (red, green, blue, purple, yellow, grey) as MiniGrid draws them (minigrid/core/constants.py)
_MINIGRID_COLOURS = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [112, 39, 195], [255, 255, 0], [100, 100, 100]],
                             np.uint8)


def minigrid_frame(grid: np.ndarray, pos: tuple[int, int], direction: int, tile: int = 24) -> np.ndarray:
    """The whole grid, the agent's 7x7 view lit, the agent a red triangle pointing its way.

    ``grid`` is (W, H, 3) of (object, colour, state) ids indexed [x, y]; walls grey, a goal green, lava
    orange, doors outlined in their colour (filled when locked, a gap when open), keys and balls small
    squares and discs of their colour.  Drawn is the task's own grid: every task lies in the corner of one
    padded grid, walls beyond (:func:`mtdqn.tasks.minigrid.core.base_grid`), which made a 6x6 task's frame
    three quarters padding.
    """
    open_cells = np.argwhere(grid[..., 0] != WALL)
    width, height = (np.minimum(open_cells.max(0) + 2, grid.shape[:2]) if len(open_cells) else grid.shape[:2])
    image = Image.new("RGB", (width * tile, height * tile), (0, 0, 0))
    draw = ImageDraw.Draw(image)
    x0, y0 = pos
    ahead = {0: (0, -(VIEW // 2)), 1: (-(VIEW // 2), 0), 2: (-(VIEW - 1), -(VIEW // 2)), 3: (-(VIEW // 2), -(VIEW - 1))}
    vx, vy = ahead[int(direction)]
    draw.rectangle([(x0 + vx) * tile, (y0 + vy) * tile, (x0 + vx + VIEW) * tile - 1, (y0 + vy + VIEW) * tile - 1],
                   fill=(40, 40, 40))  # what the agent can see (before occlusion)
    for x in range(width):
        for y in range(height):
            obj, colour, state = (int(v) for v in grid[x, y])
            box = [x * tile, y * tile, (x + 1) * tile - 1, (y + 1) * tile - 1]
            inner = [box[0] + tile // 4, box[1] + tile // 4, box[2] - tile // 4, box[3] - tile // 4]
            rgb = tuple(int(c) for c in _MINIGRID_COLOURS[min(colour, 5)])
            if obj == WALL:
                draw.rectangle(box, fill=(100, 100, 100))
            elif obj == GOAL:
                draw.rectangle(box, fill=(0, 200, 0))
            elif obj == LAVA:
                draw.rectangle(box, fill=(255, 128, 0))
            elif obj == FLOOR:
                draw.rectangle(box, fill=tuple(c // 2 for c in rgb))
            elif obj == DOOR:
                if state == OPEN:
                    draw.rectangle([box[0], box[1], box[0] + 2, box[3]], fill=rgb)
                else:
                    draw.rectangle(box, outline=rgb, width=2, fill=rgb if state == LOCKED else None)
            elif obj in (KEY, BOX):
                draw.rectangle(inner, fill=rgb)
            elif obj == BALL:
                draw.ellipse(inner, fill=rgb)
    tip = {0: (1, 0.5), 1: (0.5, 1), 2: (0, 0.5), 3: (0.5, 0)}[int(direction)]
    back = {0: [(0, 0), (0, 1)], 1: [(0, 0), (1, 0)], 2: [(1, 0), (1, 1)], 3: [(0, 1), (1, 1)]}[int(direction)]
    corner = lambda fx, fy: (x0 * tile + 3 + fx * (tile - 6), y0 * tile + 3 + fy * (tile - 6))  # noqa: E731
    draw.polygon([corner(*tip), *(corner(*p) for p in back)], fill=(255, 0, 0))
    return np.asarray(image)


def _minigrid(state: Any, obs: np.ndarray) -> np.ndarray:
    return minigrid_frame(np.asarray(state.grid), tuple(int(v) for v in np.asarray(state.pos)), int(state.dir))


# task name -> a context manager yielding its Draw.  Add a task family here; `mtdqn play --gif` then draws it.
MINIGRID_TASKS = tuple(name for name in FACTS if name.startswith("MiniGrid-"))
RENDERERS: dict[str, Callable[[str], Any]] = {
    **{name: _gymnasium_classic for name in _GYMNASIUM_STATE},
    **{f"{game}-MinAtar": lambda _: _plain(_minatar)
       for game in ("Breakout", "Asterix", "Freeway", "SpaceInvaders", "Seaquest")},
    "CarOnHill-v0": lambda _: _plain(lambda s, obs: car_on_hill_frame(float(s.position), float(s.velocity))),
    "InvertedPendulumDiscrete-v0": lambda _: _plain(
        lambda s, obs: pendulum_frame(float(s.angle), float(s.angular_velocity))),
    **{name: lambda _: _plain(_minigrid) for name in MINIGRID_TASKS},
}


def open_renderer(name: str) -> Any:
    """A context manager yielding the :data:`Draw` of registered task ``name``; one line if it has none."""
    if name not in RENDERERS:
        raise ConfigError(f"{name} has no drawing for --gif (the built-in tasks and gym: tasks have one; your own "
                          "environment has none): play it without --gif for its returns and lengths")
    return RENDERERS[name](name)
