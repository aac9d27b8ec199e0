"""A budget in which no update runs is refused before anything is written; one with few updates is warned.

The count of updates is checked against the loop's own rule, iteration by
iteration, and the smallest budget the message suggests is checked to be
exactly the smallest that makes an update.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
import warnings

import pytest

from mtdqn.cli import main
from mtdqn.config import DQNConfig, TrainConfig, derive, updates_before_iteration
from mtdqn.budget import check_train_budget
from mtdqn.errors import ConfigError, FewUpdatesWarning


def _loop_updates(cfg: TrainConfig) -> int:
    """Updates as the compiled loop decides them (train/step.py `iteration`), one iteration at a time."""
    d = derive(cfg)
    return sum(t >= d.learning_starts_iters and t % d.train_every_iters == 0 for t in range(d.total_iters))


CASES = list(itertools.product((1, 4), (0, 100, 999, 1000, 5000), (1, 2), (100, 999, 1000, 5000, 5001, 12_000),
                               (500, 5000)))


@pytest.mark.parametrize("envs, starts, every, steps, log_every", CASES)
def test_update_count_is_the_loops(envs, starts, every, steps, log_every):
    cfg = TrainConfig(tasks=("CartPole-v1",), steps=steps, num_envs=envs, log_every=log_every,
                      dqn=DQNConfig(learning_starts=starts, train_every=every * envs))
    d = derive(cfg)
    updates = _loop_updates(cfg)
    assert updates_before_iteration(d, d.total_iters) == updates
    # the count the linear rate schedule decays over and the report's Methods state (one more where the learning
    # start was no multiple of the update interval: 63 for 62)
    assert d.total_updates == max(1, updates)
    if updates == 0:
        with pytest.raises(ConfigError, match="no update would run") as exc:
            check_train_budget(cfg)
        message = str(exc.value)
        suggested, trains = (int(n.replace(",", "")) for n in
                             re.search(r"use --steps >= ([\d,]+) \(it trains ([\d,]+)", message).groups())
        assert _loop_updates(dataclasses.replace(cfg, steps=suggested)) > 0  # the suggestion is enough ...
        assert _loop_updates(dataclasses.replace(cfg, steps=suggested - 1)) == 0  # ... and the least that is
        assert derive(dataclasses.replace(cfg, steps=suggested)).env_steps == trains
        d = derive(cfg)  # the first update comes after the vector step of iteration `first`
        first = next(t for t in range(10**6) if t >= d.learning_starts_iters and t % d.train_every_iters == 0)
        assert f"after env step {(first + 1) * envs:,} per task" in message
    else:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            check_train_budget(cfg)
        few = [w for w in caught if issubclass(w.category, FewUpdatesWarning)]
        assert len(few) == (updates < 100)
        if few:
            assert f"makes only {updates} gradient update" in str(few[0].message)


def test_cli_warning_is_one_line_before_the_run(tmp_path, capsys):
    """The warning is printed as one `warning:` line, once, where the run is refused only after it (an import
    path that does not import, refused where the run is built; the check runs before JAX starts and there); a
    run refused before JAX starts (the folder holds a run) prints its error alone."""
    held = tmp_path / "run"
    held.mkdir()
    (held / "config.json").write_text("{}")
    few = ["--steps", "1000", "--log-every", "1000", "--learning-starts", "900", "--progress", "False"]
    for argv, refusal in ((["--tasks", "CartPole-v1", "--out", str(held)], "already holds a run"),
                          (["--tasks", "no_such_module_here:make", "--out", str(tmp_path / "new")],
                           "cannot import 'no_such_module_here'")):
        with pytest.raises(SystemExit) as exc:
            main(["train", *argv, *few])
        assert exc.value.code == 2
        lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
        if refusal == "already holds a run":
            assert len(lines) == 1 and lines[0].startswith("error: ") and refusal in lines[0], lines
            continue
        assert lines[0] == ("warning: --steps 1,000 makes only 25 gradient updates (fewer than 100: one every "
                            "--train-every 4 env steps per task after --learning-starts 900): the agent can hardly "
                            "learn")
        assert len(lines) == 2 and lines[1].startswith("error: ") and refusal in lines[1], lines
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("options, variant, where", [
    ({"log_every": 1000}, {}, "x.toml: steps: "),
    ({"log_every": 1000, "learning_starts": 2000}, {}, "x.toml: options: "),
    ({"log_every": 1000, "learning_starts": 100}, {"learning_starts": 2000}, "x.toml: variants.b: "),
])
def test_a_study_blames_what_moved_learning_starts(options, variant, where):
    from mtdqn.studies.spec import build_spec

    with pytest.raises(ConfigError, match="no update would run") as exc:
        build_spec({"tasks": ["CartPole-v1"], "steps": 1000, "seeds": 1, "options": options,
                    "variants": {"b": {"sharing": "shared", **variant}}}, "x.toml", "x")
    assert str(exc.value).startswith(where)
    assert str(exc.value).endswith(" or lower learning_starts")  # the study file's own key (no such flag)


def test_a_presets_refusal_offers_no_learning_start_to_lower():
    """`mtdqn study quick --steps 5000` offered "or lower --learning-starts", which `mtdqn study` has no flag for."""
    from mtdqn.studies import resolve_spec

    with pytest.raises(ConfigError) as exc:
        resolve_spec("quick", {"steps": 5000, "seeds": 1})
    assert str(exc.value).endswith("(learning_starts 5,000); use --steps >= 5,001 (it trains 10,000: whole "
                                   "--log-every windows of 5,000)"), str(exc.value)


def test_a_budget_within_dwas_first_two_windows_is_warned_that_it_trains_sum():
    """dwa's weights are 1 until two windows of updates complete: a run of no more updates is sum under dwa's
    name (a walk-through's 750 updates against window 1,000 matched --strategy sum to the last digit)."""
    cfg = TrainConfig(tasks=("CartPole-v1", "Acrobot-v1"), steps=4000, log_every=2000, strategy="dwa",
                      dqn=DQNConfig(learning_starts=1000))

    def warned(cfg: TrainConfig) -> list[str]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            check_train_budget(cfg)
        return [str(w.message) for w in caught if issubclass(w.category, FewUpdatesWarning)]

    assert warned(cfg) == ["--strategy dwa: --steps 4,000 makes 750 gradient updates, and its weights are 1 until "
                           "two windows of 1,000 updates complete (--strategy-args window=N): the run trains as "
                           "--strategy sum"]
    assert warned(dataclasses.replace(cfg, strategy_args="window=374")) == []  # 2 x 374 < 750: it reweighs
    assert warned(dataclasses.replace(cfg, strategy_args="window=375"))  # 750 updates: the 751st would be the first
    assert warned(dataclasses.replace(cfg, strategy="gradnorm")) == []  # acts from its first update
