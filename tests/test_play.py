"""Watching a trained agent: greedy episodes, their returns, a GIF where the env can be drawn."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from helpers import IMAGE, fake_run

from mtdqn.cli import main
from mtdqn.errors import ConfigError
from mtdqn.play import minatar_frame, play


def test_minatar_frame_colours_each_channel():
    grid = np.zeros((10, 10, 4), bool)
    grid[0, 0, 0] = grid[9, 9, 2] = True
    image = minatar_frame(grid, scale=2)
    assert image.shape == (20, 20, 3) and image.dtype == np.uint8
    assert image[0, 0].tolist() != image[19, 19].tolist()  # two channels, two colours
    assert image[10, 10].tolist() == [0, 0, 0]  # empty cell: background


def test_play_minatar_writes_a_gif_of_every_step(tmp_path, capsys):
    fake_run(tmp_path / "run", IMAGE)
    task = IMAGE.tasks[0]
    result = play(tmp_path / "run", task, episodes=2, gif=tmp_path / "out.gif")
    assert len(result.returns) == 2 and all(n > 0 for n in result.lengths)
    with Image.open(result.gif) as gif:
        assert 2 <= gif.n_frames <= sum(result.lengths)  # a frame per step (PIL merges identical neighbours)
    main(["play", str(tmp_path / "run"), "--task", task, "--episodes", "1"])
    assert "return" in capsys.readouterr().out


def test_play_refuses_what_it_cannot_draw(tmp_path):
    fake_run(tmp_path / "run")  # CartPole + Acrobot: gymnax classic control has no renderer
    with pytest.raises(ConfigError, match="cannot be drawn"):
        play(tmp_path / "run", "CartPole-v1", gif=tmp_path / "x.gif")
    assert not (tmp_path / "x.gif").exists()
    assert len(play(tmp_path / "run", "CartPole-v1", episodes=3).returns) == 3  # without a GIF it plays
    with pytest.raises(ConfigError, match="--episodes must be > 0"):
        play(tmp_path / "run", "CartPole-v1", episodes=0)
