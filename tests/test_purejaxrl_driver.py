"""benchmarks/purejaxrl.py: the edits it makes to PureJaxRL's dqn.py apply, keep it valid Python, and say which
one is missing (PureJaxRL's code is not in this repository: a sketch of its lines stands in)."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("purejaxrl_driver", ROOT / "benchmarks" / "purejaxrl.py")
driver = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(driver)

# PureJaxRL's dqn.py at 31756b1, the lines the edits touch, at their own indentation.
SKETCH = '''import os
import jax
import wandb
import flax.linen as nn


class QNetwork(nn.Module):
    def __call__(self, x):
        x = nn.Dense(120)(x)
        x = nn.Dense(84)(x)
        return x


def make_train(config):
    def train(rng):
        _obs, _, _reward, _done, _ = env.step(rng, _env_state, _action, env_params)
        target = jax.tree_map(lambda x: x, params)

        def _update_step(runner_state, unused):
            obs, env_state, reward, done, info = vmap_step(config["NUM_ENVS"])(
                rng_s, env_state, action
            )
            return done

        return _update_step

    return train
'''


def test_every_edit_applies_and_the_result_is_python(monkeypatch):
    out = driver.patched(SKETCH)
    tree = ast.parse(out)  # the inserted lines sit at their block's indentation
    assert "wandb" not in out and "jax.tree_map(" not in out and "jax.tree_util.tree_map(" in out
    assert "            done = terminated | truncated\n" in out  # after the loop's unpack, inside _update_step
    assert "        _done = _term | _trunc\n" in out
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    assert {"terminated", "truncated", "_term", "_trunc", "_WIDTHS"} <= names
    monkeypatch.setenv(driver.WIDTHS_ENV, "8,8")
    widths_line = next(line for line in out.splitlines() if line.startswith("_WIDTHS = "))
    scope = {"os": __import__("os")}
    exec(widths_line, scope)
    assert scope["_WIDTHS"] == [8, 8]
    assert "nn.Dense(_WIDTHS[0])" in out and "nn.Dense(_WIDTHS[1])" in out


@pytest.mark.parametrize("why, old, _new", driver.EDITS)
def test_a_missing_line_names_its_edit(why, old, _new):
    with pytest.raises(SystemExit, match=f"error: --dqn: {why}:"):
        driver.patched(SKETCH.replace(old, ""))


def test_a_file_that_is_not_purejaxrls_is_said_so():
    """A README given as --dqn was told its first edit's line was missing ("no wandb: ...")."""
    with pytest.raises(SystemExit, match=r"^error: --dqn: not PureJaxRL's purejaxrl/dqn.py \(it defines no "
                                         r"make_train\)$"):
        driver.patched("# mtdqn\n\nA README.\n")


def _row(r, widths, pj_one, ours_one, pj_study, ours_study, gflops=130.0):
    side = lambda pj, ours: {"purejaxrl": {"steps_per_s": pj, "last_return": 500.0},  # noqa: E731
                             "ours": {"steps_per_s": ours, "gflops": gflops}}
    return {"round": r, "peak": 200.0, "widths": widths, "one": side(pj_one, ours_one),
            "study": side(pj_study, ours_study)}


def test_the_table_reads_ratios_and_the_matmuls_time(capsys):
    driver.print_table([_row(1, "120,84", 50_000, 69_900, 60_000, 120_000),
                        _row(1, "8,8", 200_000, 400_000, 400_000, 750_000)])
    out = capsys.readouterr().out
    assert "| 1 | 120-84 | 50,000 | 69,900 | 1.398 | 60,000 | 120,000 | 2.000 | 130.0 of 200: 65.0% |" in out
    assert "| 1 | 8-8 |" in out and out.count("of 200") == 1  # no share of peak for the hollow network
    # one seed: 10 env steps per iteration, 200 µs against 50 with 8-8 layers, so 150 µs of matmuls
    assert "- one, purejaxrl: 200 / 50 / 150" in out
    assert "- study, ours: 1000 / 160 / 840" in out  # 120 env steps per iteration
