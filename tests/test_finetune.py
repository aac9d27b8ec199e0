"""Fine-tuning and extending: what is frozen stays bit-identical, LoRA trains only its factors and the new
parts, kept heads are the source's exactly, early stopping restores the best parameters, a fine-tuned run is
an ordinary run (evaluate, resume, load_agent), and older run directories still verify.

The source run is a freshly initialized network saved as a checkpoint (no training, no compile of the
loop): fine-tuning only needs its weights.  Fine-tuned runs are a few hundred env steps.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import jax
import numpy as np
import optax
import pandas as pd
import pytest

import mtdqn
from mtdqn.checkpoint import load_checkpoint, save_checkpoint
from mtdqn.cli import main
from mtdqn.config import (
    DQNConfig, FinetuneConfig, NetworkConfig, TrainConfig, config_from_dict, config_hash, config_to_dict, derive,
)
from mtdqn.errors import ConfigError
from mtdqn.evaluate import EvalStream, eval_seed, evaluate_params
from mtdqn.finetune import param_labels, partitioned_optimizer, updates_before
from mtdqn.io import write_json
from mtdqn.networks import init_params, make_architecture
from mtdqn.tasks import make_task_set
from mtdqn.train.agent import make_agent
from mtdqn.train.early_stop import EarlyStopping
from mtdqn.train.loop import make_trainer, seed_keys
from mtdqn.rundir import RunDir
from mtdqn.train.evaluate_command import evaluate_run
from mtdqn.train.run import train
from mtdqn.graft import finetune_config, graft, load_source
from mtdqn.transfer import extend, finetune

DQN = DQNConfig(buffer_size=256, learning_starts=100, batch_size=16, lr_schedule="constant")
SOURCE = TrainConfig(tasks=("CartPole-v1", "Acrobot-v1"), steps=1200, log_every=400, seeds=2,
                     network=NetworkConfig(hidden=(32, 32), adapter_width=16), dqn=DQN)
TINY = TrainConfig(tasks=("CartPole-v1", "MountainCar-v0"), steps=800, log_every=400, seeds=2, dqn=DQN)


def saved_run(run_dir: Path, cfg: TrainConfig = SOURCE) -> Path:
    """A run directory holding ``cfg``'s freshly initialized state as its checkpoint (as train writes it)."""
    trainer = make_trainer(make_agent(cfg))
    state = trainer.init(seed_keys(trainer.agent.seeds))
    write_json(run_dir / "config.json", {"config": config_to_dict(cfg), "config_hash": config_hash(cfg)})
    save_checkpoint(run_dir, trainer.agent.cfg, state, 1, {"options": {"checkpoint_every": 0, "eval_episodes": 2}})
    return run_dir


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    return saved_run(tmp_path_factory.mktemp("source"))


def _bits(x) -> np.ndarray:
    return np.asarray(x).view(np.uint8)


def _same(a, b) -> bool:
    return all(np.array_equal(_bits(x), _bits(y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _size(tree) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


@pytest.mark.slow
def test_frozen_trunk_is_bit_identical_and_the_run_is_ordinary(source, tmp_path):
    result = finetune(TINY, source, tmp_path / "ft", freeze="trunk", keep_heads=True, progress=False,
                      eval_episodes=2)
    src, net = mtdqn.load_agent(source), mtdqn.load_agent(tmp_path / "ft")  # load_agent works on it
    assert _same(src.params["torso"], net.params["torso"])  # frozen: every bit
    agent = make_agent(RunDir(tmp_path / "ft").config())  # TINY's Polyak target (tau 0.005, every update)
    trainer = make_trainer(agent)
    state, _ = load_checkpoint(tmp_path / "ft", trainer.agent.cfg, jax.eval_shape(trainer.init, seed_keys(agent.seeds)))
    assert _same(src.params["torso"], state.target_params["torso"])  # and so is its target copy
    cart = 0  # CartPole-v1 is task 0 of both runs; its head was kept, then trained
    kept = (slice(None), cart, slice(None), slice(0, 2))
    assert not np.array_equal(src.params["heads"]["kernel"][kept], net.params["heads"]["kernel"][kept])
    # Trained: adapters (4 padded inputs -> 16) and heads (32 -> 3 padded actions) of 2 tasks, nothing else.
    assert result.summary["transfer"]["trainable_params"] == 2 * (4 * 16 + 16) + 2 * (32 * 3 + 3)
    assert result.summary["transfer"]["kept_tasks"] == ["CartPole-v1"]
    record = json.loads((tmp_path / "ft" / "config.json").read_text())
    assert record["config"]["finetune"]["freeze"] == "trunk" and "transfer" in result.summary
    evaluated = evaluate_run(tmp_path / "ft", episodes=2)  # evaluate verifies its config hash
    assert set(evaluated["tasks"]) == set(TINY.tasks)


@pytest.mark.slow
def test_lora_trains_only_its_factors_and_the_new_adapter_and_head(source, tmp_path, capsys):
    """(``source`` has a checkpoint and no summary.json, as a stopped run: the command then notes, as evaluate and
    act do, that its checkpoint is not the run's end.)"""
    out = tmp_path / "lora"
    main(["finetune", "--from", str(source), "--tasks", "MountainCar-v0", "--lora", "2", "--steps", "800",
                    "--log-every", "400", "--buffer-size", "256", "--learning-starts", "100", "--batch-size", "16",
                    "--seeds", "2", "--eval-episodes", "2", "--eval-every", "400", "--out", str(out),
                    "--progress", "False"])
    # MountainCar's adapter (2 -> 16) and head (32 -> 3), and rank-2 factors of both 16->32 and 32->32 layers.
    expected = (2 * 16 + 16) + (32 * 3 + 3) + (16 * 2 + 2 * 32) + (32 * 2 + 2 * 32)
    said = capsys.readouterr()
    assert f"(LoRA rank 2, the trunk frozen): trains {expected:,} of" in said.out
    assert "MountainCar-v0           final score (the final evaluation alone) per seed: " in said.out  # as a
    # resumed fine-tune printed it, and a plain one did not
    step = json.loads((out / "start.json").read_text())["source_step"]  # the checkpoint it started from, recorded
    assert step == mtdqn.checkpoint.checkpoint_meta(source)["iteration"] * 4  # (4 envs) and named by the note
    assert f"note: {source} is unfinished: its checkpoint is at step {step:,} of " in said.err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["transfer"]["trainable_params"] == expected
    src, net = mtdqn.load_agent(source), mtdqn.load_agent(out)
    for name in ("layer_0", "layer_1"):
        layer = net.params["torso"][name]
        assert _same({k: layer[k] for k in ("kernel", "bias")}, src.params["torso"][name])  # W frozen
        assert np.abs(np.asarray(layer["lora_b"])).max() > 0  # B started at 0: it trained
    # A LoRA run as a source: the next run's trunk is its W + A B.
    again = load_source(out)
    agent = make_agent(finetune_config(dataclasses.replace(TINY, tasks=("CartPole-v1",)), out, again.cfg))
    state, _ = graft(agent, again, 2, make_trainer(agent).init(seed_keys(agent.seeds)))
    layer = jax.tree.map(np.asarray, net.params["torso"]["layer_1"])
    np.testing.assert_allclose(np.asarray(state.params["torso"]["layer_1"]["kernel"]),
                               layer["kernel"] + layer["lora_a"] @ layer["lora_b"], rtol=1e-6)


@pytest.mark.slow
def test_finetune_regularizes_with_dropout_and_weight_decay(source, tmp_path):
    def run(out, dropout):
        main(["finetune", "--from", str(source), "--tasks", "CartPole-v1", "--freeze", "bottom:1", "--dropout",
              dropout, "--optimizer", "adamw", "--weight-decay", "0.01", "--steps", "400", "--log-every", "200",
              "--seeds", "2", "--buffer-size", "256", "--learning-starts", "100", "--batch-size", "16",
              "--eval-episodes", "2", "--out", str(out), "--progress", "False"])

    out = tmp_path / "reg"
    run(out, "0.2")
    run(tmp_path / "plain", "0")  # the same run without dropout trains other weights: dropout reached the update
    assert not _same(mtdqn.load_agent(out).params["torso"]["layer_1"],
                     mtdqn.load_agent(tmp_path / "plain").params["torso"]["layer_1"])
    dqn = json.loads((out / "config.json").read_text())["config"]["dqn"]
    assert (dqn["dropout"], dqn["optimizer"], dqn["weight_decay"]) == (0.2, "adamw", 0.01)
    src, net = mtdqn.load_agent(source), mtdqn.load_agent(out)  # acts with the whole network, like any run
    assert _same(src.params["torso"]["layer_0"], net.params["torso"]["layer_0"])  # bottom:1: frozen, every bit
    assert not _same(src.params["torso"]["layer_1"], net.params["torso"]["layer_1"])  # the rest trained


@pytest.mark.slow
def test_trunk_until_gates_the_trunk_inside_the_optimizer():
    cfg = TrainConfig(tasks=("CartPole-v1",), steps=400, num_envs=4,
                      network=NetworkConfig(hidden=(8,), adapter_width=4),
                      dqn=DQNConfig(learning_starts=0, train_every=4, lr_schedule="constant"),
                      finetune=FinetuneConfig(source="x", freeze="trunk-until:40"))
    d = derive(cfg)
    assert updates_before(d, 4, 40) == 10
    arch = make_architecture(make_task_set(cfg.tasks), cfg.network)
    params = init_params(arch, jax.random.PRNGKey(0))
    opt = partitioned_optimizer(cfg.finetune, arch, d, 4, 1e-3, optax.adam)
    state, trunk = opt.init(params), [params["torso"]]
    heads = [params["heads"]]
    grads = jax.tree.map(np.ones_like, params)

    @jax.jit  # one program: run eagerly, each of the partitioned Adam's ~70 operations compiles on first use
    def step(state, params):
        updates, state = opt.update(grads, state, params)
        return state, optax.apply_updates(params, updates)

    for _ in range(12):
        state, params = step(state, params)
        trunk.append(params["torso"])
        heads.append(params["heads"])
    assert all(_same(trunk[0], t) for t in trunk[:11])  # 10 updates before env step 40: the trunk is still
    assert not _same(trunk[10], trunk[11]) and not _same(heads[0], heads[1])  # then it moves; heads from the start


def test_updates_before_counts_the_loops_updates():
    for ls, te, envs, steps in [(100, 4, 4, 400), (0, 8, 4, 40), (5000, 4, 4, 4000), (30, 8, 2, 123)]:
        cfg = TrainConfig(tasks=("CartPole-v1",), steps=1000, num_envs=envs,
                          dqn=DQNConfig(learning_starts=ls, train_every=te, batch_size=16, buffer_size=64))
        d = derive(cfg)
        brute = sum(1 for t in range(-(-steps // envs))
                    if t >= d.learning_starts_iters and t % d.train_every_iters == 0)
        assert updates_before(d, envs, steps) == brute


def test_the_announcement_names_the_trunks_own_learning_rate():
    """It named --freeze and not --trunk-lr, the other half of how the pretrained trunk trains."""
    from mtdqn.train.agent import describe

    cfg = finetune_config(TINY, "src", SOURCE, freeze="bottom:1", trunk_lr=1e-4)
    assert "src's trunk (freeze=bottom:1, trunk lr 0.0001): trains" in describe(make_agent(cfg))
    assert "(freeze=bottom:1): trains" in describe(make_agent(finetune_config(TINY, "src", SOURCE, freeze="bottom:1")))


@pytest.mark.slow
def test_labels_of_bottom_k_and_a_lower_trunk_lr():
    arch = make_architecture(make_task_set(("CartPole-v1",)), NetworkConfig(hidden=(8, 8), adapter_width=4))
    params = init_params(arch, jax.random.PRNGKey(0))
    labels = param_labels(FinetuneConfig(source="x", freeze="bottom:1"), arch, params)
    assert set(jax.tree.leaves(labels["torso"]["layer_0"])) == {"frozen"}
    assert set(jax.tree.leaves(labels["torso"]["layer_1"])) == {"trunk"}
    assert set(jax.tree.leaves(labels["heads"])) == set(jax.tree.leaves(labels["adapters"])) == {"train"}
    d = derive(TrainConfig(tasks=("CartPole-v1",), dqn=DQNConfig(lr_schedule="constant")))
    opt = partitioned_optimizer(FinetuneConfig(source="x", trunk_lr=1e-5), arch, d, 4, 1e-3, optax.adam)
    updates, _ = opt.update(jax.tree.map(np.ones_like, params), opt.init(params), params)
    # Adam's first step is lr * sign(g): the trunk moves by its own lr, the rest by --lr.
    np.testing.assert_allclose(np.abs(updates["torso"]["layer_1"]["kernel"]), 1e-5, rtol=1e-3)
    np.testing.assert_allclose(np.abs(updates["heads"]["kernel"]), 1e-3, rtol=1e-3)


@pytest.mark.slow
def test_extend_keeps_the_old_heads_exactly_at_its_start(source):
    src = load_source(source)
    base = dataclasses.replace(TINY, tasks=("CartPole-v1", "Acrobot-v1", "MountainCar-v0"), seeds=3)
    agent = make_agent(finetune_config(base, src.path, src.cfg, keep_heads=True))
    trainer = make_trainer(agent)
    state, record = graft(agent, src, 2, trainer.init(seed_keys(agent.seeds)))
    assert record["kept_tasks"] == ["CartPole-v1", "Acrobot-v1"]
    assert record["seed_map"] == {"0": 0, "1": 1, "2": 0}  # 3 seeds from a 2-seed source
    mine, theirs = jax.tree.map(np.asarray, state.params), jax.tree.map(np.asarray, src.net.params)
    seeds = [0, 1, 0]
    for k, task in enumerate(src.net.tasks):
        actions, inputs = src.net.task_set.tasks[k].num_actions, src.net.task_set.tasks[k].obs_shape[-1]
        for part, region in (("heads", (slice(None), slice(0, actions))), ("adapters", (slice(0, inputs),))):
            kernel = (slice(None), k, *region)
            np.testing.assert_array_equal(_bits(mine[part]["kernel"][kernel]), _bits(theirs[part]["kernel"][seeds][kernel]))
        np.testing.assert_array_equal(_bits(mine["heads"]["bias"][:, k, :actions]),
                                      _bits(theirs["heads"]["bias"][seeds][:, k, :actions]))
    assert _same(jax.tree.map(lambda x: x[seeds], theirs["torso"]), mine["torso"])
    assert _same(state.params, state.target_params)


@pytest.mark.slow
def test_extend_reports_forgetting_and_the_new_tasks(source, tmp_path):
    result = extend(dataclasses.replace(TINY, tasks=TrainConfig().tasks), source, ("MountainCar-v0",),
                    tmp_path / "ext", progress=False, eval_episodes=2)
    s = result.summary
    assert s["tasks"] == ["CartPole-v1", "Acrobot-v1", "MountainCar-v0"]
    assert s["extend"] == {"old_tasks": ["CartPole-v1", "Acrobot-v1"], "new_tasks": ["MountainCar-v0"]}
    t = s["transfer"]
    assert set(t["forgetting"]) == {"CartPole-v1", "Acrobot-v1"}
    for task, values in t["forgetting"].items():
        assert values == [a - b for a, b in zip(t["start_eval"][task], s["final_eval"][task])]
    assert set(t["change_from_start"]) == set(s["tasks"])


def test_forgetting_compares_only_the_same_episodes():
    """A finished extend resumed with --eval-episodes 7 subtracted its 7-episode final mean from the start's
    2-episode one ([4.5, 0.0] became [4.857, 0.357]); now neither difference is given, and it says why."""
    from mtdqn.errors import MtdqnWarning
    from mtdqn.finetune import transfer_summary

    start = {"start_eval": {"CartPole-v1": [20.0, 10.0]}, "kept_tasks": ["CartPole-v1"], "eval_episodes": 2}
    same = transfer_summary(start, {"final_eval": {"CartPole-v1": [15.5, 10.0]}, "eval_episodes": 2})
    assert same["forgetting"] == {"CartPole-v1": [4.5, 0.0]} and "not_compared" not in same
    with pytest.warns(MtdqnWarning, match="the start was evaluated on 2 episodes, the end on 7"):
        other = transfer_summary(start, {"final_eval": {"CartPole-v1": [15.1, 9.6]}, "eval_episodes": 7})
    assert other["forgetting"] == {} and other["change_from_start"] == {} and "7" in other["not_compared"]


def test_early_stopping_keeps_each_seeds_best():
    params = {"w": np.zeros((2, 3), np.float32)}
    es = EarlyStopping.start(patience=2, random={"T": 0.0}, n_seeds=2)
    for step, scores in [(1, [1.0, 5.0]), (2, [3.0, 4.0]), (3, [2.0, 4.5]), (4, [2.5, 1.0])]:
        params = {"w": np.full((2, 3), step, np.float32)}
        stopped = es.observe(np.array(scores), params, step)
    assert stopped and es.stopped_at == 4
    assert es.best_step.tolist() == [2, 1]
    np.testing.assert_array_equal(es.best_params["w"], [[2, 2, 2], [1, 1, 1]])


def test_the_validation_score_weighs_tasks_by_their_anchors():
    """Random to reference is worth 1 on every task with fixed anchors (the score is the report's normalized
    score): with max(|random|, 1) as the unit, a network that learned CartPole alone (480, the others at random)
    scored 6.94 and beat one that solved all three (450, -100, -110) at 6.90; a task without anchors keeps the
    run's measured random and max(|random|, 1)."""
    from mtdqn.analysis.anchors import lookup, normalize
    from mtdqn.train.early_stop import seed_scores, task_unit

    tasks = ("CartPole-v1", "Acrobot-v1", "MountainCar-v0")
    random = {"CartPole-v1": 22.0, "Acrobot-v1": -499.0, "MountainCar-v0": -200.0}  # the run's own measure
    returns = {0: (480.0, -499.0, -200.0), 1: (450.0, -100.0, -110.0)}
    rows = [{"seed": s, "task": t, "return_mean": r} for s, rs in returns.items() for t, r in zip(tasks, rs)]
    cartpole_alone, all_three = seed_scores(rows, tasks, [0, 1], random)
    assert all_three > 0.95 > cartpole_alone, (cartpole_alone, all_three)
    report = [np.mean([normalize(r, lookup(t).random, lookup(t).reference) for t, r in zip(tasks, returns[s])])
              for s in (0, 1)]
    np.testing.assert_allclose([cartpole_alone, all_three], report)  # the report's normalized score
    assert task_unit("Breakout-MinAtar", 0.5) == (0.5, 1.0) and task_unit("Breakout-MinAtar", -7.0) == (-7.0, 7.0)


@pytest.mark.slow
def test_early_stopping_restores_the_best_checkpoint(source, tmp_path):
    base = dataclasses.replace(TINY, tasks=("CartPole-v1",), steps=6000, log_every=400)
    # 2 episodes per evaluation: the evaluation program of the other CartPole fine-tunings here (the dropout
    # runs, the LoRA run's graft), which the compilation cache then serves; the test evaluation's 4 differ.
    result = finetune(base, source, tmp_path / "es", progress=False, eval_episodes=2, eval_every=400, patience=1,
                      test_episodes=4)
    early = result.summary["early_stop"]
    assert early["stopped_at"] is not None and early["stopped_at"] < result.summary["env_steps"]
    evals = pd.read_parquet(tmp_path / "es" / "evals.parquet")
    during = evals[evals["step"] < result.summary["env_steps"]]
    assert during["step"].max() == early["stopped_at"]  # nothing evaluated after it stopped
    cfg = RunDir(tmp_path / "es").config()
    agent = make_agent(cfg)
    trainer = make_trainer(agent)
    state, meta = load_checkpoint(tmp_path / "es", trainer.agent.cfg, jax.eval_shape(trainer.init, seed_keys(agent.seeds)))
    assert meta["early_stop"] == early
    for s, seed in enumerate(agent.seeds):
        best = early["best_step"][str(seed)]
        mine = during[during["seed"] == seed].set_index("step")["return_mean"]
        # every evaluation a candidate, those before the first update too: a fine-tuning starts trained
        assert best == mine.idxmax()  # the first best evaluation (improvement means strictly better)
        # The final checkpoint's parameters replay that evaluation exactly: they are the best ones.
        again = evaluate_params(agent, state.params, eval_seed(cfg.seed, EvalStream.DURING_TRAINING), 2, step=best)
        assert np.float32(again.total[s, 0].mean()) == np.float32(mine[best])
    test = json.loads((tmp_path / "es" / "test_eval.json").read_text())
    assert test["episodes"] == 4 and len(test["tasks"]["CartPole-v1"]["per_seed"]["0"]["returns"]) == 4


@pytest.mark.slow
def test_a_finetuned_run_resumes_bit_identical(source, tmp_path, monkeypatch):
    import mtdqn.train.drive as run_module

    kw = dict(freeze="trunk-until:400", progress=False, eval_episodes=2, checkpoint_every=400)
    whole = finetune(TINY, source, tmp_path / "whole", **kw)
    show = run_module._show_rate

    def interrupt(bar, task_id, trainer, m, step, *args):
        show(bar, task_id, trainer, m, step, *args)
        if step >= 400:
            raise KeyboardInterrupt

    monkeypatch.setattr(run_module, "_show_rate", interrupt)
    with pytest.raises(KeyboardInterrupt):
        finetune(TINY, source, tmp_path / "cut", **kw)
    monkeypatch.setattr(run_module, "_show_rate", show)
    start = tmp_path / "cut" / "start.json"
    record = start.read_text()
    start.unlink()  # it resumed to a summary without its transfer record, exit 0
    with pytest.raises(ConfigError, match=r"start.json is missing: this fine-tuned run's record of its start"):
        train(RunDir(tmp_path / "cut").config(), tmp_path / "cut", resume=True, progress=False)
    start.write_text("[1]")  # AttributeError's traceback, after the work
    with pytest.raises(ConfigError, match=r"start.json is not a record of a run's start \(a JSON object\)"):
        train(RunDir(tmp_path / "cut").config(), tmp_path / "cut", resume=True, progress=False)
    start.write_text(record)
    resumed = train(RunDir(tmp_path / "cut").config(), tmp_path / "cut", resume=True, progress=False)
    assert _same(whole.state.params, resumed.state.params) and _same(whole.state.opt_state, resumed.state.opt_state)
    assert resumed.summary["transfer"]["start_eval"] == whole.summary["transfer"]["start_eval"]


def test_keep_heads_with_no_task_of_the_source_is_refused(tmp_path):
    """`--keep-heads True` on tasks the source never trained kept nothing and said "heads kept"."""
    from helpers import fake_run

    fake_run(tmp_path / "src")  # CartPole-v1 and Acrobot-v1
    with pytest.raises(ConfigError, match=r"^--keep-heads True keeps the heads of the tasks .*src trained "
                                          r"\(CartPole-v1, Acrobot-v1\), and none of MountainCar-v0 is one of them: "
                                          r"drop --keep-heads$"):
        finetune(dataclasses.replace(TINY, tasks=("MountainCar-v0",)), tmp_path / "src", tmp_path / "ft",
                 keep_heads=True)
    assert not (tmp_path / "ft").exists()


def test_vector_and_image_trunks_refuse_each_other(tmp_path):
    from helpers import IMAGE, fake_run

    fake_run(tmp_path / "vector")
    fake_run(tmp_path / "image", IMAGE)
    with pytest.raises(ConfigError, match="a trunk trained on vector tasks .* cannot take image tasks"):
        finetune(dataclasses.replace(TINY, tasks=("Breakout-MinAtar",)), tmp_path / "vector", tmp_path / "a")
    with pytest.raises(ConfigError, match="a trunk trained on image tasks .* cannot take vector tasks"):
        finetune(dataclasses.replace(TINY, tasks=("CartPole-v1",)), tmp_path / "image", tmp_path / "b")
    with pytest.raises(ConfigError, match=r"trunk reads images of shape \(10, 10, \d+\) \(Breakout-MinAtar, "
                                          r"Asterix-MinAtar\); MiniGrid-DoorKey-6x6-v0 give \(\d+, \d+, \d+\): "
                                          r"fine-tune on tasks of the source's observation shape"):  # was a kernel
        finetune(dataclasses.replace(TINY, tasks=("MiniGrid-DoorKey-6x6-v0",)), tmp_path / "image", tmp_path / "c")
    assert not any((tmp_path / name).exists() for name in "abc")


def test_runs_recorded_before_finetuning_keep_their_hash(tmp_path):
    def before(cfg: TrainConfig) -> dict:  # the config dict before finetune, --dropout, --n-step, --feature-activation,
        old = {k: v for k, v in json.loads(json.dumps(dataclasses.asdict(cfg))).items()  # --init, --affinity-every,
               if k not in ("finetune", "affinity_every")}  # --feature-norm
        return {**old, "dqn": {k: v for k, v in old["dqn"].items() if k not in ("dropout", "n_step")},
                "network": {k: v for k, v in old["network"].items()
                            if k not in ("feature_activation", "init", "feature_norm")}}

    def old_hash(cfg: TrainConfig) -> str:  # config_hash as that code computed it
        return hashlib.sha256(json.dumps(before(cfg), sort_keys=True).encode()).hexdigest()[:16]

    for cfg in (TrainConfig(), SOURCE, TINY):
        assert config_hash(cfg) == old_hash(cfg) and "finetune" not in config_to_dict(cfg)
        assert "dropout" not in config_to_dict(cfg)["dqn"] and "n_step" not in config_to_dict(cfg)["dqn"]
    old = before(SOURCE)
    assert config_from_dict(old) == SOURCE  # a config dict without the section reads as an ordinary run
    saved_run(tmp_path)
    meta_path = tmp_path / "checkpoints" / "latest.json"
    meta = json.loads(meta_path.read_text())
    assert meta["config"] == old and json.loads((tmp_path / "config.json").read_text())["config"] == old
    assert mtdqn.load_agent(tmp_path).tasks == SOURCE.tasks  # verifies its config hash
    ft = dataclasses.replace(SOURCE, finetune=FinetuneConfig(source="/r", freeze="trunk"))
    assert config_from_dict(config_to_dict(ft)) == ft and config_hash(ft) != config_hash(SOURCE)
    dropped = dataclasses.replace(SOURCE, dqn=dataclasses.replace(DQN, dropout=0.1))
    assert config_to_dict(dropped)["dqn"]["dropout"] == 0.1 and config_from_dict(config_to_dict(dropped)) == dropped
    assert config_hash(dropped) != config_hash(SOURCE)
    paper = dataclasses.replace(SOURCE, network=dataclasses.replace(SOURCE.network, init="deramo"))
    assert config_to_dict(paper)["network"]["init"] == "deramo" and config_from_dict(config_to_dict(paper)) == paper
    assert config_hash(paper) != config_hash(SOURCE)


@pytest.mark.slow
def test_older_runs_under_newer_rules_still_load(tmp_path):
    """adam with --weight-decay (which adam ignored) is refused for new runs only: such a run still loads,
    evaluates and can be a source."""
    old = dataclasses.replace(SOURCE, dqn=dataclasses.replace(DQN, weight_decay=0.01))
    with pytest.raises(ConfigError, match="--weight-decay needs --optimizer adamw or sgd"):
        train(old, tmp_path / "new", progress=False)
    assert not (tmp_path / "new").exists()
    saved_run(tmp_path / "old", old)
    assert mtdqn.load_agent(tmp_path / "old").tasks == SOURCE.tasks
    assert evaluate_run(tmp_path / "old", episodes=1)["tasks"].keys() == set(SOURCE.tasks)


def test_a_finetune_budget_its_windows_round_is_warned(tmp_path):
    """finetune --steps 2500 in windows of 1,000 trained 3,000 with nothing said, where train warns (found by a
    README walk-through); warned before anything is written."""
    import warnings

    from helpers import fake_run
    from mtdqn.errors import RoundedScheduleWarning

    fake_run(tmp_path / "source")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RoundedScheduleWarning)
        with pytest.raises(RoundedScheduleWarning, match="steps 2,500 trains 3,000 env steps per task"):
            mtdqn.finetune(tmp_path / "source", ["MountainCar-v0"], tmp_path / "new", steps=2500,
                           log_every=1000, learning_starts=100, progress=False)
    assert not (tmp_path / "new" / "config.json").exists()


def test_keeping_popart_heads_is_refused_with_advice_that_applies(tmp_path):
    """extend keeps every old head, so its refusal told it to 'fine-tune without --keep-heads', an option extend
    does not have; the refusal names finetune for fresh heads and says extend cannot start from the run."""
    from helpers import VECTOR, fake_run

    source = tmp_path / "popart"
    fake_run(source, dataclasses.replace(VECTOR, value_norm="popart"))
    for call in (lambda: mtdqn.extend(source, ["MountainCar-v0"], tmp_path / "ext", progress=False),
                 lambda: mtdqn.finetune(source, tasks=list(VECTOR.tasks), out=tmp_path / "ft", keep_heads=True,
                                        progress=False)):
        with pytest.raises(ConfigError, match=r"normalizes its heads \(PopArt\): .*`mtdqn finetune` without "
                                              r"--keep-heads starts fresh heads \(`mtdqn extend` keeps them"):
            call()
    assert not (tmp_path / "ext").exists() and not (tmp_path / "ft").exists()
