"""Population sweeps: numeric hyperparameters as traced values, many settings in one compiled program."""

from __future__ import annotations

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from mtdqn.config import DQNConfig, NetworkConfig, TrainConfig
from mtdqn.devices import population_layout
from mtdqn.train.agent import make_agent
from mtdqn.train.loop import make_population_trainer, make_trainer, population_keys, program_agent, seed_keys

SMALL = TrainConfig(
    tasks=("CartPole-v1", "Acrobot-v1"), steps=400, seeds=2, log_every=200, num_envs=4,
    network=NetworkConfig(hidden=(16,), adapter_width=8),
    dqn=DQNConfig(buffer_size=64, learning_starts=100, batch_size=8, eps_fraction=0.5),
)


def _with(cfg: TrainConfig, **dqn) -> TrainConfig:
    return dataclasses.replace(cfg, dqn=dataclasses.replace(cfg.dqn, **dqn))


def _train(trainer, keys, chunks: int):
    state = trainer.init(keys)
    n = trainer.agent.derived.iters_per_chunk
    for c in range(chunks):
        state, metrics = trainer.run_chunk(state, jnp.int32(c * n))
    return jax.tree.map(np.asarray, (state, metrics))


@pytest.mark.optimized  # bit for bit across two programs: XLA's older emitters (conftest) round them apart
@pytest.mark.slow
def test_a_member_is_its_run_alone_bit_for_bit():
    """Each member of a 4-member sweep (lr, gamma, tau, epsilon differ) ends with the state and metrics of the
    same setting trained alone with the same seeds: a block per device as alone, dummies where alone has them
    (3 seeds on 2 devices).  2 seeds on 2 devices is compared by the CLI sweep below (its last member with its
    run alone, file by file) and, member by member, by
    test_members_differing_in_task_weights_strategy_numbers_and_dropout_are_their_runs_alone.  One device ran
    here too until 2026-12-06 (27 s of the suite's optimized phase): every layout runs the same program, a loop
    over each device's blocks under shard_map (mtdqn.devices.over_members), one device a mesh of one; its
    entries are checked by test_a_populations_entries_are_its_indexed_rows."""
    seeds, devices = 3, 0
    base = dataclasses.replace(SMALL, seeds=seeds)
    members = [_with(base, lr=1e-3), _with(base, lr=3e-4, gamma=0.9, tau=0.5),
               _with(base, eps_start=0.5, eps_end=0.1, eps_fraction=0.2), _with(base, lr=3e-3, gamma=0.95)]
    agent = make_agent(base)
    population = make_population_trainer(agent, [make_agent(m).hypers for m in members], devices)
    layout = population.population
    pop_state, pop_metrics = _train(population, population_keys(agent.seeds, layout), 2)
    assert layout.members == 4 and layout.seeds == seeds
    for m, cfg in enumerate(members):
        alone = make_trainer(make_agent(cfg), devices)
        state, metrics = _train(alone, seed_keys(alone.agent.seeds), 2)
        mine = jax.tree.map(lambda x: x[layout.member_entries(m)], (pop_state, pop_metrics))
        for (path, a), b in zip(jax.tree_util.tree_leaves_with_path((state, metrics)), jax.tree.leaves(mine)):
            np.testing.assert_array_equal(a, b, err_msg=f"member {m}: {jax.tree_util.keystr(path)}")
    # the members did train differently: a member mixed up with another would fail above, and this says the
    # hyperparameters reached the loop at all
    first, second = (jax.tree.leaves(pop_state.params)[0][layout.member_entries(m)] for m in (0, 1))
    assert not np.array_equal(first, second)


def _assert_members_are_their_runs_alone(members: list[TrainConfig], devices: int = 0):
    """Train ``members`` as one population (its program: :func:`program_agent`'s) and each alone, 2 chunks;
    every member's state and metrics must be its run alone's bit for bit.  Returns the population's state."""
    agents = [make_agent(m) for m in members]
    population = make_population_trainer(program_agent(agents), [a.hypers for a in agents], devices)
    layout = population.population
    pop_state, pop_metrics = _train(population, population_keys(agents[0].seeds, layout), 2)
    for m, agent in enumerate(agents):
        alone = make_trainer(agent, devices)
        state, metrics = _train(alone, seed_keys(agent.seeds), 2)
        mine = jax.tree.map(lambda x: x[layout.member_entries(m)], (pop_state, pop_metrics))
        for (path, a), b in zip(jax.tree_util.tree_leaves_with_path((state, metrics)), jax.tree.leaves(mine)):
            np.testing.assert_array_equal(a, b, err_msg=f"member {m}: {jax.tree_util.keystr(path)}")
    return pop_state, layout


@pytest.mark.optimized  # bit for bit across two programs: XLA's older emitters (conftest) round them apart
@pytest.mark.slow
def test_members_differing_in_task_weights_strategy_numbers_and_dropout_are_their_runs_alone():
    """A sweep's newer traced values: a task's loss weight, CAGrad's c and step_size, the dropout rate (all
    above 0: a sweep mixing 0 in is refused).  The others differ from the second in one value each, and
    trained otherwise: each number reached the loop."""
    base = dataclasses.replace(SMALL, strategy="cagrad", task_weights=(1.0, 1.0))  # as a sweep over weights sets
    dropped = _with(base, dropout=0.2)
    members = [_with(base, dropout=0.1), dropped, dataclasses.replace(dropped, task_weights=(1.0, 0.3)),
               dataclasses.replace(dropped, strategy_args="c=0.1,step_size=0.3")]
    pop_state, layout = _assert_members_are_their_runs_alone(members)
    params = [jax.tree.leaves(pop_state.params)[0][layout.member_entries(m)] for m in range(len(members))]
    assert not any(np.array_equal(params[1], params[m]) for m in (0, 2, 3))


def test_task_weights_are_traced_when_the_config_sets_them_and_literals_else():
    """XLA compiles `sum` with literal weights differently from traced ones (the last bits of every parameter
    differ), so a run without --task-weights keeps its literal 1s, the numbers of every run made before weights
    were traced; one that sets them (every member of a sweep over them, and its run alone) traces them."""
    from mtdqn.train.hypers import hypers_of
    from mtdqn.train.step import loss_weights

    def traced(cfg: TrainConfig) -> bool:  # the weights are the traced hyperparameters' own, not a constant
        agent = make_agent(cfg)
        jaxpr = jax.make_jaxpr(lambda hp: loss_weights(agent, hp))(hypers_of(cfg)).jaxpr
        return jaxpr.outvars[0] in jaxpr.invars

    assert not traced(SMALL)
    assert traced(dataclasses.replace(SMALL, task_weights=(1.0, 1.0)))
    with pytest.raises(ValueError, match="all set --task-weights or all leave them out"):
        program_agent([make_agent(SMALL), make_agent(dataclasses.replace(SMALL, task_weights=(1.0, 2.0)))])
    with pytest.raises(ValueError, match="all have dropout or none"):
        program_agent([make_agent(SMALL), make_agent(_with(SMALL, dropout=0.1))])


@pytest.mark.parametrize("members, seeds, devices, expected", [
    (3, 2, 0, (2, 2, 1, 2, 6)),  # alone: 2 devices of 1 seed; 6 blocks over those 2 devices
    (3, 3, 0, (3, 4, 2, 2, 12)),  # alone: 2 devices of 2 (one dummy); 6 blocks
    (3, 1, 0, (1, 1, 1, 1, 3)),  # alone: 1 device; the 3 blocks take turns on it
    (2, 2, 1, (2, 2, 2, 1, 4)),  # alone on one device: both seeds one block
])
def test_population_layout(members, seeds, devices, expected):
    layout = population_layout(members, seeds, devices)
    assert (layout.seeds, layout.per_member, layout.block, layout.devices, layout.size) == expected
    assert layout.member_entries(members - 1).tolist() == [(members - 1) * layout.per_member + s
                                                           for s in range(seeds)]


# ---------------------------------------------------------------- `mtdqn train --sweep` and api.train(sweep=)

# SMALL as `mtdqn train` options.  Every sweep below has 4 members (2 x 2) of 2 seeds on the 2 devices: the optimized
# ones train the program of test_members_differing_in_task_weights_strategy_numbers_and_dropout_are_their_runs_alone
# (CAGRAD_ARGV), so the three share its compiled population and run alone; the others that of SMALL.
ARGV = ["train", "--tasks", "CartPole-v1,Acrobot-v1", "--steps", "400", "--log-every", "200", "--seeds", "2",
        "--hidden", "16", "--adapter-width", "8", "--buffer-size", "64", "--learning-starts", "100",
        "--batch-size", "8", "--eval-episodes", "2", "--progress", "False"]
# What makes that program other than SMALL's: CAGrad, task weights given (so traced) and dropout above 0 (its
# rate traced); their values are not part of it.
CAGRAD_ARGV = ["--strategy", "cagrad", "--task-weights", "1", "0.5", "--dropout", "0.2"]


def _cli_error(capsys, argv: list[str], code: int = 2) -> str:
    from mtdqn.cli import main

    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == code
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip() and not ln.startswith("warning: ")]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


@pytest.mark.parametrize("sweep, message", [
    (["hidden=16,32"], "compile separately"),
    (["batch_size=8,16"], "compile separately"),
    (["sharing=1,2"], "compile separately"),
    (["lr=fast,slow"], "values must be numbers"),
    (["lrr=1e-3,1e-4"], "--sweep lrr: unknown option; did you mean 'lr'? (a sweep varies lr, gamma"),
    (["learning-rate=1e-3,1e-4"], "did you mean 'lr'?"),  # another library's name: not learning_starts
    (["eps=0.1,0.2"], "did you mean 'eps_end'?"),  # what a sweep varies first: not steps
    (["weights.1=1,2"], "did you mean 'weight.1'?"),
    (["lr=1e-3,1.0000001e-3"], "read the same in the members' folder names (lr=0.001, lr=0.001)"),
    (["foo=1,2"], "--sweep foo: unknown option; a sweep varies lr, gamma, tau, eps_start, eps_end, eps_fraction, "
                  "dropout, weight.TASK or strategy.OPTION"),
    (["lr"], "expected NAME=V1,V2"),
    (["lr=1e-3,1e-3"], "distinct values"),
    (["lr=1e-3", "lr=1e-4"], "given twice"),
    (["lr=-1e-3,1e-3"], "--sweep member lr=-0.001: --lr must be a finite number > 0"),  # names the member
    (["gamma=0.9,1.5"], "--sweep member gamma=1.5: --gamma must be in"),
])
def test_bad_sweeps_are_one_line_errors_and_write_nothing(capsys, tmp_path, sweep, message):
    argv = [*ARGV, "--out", str(tmp_path / "s")]
    for spec in sweep:
        argv += ["--sweep", spec]
    assert message in _cli_error(capsys, argv)
    assert not (tmp_path / "s").exists()


def test_a_task_weight_swept_by_position_names_one_of_two_tasks_that_share_a_name():
    from mtdqn.sweepspec import member_configs

    cfg = TrainConfig(tasks=("CartPole-v1", "CartPole-v1:reward_scale=2"))
    members = member_configs(cfg, {"weight.2": (0.5, 2.0)})
    assert [(label, m.task_weights) for label, m in members] == [("weight.2=0.5", (1.0, 0.5)),
                                                                 ("weight.2=2", (1.0, 2.0))]


@pytest.mark.parametrize("extra, sweep, message", [
    ([], ["weight.Pong-MinAtar=1,2"], "no task named 'Pong-MinAtar' in --tasks (CartPole-v1, Acrobot-v1)"),
    ([], ["weight.CartPole-v1=-1,1"], "--sweep member weight.CartPole-v1=-1: --task-weights must be finite, >= 0"),
    ([], ["weight.CartPole-v1=0,1", "weight.Acrobot-v1=0,1"], "not all 0, got (0.0, 0.0)"),
    ([], ["weight.=1,2"], "expected weight.NAME with a task's name"),
    (["--task-weights", "1"], ["weight.Acrobot-v1=0.5,1"], "--task-weights has 1 value for 2 tasks"),  # an IndexError
    ([], ["task_weights=1,2"], "sweep one task's weight, weight.TASK=V1,V2"),
    ([], ["weight.3=1,2"], "--sweep weight.3: --tasks has 2 tasks; name one by its position, 1 to 2, or its name"),
    ([], ["weight.\u00b2=1,2"], "no task named '\u00b2' in --tasks"),  # a digit to str.isdigit, not to int()
    (["--tasks", "CartPole-v1,CartPole-v1:reward_scale=2"], ["weight.CartPole-v1=0.5,1"],
     "2 tasks named 'CartPole-v1' in --tasks (CartPole-v1, CartPole-v1:reward_scale=2); name one by its position "
     "in --tasks instead: weight.1 or weight.2"),
    ([], ["strategy_args=1,2"], "strategy.OPTION=V1,V2"),
    ([], ["strategy=1,2"], "compile separately"),
    ([], ["strategy.c=0.2,0.5"], "strategy sum has no option c; it has no real-valued options"),
    (["--strategy", "cagrad"], ["strategy.steps=10,20"], "cagrad's steps is not a real number"),
    (["--strategy", "cagrad"], ["strategy.c=-1,0.5"], "needs c >= 0"),
    ([], ["dropout=0.1,1"], "--sweep member dropout=1: --dropout must be in [0, 1)"),
    ([], ["dropout=0,0.1"], "--sweep dropout: mixes 0 (no dropout in the program) with rates above 0"),
    (["--lr", "0.01"], ["lr=1e-3,1e-4"],  # the sweep's rates trained, the option dropped silently
     "--sweep lr and --lr 0.01 both set lr: the sweep's values would replace the option's; drop one"),
    (["--lr", "5e-4"], ["lr=1e-3,1e-4"],  # the default, which the library cannot tell from no --lr: the flag's seen
     "--sweep lr and --lr 5e-4 both set lr"),
    (["--eps-fraction=0.1"], ["eps-fraction=0.2,0.5"], "--sweep eps_fraction and --eps-fraction 0.1 both set"),
    (["--strategy", "cagrad", "--strategy-args", "c=0.3,step_size=0.1"], ["strategy.c=0.1,0.2"],
     "--sweep strategy.c and --strategy-args c=0.3,step_size=0.1 both set c"),
])
def test_bad_sweeps_of_weights_strategy_options_and_dropout_are_one_line_errors(capsys, tmp_path, extra, sweep,
                                                                                 message):
    argv = [*ARGV, *extra, "--out", str(tmp_path / "s")]
    for spec in sweep:
        argv += ["--sweep", spec]
    assert message in _cli_error(capsys, argv)
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("entries", [[2, 3], [0, 1, 2, 3, 4, 5], [1, 2, 4, 5], [3], [0, 5, 1]])
@pytest.mark.parametrize("devices", [1, 2])
def test_a_populations_entries_are_its_indexed_rows(entries, devices):
    """The members and checkpoints of a sweep are taken from its state without copying it where they can
    (views of each CPU device's rows): the same rows as indexing, on one device or across two."""
    from mtdqn.devices import seed_sharding
    from mtdqn.train.sweep import _take

    state = {"replay": jnp.arange(6 * 5, dtype=jnp.float32).reshape(6, 5), "step": jnp.arange(6)}
    state = jax.device_put(state, seed_sharding(devices))
    taken = _take(state, np.array(entries))
    for name in state:
        np.testing.assert_array_equal(np.asarray(taken[name]), np.asarray(state[name])[entries])
    assert (taken["replay"] is state["replay"]) == (entries == list(range(6)))


@pytest.mark.parametrize("seeds, members, devices, copies", [
    (2, 1, 0, 2.0), (3, 1, 0, 5.0), (3, 1, 1, 2.0), (1, 4, 0, 2.0), (2, 4, 0, 2.0), (3, 4, 0, 2.5 * 4 / 3),
])
def test_the_memory_estimate_counts_the_layouts_copies(seeds, members, devices, copies):
    """Measured peaks (peak_state_copies' docstring): 2 copies where the devices divide the seeds, the state
    on every device and its padding for a run alone where they do not, a population's dummies."""
    from mtdqn.train.agent import peak_state_copies

    assert peak_state_copies(seeds, members, devices) == pytest.approx(copies)


@pytest.mark.slow
def test_a_sweep_that_does_not_fit_in_memory_is_refused_before_compiling(capsys, tmp_path, monkeypatch):
    """The --seeds estimate, times the members: each run alone fits (2 seeds, 0.9 GB of replay: 1.8 GB at its
    peak, and 1.2 GB for the process), the 2 members together do not, on a machine with 3.5 GB available."""
    monkeypatch.setattr("mtdqn.train.agent.available_host_memory", lambda: 3_500_000_000)
    argv = [*ARGV, "--buffer-size", "4000000", "--sweep", "lr=1e-3,1e-4", "--out", str(tmp_path / "s")]
    line = _cli_error(capsys, argv, code=1)  # the machine's limit, not bad input
    assert "--sweep's 2 settings x --seeds 2 need about 4.8 GB at their peak" in line
    assert not (tmp_path / "s").exists()


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """A 2 x 2 sweep through the CLI, and its last member, lr=0.0003,tau=1, trained alone (the last: a layout
    that mixed members up would show there, where it could not at the first; both its values differ from the
    defaults, so the member's config takes both).  (As a moe:2 mixture, so that the experts' rows were compared
    too, it cost 108 s instead of 52 in the suite's optimized phase, on the critical path: left shared.  With
    moe:2 the experts.parquet comparison passed on 2026-12-04 (4da70c8).)

    Over CAGRAD_ARGV, it trains the program test_members_differing_in_task_weights_strategy_numbers_and_dropout_-
    are_their_runs_alone compiles, on the same layout (over SMALL, its population, run alone and their
    initializations were compiled for this fixture alone: ~35 s of the optimized phase); SMALL's own program
    is compared member by member in test_a_member_is_its_run_alone_bit_for_bit, on the padded layout.  Not
    over gamma (until 2026-12-06): the evaluation and the gradient probe are compiled with a member's discounts,
    so the members of the other gamma compiled both again (~10 s), while the member compared had the default
    gamma and the others' files were never read; gamma reaching a member is compared in those tests."""
    from mtdqn.cli import main

    root = tmp_path_factory.mktemp("sweep")
    argv = [*ARGV, *CAGRAD_ARGV, "--eval-every", "200"]
    main([*argv, "--sweep", "lr=1e-3,3e-4", "--sweep", "tau=0.5,1", "--out", str(root / "sweep")])
    main([*argv, "--lr", "3e-4", "--tau", "1", "--out", str(root / "alone")])
    return root


@pytest.mark.optimized  # bit for bit across two programs: XLA's older emitters (conftest) round them apart
@pytest.mark.slow
def test_a_member_directory_is_its_run_alone(swept):
    """The member's directory holds the run alone's config, metrics, evaluations, probes (the gradient probe at
    every evaluation, as a run alone takes it, and at the end; CKA) and final weights exactly."""
    from mtdqn.results import Run

    member, alone = Run(swept / "sweep" / "lr=0.0003,tau=1"), Run(swept / "alone")
    assert member.config == alone.config
    assert member.summary["final_eval"] == alone.summary["final_eval"]
    assert member.summary["final_score"] == alone.summary["final_score"]
    for name in ("metrics.parquet", "evals.parquet", "grad_probe.parquet", "grad_tasks.parquet", "grad_pairs.parquet",
                 "cka.parquet"):
        mine, theirs = pd.read_parquet(member.path / name), pd.read_parquet(alone.path / name)
        pd.testing.assert_frame_equal(mine, theirs)
    weights = [jax.tree.leaves(r.agent().params) for r in (member, alone)]
    for a, b in zip(*weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert json.loads((member.path / "config.json").read_text())["population"] == ".."  # RunDir.population
    record = json.loads((swept / "sweep" / "sweep.json").read_text())
    assert record["members"] == ["lr=0.001,tau=0.5", "lr=0.001,tau=1", "lr=0.0003,tau=0.5", "lr=0.0003,tau=1"]


@pytest.mark.optimized  # bit for bit across two programs: XLA's older emitters (conftest) round them apart
@pytest.mark.slow
def test_a_cli_sweep_of_a_weight_and_dropout_writes_members_that_are_their_runs_alone(tmp_path, swept):
    """`--sweep weight.Acrobot-v1=0.5,1 --sweep dropout=0.1,0.2`: the member weight.Acrobot-v1=0.5,dropout=0.2
    is `--task-weights 1 0.5 --dropout 0.2` trained alone: config, metrics and final weights.  The program is
    the one of test_members_differing_in_task_weights_strategy_numbers_and_dropout_are_their_runs_alone.  That
    run alone (with --lr 3e-4 --tau 1, given here to the whole sweep) is the one `swept` trained."""
    from mtdqn.cli import main
    from mtdqn.results import Run

    argv = [*ARGV, "--strategy", "cagrad", "--lr", "3e-4", "--tau", "1"]
    main([*argv, "--sweep", "weight.Acrobot-v1=0.5,1", "--sweep", "dropout=0.1,0.2",
          "--out", str(tmp_path / "sweep")])
    member, alone = Run(tmp_path / "sweep" / "weight.Acrobot-v1=0.5,dropout=0.2"), Run(swept / "alone")
    assert alone.config.task_weights == (1.0, 0.5) and alone.config.dqn.dropout == 0.2
    assert member.config == alone.config
    pd.testing.assert_frame_equal(pd.read_parquet(member.path / "metrics.parquet"),
                                  pd.read_parquet(alone.path / "metrics.parquet"))
    for a, b in zip(jax.tree.leaves(member.agent().params), jax.tree.leaves(alone.agent().params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.fixture(scope="module")
def api_sweep(tmp_path_factory):
    """api.train(sweep=) of SMALL's program: a 2 x 2 sweep over tau and gamma with an evaluation every logging
    window.  Also the uninterrupted sweep test_a_killed_sweep_resumes_to_the_same_numbers resumes to (until
    2026-12-06 it trained its own through the CLI: a fourth sweep in this module's second phase, ~5 s)."""
    from mtdqn import api

    return api.train(SMALL.tasks, steps=400, seeds=2, log_every=200, hidden=(16,), adapter_width=8, buffer_size=64,
                     learning_starts=100, batch_size=8, eval_episodes=2, eval_every=200, progress=False,
                     sweep={"tau": [0.5, 1.0], "gamma": [0.9, 0.99]}, out=tmp_path_factory.mktemp("api") / "s")


@pytest.mark.slow
def test_a_killed_sweep_resumes_to_the_same_numbers(tmp_path, monkeypatch, api_sweep, capsys):
    """Killed right after the population's first checkpoint: --resume ends with every member's numbers of the
    uninterrupted sweep (api_sweep's: the same configs; its evaluations during training change no number, and
    an evaluation's episodes are drawn from the seed and the step alone), each member directory an ordinary
    finished run; until then a member's checkpoint is the population's (RunDir.population)."""
    import mtdqn
    from mtdqn.checkpoint import save_checkpoint
    from mtdqn.cli import main
    from mtdqn.errors import ConfigError
    from mtdqn.results import Run

    argv = [*ARGV, "--sweep", "tau=0.5,1", "--sweep", "gamma=0.9,0.99", "--checkpoint-every", "200"]

    def killed_after_saving(*args, **kwargs):
        save_checkpoint(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr("mtdqn.train.sweep.save_checkpoint", killed_after_saving)
    with pytest.raises(SystemExit):
        main([*argv, "--out", str(tmp_path / "killed")])
    monkeypatch.undo()
    labels = [r.path.name for r in api_sweep]
    assert len(labels) == 4 and not any((tmp_path / "killed" / label / "summary.json").exists() for label in labels)
    with pytest.raises(ConfigError, match=r"unfinished member of the population in .*killed, whose checkpoint holds "
                                          r"it until it finishes; resume it, --resume .*killed$"):
        mtdqn.load_agent(tmp_path / "killed" / labels[0])
    capsys.readouterr()
    monkeypatch.setattr("mtdqn.train.sweep.save_checkpoint", killed_after_saving)  # resumed, killed again after
    with pytest.raises(SystemExit):  # its next (its last) checkpoint, with another option: the records state it
        main(["train", "--resume", str(tmp_path / "killed"), "--progress", "False", "--checkpoint-every", "400"])
    monkeypatch.undo()
    assert "mtdqn: resuming from env step 200 of " in capsys.readouterr().out  # the population's first checkpoint
    for record in [tmp_path / "killed" / "sweep.json", *(tmp_path / "killed" / label / "config.json"
                                                          for label in labels)]:  # as the checkpoint holds it
        assert json.loads(record.read_text())["options"]["checkpoint_every"] == 400
    # a member's record or the sweep's own damaged: one line before anything trains (it was said after the next
    # chunk and checkpoint; a tune batch's trials then all failed for good)
    member, other, sweep = (tmp_path / "killed" / labels[0] / "config.json", tmp_path / "killed" / labels[1] /
                            "config.json", tmp_path / "killed" / "sweep.json")
    latest = tmp_path / "killed" / "checkpoints" / "latest.json"
    kept = {path: path.read_text() for path in (member, sweep, latest)}
    for damage, said in ((lambda: member.write_text(other.read_text()), "config.json holds another run's config"),
                         (member.unlink, "is not a run directory (no config.json): the population in"),
                         (lambda: sweep.write_text(""), "sweep.json is not valid JSON")):
        damage()
        with pytest.raises(SystemExit) as exc:
            main(["train", "--resume", str(tmp_path / "killed"), "--progress", "False"])
        assert exc.value.code == 2 and said in capsys.readouterr().err
        assert latest.read_text() == kept[latest]  # nothing trained, no checkpoint written
        for path, text in kept.items():
            path.write_text(text)
    main(["train", "--resume", str(tmp_path / "killed"), "--progress", "False"])
    for whole in api_sweep:
        resumed = Run(tmp_path / "killed" / whole.path.name)
        assert whole.config == resumed.config
        pd.testing.assert_frame_equal(pd.read_parquet(whole.path / "metrics.parquet"),
                                      pd.read_parquet(resumed.path / "metrics.parquet"))
        assert whole.summary["final_eval"] == resumed.summary["final_eval"]
        for a, b in zip(jax.tree.leaves(whole.agent().params), jax.tree.leaves(resumed.agent().params)):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.slow
def test_the_python_api_takes_a_sweep(tmp_path, api_sweep):
    """api.train(sweep={...}) returns one Run per member; a bad name is the CLI's one line.  Each member takes
    the gradient probe at its evaluation during training and at the end, as its run alone does."""
    from mtdqn import api
    from mtdqn.errors import ConfigError

    with pytest.raises(ConfigError, match="compile separately"):
        api.train(("CartPole-v1",), steps=400, sweep={"hidden": [16, 32]}, out=tmp_path / "bad")
    with pytest.raises(ConfigError, match="--sweep lr and --lr 0.01 both set lr"):
        api.train(("CartPole-v1",), steps=400, sweep={"lr": [1e-3]}, lr=1e-2, out=tmp_path / "bad")
    assert not (tmp_path / "bad").exists()
    runs = api_sweep  # SMALL's program
    assert [r.path.name for r in runs] == ["tau=0.5,gamma=0.9", "tau=0.5,gamma=0.99", "tau=1,gamma=0.9",
                                           "tau=1,gamma=0.99"]
    assert [(r.config.dqn.tau, r.config.dqn.gamma) for r in runs] == [(0.5, 0.9), (0.5, 0.99), (1.0, 0.9), (1.0, 0.99)]
    for r in runs:
        probe = pd.read_parquet(r.path / "grad_probe.parquet")
        assert sorted(set(r.evals["step"])) == [200, 400] and sorted(set(probe["step"])) == [200, 400]
    # the population's evaluation (and gradient probe) at 200 is timed once; every member's summary states it
    assert len({r.summary["eval_s"] for r in runs}) == 1 and runs[0].summary["eval_s"] > 0


def test_weights_and_strategy_options_become_the_members_own_configs():
    """``weight.TASK`` sets that task's --task-weights entry (the others kept), ``strategy.KEY`` that option of
    --strategy-args (the others kept, in place): each member's config is its run alone's, read without JAX."""
    import subprocess
    import sys

    code = ("import sys\nfrom mtdqn.sweepspec import parse_sweep, member_configs\nfrom mtdqn.config import TrainConfig\n"
            "cfg = TrainConfig(tasks=('CarOnHill-v0:gamma=0.95', 'Acrobot-v1', 'CartPole-v1'), "
            "task_weights=(3.0, 1.0, 1.0), strategy='cagrad', strategy_args='c=0.5,steps=10')\n"
            "sweep = parse_sweep(['--weight.CarOnHill-v0=0.5,2', 'strategy.c=0.2', 'strategy.step-size=0.1', "
            "'dropout=0.2,0.1'])\n"
            "for label, m in member_configs(cfg, sweep):\n"
            "    print(label, m.task_weights, m.strategy_args, m.dqn.dropout)\n"
            "print('jax' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == [
        "weight.CarOnHill-v0=0.5,strategy.c=0.2,strategy.step_size=0.1,dropout=0.2 (0.5, 1.0, 1.0) "
        "c=0.2,steps=10,step_size=0.1 0.2",
        "weight.CarOnHill-v0=0.5,strategy.c=0.2,strategy.step_size=0.1,dropout=0.1 (0.5, 1.0, 1.0) "
        "c=0.2,steps=10,step_size=0.1 0.1",
        "weight.CarOnHill-v0=2,strategy.c=0.2,strategy.step_size=0.1,dropout=0.2 (2.0, 1.0, 1.0) "
        "c=0.2,steps=10,step_size=0.1 0.2",
        "weight.CarOnHill-v0=2,strategy.c=0.2,strategy.step_size=0.1,dropout=0.1 (2.0, 1.0, 1.0) "
        "c=0.2,steps=10,step_size=0.1 0.1",
        "False"]


def test_the_sweep_spec_is_read_without_jax():
    """The CLI reads a sweep before JAX starts (to plan the devices): parsing must not import it."""
    import subprocess
    import sys

    code = ("import sys\nfrom mtdqn.sweepspec import parse_sweep, member_configs\nfrom mtdqn.config import TrainConfig\n"
            "sweep = parse_sweep(['lr=1e-4,3e-4', 'gamma=0.98,0.99'])\n"
            "print([label for label, _ in member_configs(TrainConfig(), sweep)], 'jax' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ("['lr=0.0001,gamma=0.98', 'lr=0.0001,gamma=0.99', 'lr=0.0003,gamma=0.98', "
                   "'lr=0.0003,gamma=0.99'] False")


def test_seeds_the_devices_do_not_divide_are_estimated_with_their_whole_copies(monkeypatch):
    """3 seeds on the suite's 2 CPU devices keep the state whole on each (5 copies at the peak, measured 4.96):
    refused where 4 seeds (2 copies) fit, and the line says a multiple of 2 or --devices 1 would (both do)."""
    from mtdqn.errors import InsufficientResources

    monkeypatch.setattr("mtdqn.train.agent.available_host_memory", lambda: 1_600_000_000)
    cfg = TrainConfig(tasks=("CartPole-v1",), seeds=4, dqn=DQNConfig(buffer_size=1_000_000))
    make_agent(cfg)  # 4 x 2 x 41 MB and the process's 1.2 GB
    with pytest.raises(InsufficientResources, match=r"--seeds 3 need about 1.8 GB at their peak .*\(5 x 41.4 MB per "
                                                    r"seed, .*use fewer seeds, a multiple of 2 or --devices 1 \("):
        make_agent(dataclasses.replace(cfg, seeds=3))
    make_agent(dataclasses.replace(cfg, seeds=3), devices=1)  # as the advice says: 2 copies


def test_a_sweeps_values_are_a_list_of_some():
    """mtdqn.train(sweep={"lr": 1e-3}) ran a one-member sweep, and {"lr": []} asked for distinct values."""
    from mtdqn.errors import ConfigError
    from mtdqn.sweepspec import check_sweep

    with pytest.raises(ConfigError, match=r"^--sweep lr: expected a list of values, got 0.001$"):
        check_sweep({"lr": 1e-3})
    with pytest.raises(ConfigError, match=r"^--sweep lr: no values; give at least one$"):
        check_sweep({"lr": []})
    assert check_sweep({"lr": np.array([1e-3, 3e-4])}) == {"lr": (1e-3, 3e-4)}  # any iterable of numbers
