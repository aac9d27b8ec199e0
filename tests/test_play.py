"""Watching a trained agent: greedy episodes, their returns and lengths, a GIF of any task.

Per task family (classic control, our Car-On-Hill and pendulum, MinAtar, gym:)
the GIF holds one frame per state an episode visits (steps + 1), and two
different states give different frames.  Networks are untrained (random bits),
episodes short (``max_steps``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import stat
import sys

import gymnasium as gym
import jax
import numpy as np
import pytest
from PIL import Image
from helpers import IMAGE, VECTOR, fake_run, random_bits

from mtdqn.checkpoint import save_checkpoint
from mtdqn.cli import main
from mtdqn.config import config_hash, config_to_dict
from mtdqn.errors import ConfigError
from mtdqn.io import write_json
from mtdqn.play import play
from mtdqn.render import RENDERERS, car_on_hill_frame, minatar_frame, minigrid_frame, open_renderer, pendulum_frame
from mtdqn.tasks.registry import make_env
from mtdqn.train.agent import make_agent
from mtdqn.train.host_loop import make_host_trainer
from mtdqn.train.loop import seed_keys

CLASSIC = dataclasses.replace(VECTOR, tasks=("CartPole-v1", "Acrobot-v1", "MountainCar-v0"), seeds=1)
OURS = dataclasses.replace(VECTOR, tasks=("CarOnHill-v0", "InvertedPendulumDiscrete-v0"), seeds=1)
GYM = dataclasses.replace(VECTOR, tasks=("gym:CartPole-v1",), seeds=1)


def fake_gym_run(run_dir, cfg):
    """fake_run for gym: tasks: the host trainer's state template filled with random bits, no envs stepped."""
    trainer, _ = make_host_trainer(make_agent(cfg))
    state = random_bits(jax.eval_shape(trainer.init, seed_keys(trainer.agent.seeds)))
    write_json(run_dir / "config.json", {"config": config_to_dict(cfg), "config_hash": config_hash(cfg)})
    save_checkpoint(run_dir, trainer.agent.cfg, state, 1, {"options": {"checkpoint_every": 0, "eval_episodes": 2}})


@pytest.fixture(scope="module")
def classic_run(tmp_path_factory):
    """fake_run of CLASSIC, made once for the tests that play it: playing only reads a run."""
    run = tmp_path_factory.mktemp("classic") / "run"
    fake_run(run, CLASSIC)
    return run


def gif_frames(path) -> int:
    with Image.open(path) as gif:
        return gif.n_frames


def assert_frame_per_state(tmp_path, run, task, **options):
    """Two episodes into one GIF: steps + 1 frames each, every one kept (none merged as a duplicate)."""
    gif = tmp_path / f"{task.replace(':', '_')}.gif"
    result = play(run, task, episodes=2, gif=gif, **options)
    assert len(result.returns) == len(result.lengths) == 2 and all(n > 0 for n in result.lengths)
    assert result.frames == gif_frames(gif) == sum(n + 1 for n in result.lengths), (result, task)
    return result


def differ(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and a.dtype == np.uint8 and not np.array_equal(a, b)


@pytest.mark.slow
def test_classic_control_gifs(tmp_path, capsys, classic_run):
    result = assert_frame_per_state(tmp_path, classic_run, "CartPole-v1")  # ends in ~10 steps at random
    assert all(n < 500 for n in result.lengths)  # ended by the pole, not the time limit: the last frame is it
    for task in ("Acrobot-v1", "MountainCar-v0"):
        result = assert_frame_per_state(tmp_path, classic_run, task, max_steps=7)
        assert result.lengths == [7, 7]
    main(["play", str(classic_run), "--task", "MountainCar-v0", "--episodes", "2", "--max-steps", "5"])
    captured = capsys.readouterr()
    assert captured.out.splitlines() == ["episode 1: return -5, length 5 steps (cut off: the episode had not ended)",
                                         "episode 2: return -5, length 5 steps (cut off: the episode had not ended)"]
    assert captured.err.splitlines() == [f"note: {classic_run} is unfinished: its checkpoint is at step 200 of 1,200"]


def test_each_episode_is_drawn_from_its_start_to_the_state_it_ended_in(tmp_path, monkeypatch, classic_run):
    """The frames are of the start, each step's state, and the terminal one (not gymnax's auto-reset)."""
    states = []

    def draw(state, obs):
        states.append((float(state.x), float(state.theta)))
        return np.zeros((4, 4, 3), np.uint8)

    monkeypatch.setitem(RENDERERS, "CartPole-v1", lambda _: contextlib.nullcontext(draw))
    result = play(classic_run, "CartPole-v1", episodes=3, gif=tmp_path / "x.gif")
    starts = np.cumsum([0] + [n + 1 for n in result.lengths])
    assert len(states) == starts[-1]
    for first, n in zip(starts, result.lengths):
        x, theta = np.abs(states[first])
        assert x <= 0.05 and theta <= 0.05  # gymnax's reset: every variable in [-0.05, 0.05]
        x, theta = np.abs(states[first + n])
        assert x > 2.4 or theta > 12 * 2 * np.pi / 360  # the pole fell (or the cart left): CartPole's end
        assert all(abs(t) <= 12 * 2 * np.pi / 360 for _, t in states[first: first + n])  # it stood before


@pytest.mark.parametrize("name, change", [
    ("CartPole-v1", {"x": 1.0, "theta": -0.15}),
    ("Acrobot-v1", {"joint_angle1": 1.0, "joint_angle2": -0.5}),
    ("MountainCar-v0", {"position": 0.3}),
])
def test_classic_frames_are_gymnasiums_drawing_of_the_state(name, change):
    env, params = make_env(name)
    obs, state = env.reset(jax.random.PRNGKey(0), params)
    moved = state.replace(**change)
    with open_renderer(name) as draw:
        a, b = draw(state, np.asarray(obs)), draw(moved, np.asarray(obs))
    assert differ(a, b)
    reference = gym.make(name, render_mode="rgb_array").unwrapped  # Gymnasium in that state draws the same
    reference.reset(seed=0)
    reference.state = np.array([float(getattr(moved, f)) for f in {
        "CartPole-v1": ("x", "x_dot", "theta", "theta_dot"),
        "Acrobot-v1": ("joint_angle1", "joint_angle2", "velocity_1", "velocity_2"),
        "MountainCar-v0": ("position", "velocity")}[name]])
    np.testing.assert_array_equal(b, reference.render())
    reference.close()


def test_without_pygame_one_line_names_the_extra(tmp_path, monkeypatch, classic_run):
    monkeypatch.setitem(sys.modules, "pygame", None)  # `import pygame` raises ImportError
    with pytest.raises(ConfigError, match=r"needs pygame: pip install 'mtdqn\[render\]'"):
        play(classic_run, "CartPole-v1", gif=tmp_path / "x.gif")
    assert not (tmp_path / "x.gif").exists()
    assert len(play(classic_run, "CartPole-v1", episodes=2).returns) == 2  # without a GIF it plays


def test_a_gif_that_cannot_be_written_after_playing_keeps_the_returns(tmp_path, monkeypatch, capsys, classic_run):
    """Its folder checked before playing, then unwritable when the GIF is written: the episodes' returns were
    lost with it; now the one line (exit 1, an environment problem) carries them."""
    monkeypatch.setitem(RENDERERS, "MountainCar-v0", lambda _: contextlib.nullcontext(
        lambda state, obs: np.zeros((4, 4, 3), np.uint8)))

    def refused(path, write):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr("mtdqn.play.atomic_write", refused)
    with pytest.raises(SystemExit) as exc:
        main(["play", str(classic_run), "--task", "MountainCar-v0", "--episodes", "2", "--max-steps", "3",
              "--gif", str(tmp_path / "x.gif")])
    err = capsys.readouterr().err.splitlines()
    assert exc.value.code == 1 and err[0] == (f"error: --gif {tmp_path / 'x.gif'}: cannot write it (Permission "
                                              "denied); the episodes' returns: -3 (3 steps), -3 (3 steps)")


@pytest.mark.slow
def test_car_on_hill_and_pendulum_gifs(tmp_path):
    fake_run(tmp_path / "run", OURS)
    assert_frame_per_state(tmp_path, tmp_path / "run", "CarOnHill-v0", max_steps=9)
    result = assert_frame_per_state(tmp_path, tmp_path / "run", "InvertedPendulumDiscrete-v0")
    assert all(n < 3000 for n in result.lengths)  # it fell: the last frame shows it down


def test_car_on_hill_and_pendulum_drawings_show_the_state():
    base = car_on_hill_frame(-0.5, 0.0)
    assert differ(base, car_on_hill_frame(0.5, 0.0)) and differ(base, car_on_hill_frame(-0.5, 2.0))
    base = pendulum_frame(0.0, 0.0)
    assert differ(base, pendulum_frame(0.6, 0.0)) and differ(base, pendulum_frame(0.0, -3.0))
    assert differ(pendulum_frame(0.3, 0.0), pendulum_frame(-0.3, 0.0))  # leaning right is not leaning left


def test_minatar_frame_colours_each_channel():
    grid = np.zeros((10, 10, 4), bool)
    grid[0, 0, 0] = grid[9, 9, 2] = True
    image = minatar_frame(grid, scale=2)
    assert image.shape == (20, 20, 3) and image.dtype == np.uint8
    assert image[0, 0].tolist() != image[19, 19].tolist()  # two channels, two colours
    assert image[10, 10].tolist() == [0, 0, 0]  # empty cell: background
    moved = np.roll(grid, 1, axis=0)
    assert differ(minatar_frame(grid), minatar_frame(moved))


@pytest.mark.slow
def test_minatar_gif(tmp_path):
    fake_run(tmp_path / "run", IMAGE)
    assert_frame_per_state(tmp_path, tmp_path / "run", IMAGE.tasks[0], max_steps=6)
    result = play(tmp_path / "run", IMAGE.tasks[0], episodes=1, gif=tmp_path / "every.gif", max_steps=10,
                  gif_every=4)
    kept = set(range(0, result.lengths[0] + 1, 4)) | {result.lengths[0]}  # every 4th step and the last
    assert result.frames == gif_frames(tmp_path / "every.gif") == len(kept)


MINIGRID = dataclasses.replace(IMAGE, tasks=("MiniGrid-DoorKey-6x6-v0", "MiniGrid-LavaGapS7-v0"), seeds=1)


@pytest.mark.slow
def test_minigrid_gif_and_drawing(tmp_path):
    fake_run(tmp_path / "run", MINIGRID)
    for task in MINIGRID.tasks:
        assert_frame_per_state(tmp_path, tmp_path / "run", task, max_steps=5)
    grid = np.zeros((6, 6, 3), np.uint8)
    grid[0, :] = grid[-1, :] = grid[:, 0] = grid[:, -1] = (2, 5, 0)  # walls around an empty room
    base = minigrid_frame(grid, (2, 2), 0, tile=8)
    assert base.shape == (48, 48, 3) and base.dtype == np.uint8
    assert differ(base, minigrid_frame(grid, (3, 2), 0, tile=8))  # moved
    assert differ(base, minigrid_frame(grid, (2, 2), 1, tile=8))  # turned
    with_key = grid.copy()
    with_key[4, 4] = (5, 4, 0)  # a yellow key
    assert differ(base, minigrid_frame(with_key, (2, 2), 0, tile=8))


def test_frames_of_several_sizes_are_each_whole_in_the_gif(tmp_path):
    """A MiniGrid task's frame is its layout's size, which differs between episodes (MultiRoom): a GIF has one
    canvas, so a later, larger frame was clipped to the first's."""
    from mtdqn.play import write_gif

    small, large = (Image.fromarray(np.full((h, w, 3), value, np.uint8)) for h, w, value in ((20, 30, 50),
                                                                                          (40, 10, 200)))
    gif = Image.open(write_gif([small, large], tmp_path / "two.gif"))
    assert gif.size == (30, 40) and gif.n_frames == 2
    gif.seek(1)
    assert np.asarray(gif.convert("RGB"))[39, 5].tolist() == [200, 200, 200]  # the large frame's far corner


def test_agent_seed_picks_the_network_that_plays(tmp_path, monkeypatch):
    """`play --agent-seed 1` acts with seed 1's network (the default: the run's first seed); its --seed seeds the
    episodes' starts only."""
    from mtdqn.deploy import LoadedAgent

    fake_run(tmp_path / "run", dataclasses.replace(CLASSIC, seeds=2))
    acted = []
    real_act = LoadedAgent.act
    monkeypatch.setattr(LoadedAgent, "act", lambda self, *a, **k: acted.append(self.seeds) or real_act(self, *a, **k))
    # cut off by --max-steps before the pole falls: said (it printed as an ordinary return)
    assert play(tmp_path / "run", "CartPole-v1", max_steps=3, seed=1).cut == [True]
    play(tmp_path / "run", "CartPole-v1", max_steps=3, seed=1, agent_seed=1)
    assert acted == [(0, 1)] * 3 + [(1,)] * 3  # first seed by default: act's default of a two-seed agent


def test_a_caption_wider_than_its_frame_shows_whole():
    """A small MiniGrid layout's frame is 96 px wide; its caption needs ~124 and was cut ("step 3  return 0
    epis"): the frame is widened with white, the picture kept in its corner."""
    from PIL import ImageDraw

    from mtdqn.render import with_caption

    text = "step 3  return 0  episode 1"
    frame = np.full((40, 96, 3), 7, np.uint8)
    out = with_caption(frame, text)
    needed = ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength(text)
    assert out.shape[1] >= needed + 4 and out.shape[0] == 40 + 16
    assert (out[:40, :96] == 7).all() and (out[:40, 96:] == 255).all()
    ink = np.flatnonzero((out[40:] < 128).any(axis=(0, 2)))  # the caption's dark pixels, by column
    assert ink.max() < out.shape[1] - 1 and ink.max() > 96  # past the frame's width, inside the band
    wide = np.full((40, 600, 3), 7, np.uint8)
    assert with_caption(wide, text).shape == (56, 600, 3)  # a wide frame is not changed


def test_a_gif_of_captions_growing_past_their_frame_has_one_margin_colour(tmp_path):
    """Captions widen as the step and return grow (126 to 152 px over a 96-px MiniGrid episode): every frame's
    margin beyond the picture is white, the widened frames' and the GIF canvas's alike (a black canvas made it
    flicker)."""
    from mtdqn.play import write_gif
    from mtdqn.render import with_caption

    frame = np.full((40, 96, 3), 7, np.uint8)
    captions = ["step 9  return 0  episode 1", "step 10  return 0  episode 1", "step 100  return -20.5  episode 1"]
    images = [Image.fromarray(with_caption(frame, c)).convert("P", palette=Image.Palette.ADAPTIVE) for c in captions]
    gif = Image.open(write_gif(images, tmp_path / "grow.gif"))
    assert gif.n_frames == 3 and gif.width > 96
    for k in range(3):
        gif.seek(k)
        rgb = np.asarray(gif.convert("RGB"))
        assert (rgb[:40, 96:] == 255).all(), k  # beside the picture: white in every frame
        assert (rgb[:40, :96] == 7).all(), k


def test_a_minigrid_frame_is_its_tasks_grid_not_the_padding():
    """Every task lies in the corner of one padded grid (walls beyond): a 6x6 room in a 12x12 grid is drawn
    6x6, the room and its outer walls."""
    grid = np.zeros((12, 12, 3), np.uint8)
    grid[:, :] = (2, 5, 0)
    grid[1:5, 1:5] = (1, 0, 0)  # the room's floor inside its walls at 0 and 5
    assert minigrid_frame(grid, (2, 2), 0, tile=8).shape == (48, 48, 3)


@pytest.mark.slow
def test_gym_task_gif(tmp_path, monkeypatch):
    fake_gym_run(tmp_path / "run", GYM)
    assert_frame_per_state(tmp_path, tmp_path / "run", "gym:CartPole-v1", max_steps=8)
    with monkeypatch.context() as m:
        m.setitem(sys.modules, "pygame", None)
        with pytest.raises(ConfigError, match=r"drawing gym:CartPole-v1 needs pygame: pip install 'mtdqn\[render\]'"):
            play(tmp_path / "run", "gym:CartPole-v1", gif=tmp_path / "none.gif")
    assert not (tmp_path / "none.gif").exists()
    env = gym.make("CartPole-v1", render_mode="rgb_array")
    env.reset(seed=0)
    a = env.render()
    env.unwrapped.state = np.array([1.0, 0.0, -0.15, 0.0])
    assert differ(a, env.render())
    env.close()


def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, classic_run):
    os.mkfifo(tmp_path / "pipe.gif")  # exists, not a regular file: the GIF would be renamed over it
    before = sorted(p.name for p in tmp_path.iterdir())
    run = str(classic_run)
    cases = [
        (["--task", "CartPole-v1", "--gif", str(tmp_path / "missing" / "cp.gif")], "does not exist"),
        (["--task", "CartPole-v1", "--gif", str(tmp_path)], "is a directory"),
        (["--task", "CartPole-v1", "--gif", str(tmp_path / "cp.png")], "cp.png: the file written is a GIF; give a "
         f"name ending in .gif, e.g. {tmp_path / 'cp.gif'}"),  # was: GIF data written as cp.png
        (["--task", "CartPole-v1", "--gif", str(tmp_path / "pipe.gif")], "exists and is not a regular file"),
        (["--task", "CartPole-v1", "--episodes", "0", "--gif", str(tmp_path / "cp.gif")], "--episodes must be > 0"),
        (["--task", "Breakout-MinAtar", "--gif", str(tmp_path / "cp.gif")], "is not one of this run's tasks"),
        (["--task", "CartPole-v1", "--gif-every", "0", "--gif", str(tmp_path / "cp.gif")], "--gif-every must be"),
        (["--task", "CartPole-v1", "--fps", "60", "--gif", str(tmp_path / "cp.gif")], "--fps must be <= 50"),
        (["--task", "CartPole-v1", "--agent-seed", "5", "--gif", str(tmp_path / "cp.gif")],
         "--agent-seed 5 is not one of this run's seeds: 0"),
    ]
    for argv, message in cases:
        with pytest.raises(SystemExit) as exc:
            main(["play", run, *argv])
        captured = capsys.readouterr()
        err = captured.err.strip().splitlines()
        assert exc.value.code == 2 and len(err) == 1 and message in err[0] and not captured.out, (argv, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert stat.S_ISFIFO((tmp_path / "pipe.gif").stat().st_mode)


def test_the_frame_rate_is_the_nearest_a_gif_can_store(tmp_path):
    """1000 // fps ms, then Pillow's hundredths: --fps 35 stored 20 ms (50 frames per second, 43% fast), 15
    stored 60 ms.  Now the nearest hundredth: 30 ms and 70 ms."""
    from mtdqn.play import write_gif

    frames = [Image.fromarray(np.full((4, 4, 3), value, np.uint8)) for value in (0, 255)]  # equal ones merge
    for fps, ms in ((35, 30), (15, 70), (30, 30), (50, 20), (10, 100)):
        gif = Image.open(write_gif(frames, tmp_path / f"{fps}.gif", fps))
        assert gif.info["duration"] == ms, fps


def test_play_refuses_a_seed_beyond_a_key_and_an_unwritable_gif_folder_before_playing(tmp_path, monkeypatch):
    """--seed 2**63 was a 27-line traceback from jax.random.PRNGKey; an unwritable GIF folder was found after
    every episode had played and been drawn."""
    import os

    import mtdqn.play as play_module
    from mtdqn.errors import Unwritable

    with pytest.raises(ConfigError, match=r"^--seed must be in \[0, 4,611,686,018,427,387,904\], got "
                                          r"9223372036854775808"):
        play_module.play(tmp_path / "no-run", "CartPole-v1", seed=2**63)
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(Unwritable, match="is not writable"):  # before the run is even read
        play_module.play(tmp_path / "no-run", "CartPole-v1", gif=tmp_path / "x.gif")
