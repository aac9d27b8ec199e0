"""The run options: one declaration, its record read back (older records too), a resumed run's options as
``replace(stored, **given)``, and the CLI's flags built from it.  JAX-free: no training."""

from __future__ import annotations

import dataclasses

import pytest

from mtdqn.errors import ConfigError
from mtdqn.runoptions import RunOptions, resolve

USED = RunOptions(checkpoint_every=0, eval_episodes=3, devices=2, eval_every=500, patience=0, test_episodes=7,
                  keep_best=True)


@pytest.mark.parametrize("options", [RunOptions(devices=1), USED, RunOptions(eval_every=400, patience=2, devices=4),
                                     RunOptions(devices=1, probes=False)])
def test_from_record_reads_back_what_record_wrote(options):
    assert RunOptions.from_record(options.record()) == options


def test_options_added_later_are_recorded_only_when_used():
    assert RunOptions(devices=1).record() == {"options": {"checkpoint_every": 0, "eval_episodes": 10, "devices": 1,
                                                          "eval_every": 0}}
    assert USED.record()["options"]["keep_best"] is True and "patience" not in USED.record()["options"]
    assert RunOptions(probes=False).record()["options"]["probes"] is False  # on by default: recorded when off
    assert "probes" not in RunOptions(probes=True).record()["options"]


def test_an_old_record_reads_with_the_defaults_of_its_time():
    """Records from before eval_every, patience, test_episodes, keep_best: those were off; from before probes:
    on; from before the seed layout (no devices): the run trained on one device."""
    old = {"config": {}, "options": {"checkpoint_every": 200, "eval_episodes": 4}}
    assert RunOptions.from_record(old) == RunOptions(checkpoint_every=200, eval_episodes=4, devices=1)
    assert RunOptions.from_record({}) == RunOptions(devices=1)


def test_a_resumed_run_keeps_its_own_options_except_those_given():
    stored = RunOptions.from_record(USED.record())
    resumed = resolve({"eval_episodes": 10, "devices": 1}, stored)  # 10 is the default, but it was given
    assert resumed == dataclasses.replace(USED, eval_episodes=10, devices=1)
    assert resolve({}, stored) == USED
    assert resolve({"eval_every": 300}) == RunOptions(eval_every=300)  # a new run: over the defaults
    # the probes are of the whole run: a resumed run keeps them (given as they were is fine), a new one chooses
    with pytest.raises(ConfigError, match=r"--probes False: a resumed run keeps its own \(True\)"):
        resolve({"probes": False}, stored, resuming=True)
    assert resolve({"probes": True}, stored, resuming=True) == USED
    assert not resolve({"probes": False}, stored).probes


@pytest.mark.parametrize("given, message", [
    ({"eval_episodes": 0}, "--eval-episodes must be > 0, got 0"),
    ({"checkpoint_every": -1}, "--checkpoint-every must be >= 0"),
    ({"patience": 2}, "--patience 2 counts greedy evaluations during training: set --eval-every"),
    ({"patience": 2, "eval_every": 100, "checkpoint_every": 100}, "cannot be combined with --checkpoint-every"),
    ({"keep_best": True}, "--keep-best keeps the best"),
    ({"eval_epsiodes": 3}, "unknown run option 'eval_epsiodes'"),
])
def test_options_no_run_can_be_driven_with_are_one_line_errors(given, message):
    with pytest.raises(ConfigError, match=message):
        resolve(given)


def test_outcome_leaves_out_only_checkpoints_and_the_seed_layout():
    assert set(USED.outcome()) == {f.name for f in dataclasses.fields(RunOptions)} - {"checkpoint_every", "devices"}
    assert RunOptions(devices=1, checkpoint_every=100).outcome() == RunOptions(devices=4).outcome()
    assert RunOptions(eval_episodes=3).outcome() != RunOptions().outcome()


def test_the_cli_flags_come_from_the_one_declaration():
    """`mtdqn train`'s run options are RunOptions' fields, None where not given."""
    from mtdqn.cli.commands import ResumableOptions, given_options

    fields = dataclasses.fields(ResumableOptions)
    assert [f.name for f in fields] == [f.name for f in dataclasses.fields(RunOptions)]
    assert all(f.default is None for f in fields)
    assert given_options(ResumableOptions(eval_every=0, devices=None)) == {"eval_every": 0}


@pytest.mark.parametrize("command, note", [("train", "; a resumed run keeps its own unless given"),
                                           ("finetune", ""), ("extend", "")])
def test_help_shows_each_run_option_once_with_its_docstring_and_default(command, note, capsys):
    from mtdqn.cli import main

    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = " ".join(capsys.readouterr().out.replace("│", " ").split())
    for f in dataclasses.fields(RunOptions):
        assert text.count(f"--{f.name.replace('_', '-')} ") == 1, f.name
    assert f"Greedy episodes per task and seed in each evaluation. (default: 10{note})" in text
    assert f"GPUs; 0: as many as the seeds can use). (default: 0{note})" in text
