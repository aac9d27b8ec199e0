"""Built-in studies, written in the same schema as a study TOML file.

They go through exactly the validation a user's file does (``build_spec``),
so a preset can never drift into something the file format cannot express.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from mtdqn.config import TrainConfig, derive, first_update_iteration, updates_before_iteration
from mtdqn.errors import ConfigError
from mtdqn.flatoptions import meant_name
from mtdqn.runoptions import RunOptions
from mtdqn.studies.spec import StudySpec, apply_options, build_spec, longest_window, read_study_file

__all__ = ["PRESETS", "TRANSFER_PRESETS", "CLASSIC_OPTIONS", "DERAMO_TASKS", "MINATAR_PUBLISHED", "MOORE_MT3",
           "MOORE_MT5", "MOORE_MT7", "MOORE_EXPERTS", "MINIGRID_OPTIONS", "resolve_spec", "study_table",
           "study_seeds_and_tasks", "transfer_preset", "check_transfer_budget",
           "deramo_transfer_preset", "GROUPS_PRESET", "GROUPS_TASKS", "groups_preset", "cadence"]

# Classic-control settings measured to learn CartPole-v1 + Acrobot-v1 in 150k steps per task with
# greedy evaluation (the DQN defaults plus squared-error TD loss; Huber learned CartPole far slower
# here: greedy 126/204 vs 451/500 on seeds 0/1, see README). A hard target copy with lr 1e-3 gave
# good *training* returns on Acrobot but frozen greedy policies at -500, so presets avoid it.
CLASSIC_OPTIONS: dict[str, Any] = {
    "log_every": 5_000,
    "loss": "mse",
}


def _quick() -> dict[str, Any]:
    """The README demo: two tasks, the reference and full sharing, 2 seeds; a few minutes on 2 CPU cores."""
    return {
        "tasks": ["CartPole-v1", "Acrobot-v1"],
        "steps": 150_000,
        "seeds": 2,
        "eval_episodes": 10,
        "eval_every": 10_000,
        "options": dict(CLASSIC_OPTIONS),
        "variants": {"shared": {"sharing": "shared"}},
    }


def _classic() -> dict[str, Any]:
    """D'Eramo et al.-style classic control: every sharing structure against independent networks.

    ``independent-matched`` is the capacity control: independent networks whose trunks are narrowed
    to 64 units so the total parameter count (26,889 for these three tasks) is within 2% of
    ``shared`` (27,337); full-width ``independent`` has 77,001. A difference between ``shared`` and
    ``independent-matched`` is then not a parameter-count effect (tests/test_study.py checks the match).
    """
    variants: dict[str, dict[str, Any]] = {
        "independent-matched": {"sharing": "independent", "hidden": [64, 64]},
        "shared": {"sharing": "shared"},
        "partial-1": {"sharing": "partial:1"},
        "shared+unit-norm": {"sharing": "shared", "strategy": "unit-norm"},
        "conditioned": {"sharing": "conditioned"},
        "moe": {"sharing": "moe:2"},  # experts (issue 20), at MOORE's count for three tasks (its MT3)
        "moore": {"sharing": "moore:2"},
    }
    return {
        "tasks": ["CartPole-v1", "Acrobot-v1", "MountainCar-v0"],
        "steps": 200_000,
        "seeds": 5,
        "eval_every": 10_000,
        "options": dict(CLASSIC_OPTIONS),
        "variants": variants,
    }


MINATAR_PUBLISHED = "sticky=0.1,actions=full,max_steps=10000"
"""Young & Tian's MinAtar (``minatar/environment.py``): sticky actions 0.1, all six actions; a 10,000-step cut-off."""


def _minatar() -> dict[str, Any]:
    """The five MinAtar games on the conv trunk, as published: independent vs one shared trunk.

    Environment and DQN settings from Young & Tian (2019), "MinAtar: An Atari-inspired testbed for thorough
    and reproducible reinforcement learning experiments", arXiv:1903.03176, and its code
    (github.com/kenjyoung/MinAtar, ``minatar/environment.py`` and ``examples/dqn.py``):
    - the games as published, through the task options of :mod:`mtdqn.tasks.minatar`: sticky actions with
      probability 0.1 (``Environment(..., sticky_action_prob=0.1)``) and the full six-action set
      (``num_actions()`` is 6; the example DQN's network has ``env.num_actions()`` outputs);
    - replay 100k transitions, learning starts after 5,000 frames, epsilon 1.0 -> 0.1 over 100k
      frames, Huber loss, lr 2.5e-4, gamma 0.99, a hard target copy every 1,000 updates, one update
      of 32 transitions per frame.
    Where we differ, and why:
    - a 10,000-step cut-off (a truncation, bootstrapped from; ``max_steps=10000``): MinAtar cuts no episode,
      but our greedy evaluation rolls out a fixed horizon, so it needs one; it is 10x gymnax's 1,000
      (Freeway ends itself after 2,500 frames, a termination, as in MinAtar);
    - 4 envs per game and one update of 128 transitions per game every 4 frames: the same 32
      sampled transitions per frame with a quarter of the updates (the compiled loop steps all envs
      between updates), so the target copy every 250 updates is their 1,000 frames;
    - Adam, not centered RMSProp (`--optimizer` offers adam, adamw and sgd);
    - the network is our design's conv -> conv -> Dense(128) trunk with per-game 1x1 adapters and
      heads; theirs is one conv(16, 3x3) -> Dense(128) per game;
    - epsilon anneals over the first 10% of the run (100k of the default 1M frames) from frame 0;
      theirs stays 1 (uniform random) for the first 5,000 frames, then anneals;
    - 1M frames per game by default, not 5M, and still long: one seed of this preset (all five games)
      trained at 359 env-steps/s (``python benchmarks/throughput.py --minatar``, its ``minatar preset``
      row, on 2026-12-02 with a load average of ~5 on the 2-core CPU; README, performance).  At that rate
      the preset's 30M env steps (1M frames x 5 games x 3 seeds x 2 variants) take ~23 hours.
    """
    return {
        "tasks": [f"{game}:{MINATAR_PUBLISHED}" for game in
                  ("Breakout-MinAtar", "Asterix-MinAtar", "Freeway-MinAtar", "SpaceInvaders-MinAtar",
                   "Seaquest-MinAtar")],
        "steps": 1_000_000,
        "seeds": 3,
        "eval_every": 50_000,
        "checkpoint_every": 50_000,  # a cell is hours on a CPU: a stopped study resumes mid-cell
        "options": {"log_every": 25_000, "num_envs": 4, "train_every": 4, "batch_size": 128,
                    "buffer_size": 100_000, "learning_starts": 5_000, "lr": 2.5e-4, "lr_schedule": "constant",
                    "loss": "huber", "eps_end": 0.1, "eps_fraction": 0.1,  # 100k of 1M frames
                    "target_update_every": 250, "tau": 1.0},
        "variants": {"shared": {"sharing": "shared"}},
    }


# The five tasks of D'Eramo et al. (2020) with the paper's horizons and discounts (see _deramo): Acrobot and
# Mountain-Car run to 1,000 steps, the two LSPI-era tasks carry their own discount.
DERAMO_TASKS = ["CartPole-v1", "Acrobot-v1:max_steps=1000", "MountainCar-v0:max_steps=1000", "CarOnHill-v0:gamma=0.95",
                "InvertedPendulumDiscrete-v0:gamma=0.95"]


def _deramo() -> dict[str, Any]:
    """D'Eramo et al. (ICLR 2020), "Sharing Knowledge in Multi-Task Deep RL": single- vs multi-task DQN.

    Protocol from the authors' code, github.com/carloderamo/shared at commit ffb8f45 (``dqn/run_gym.py``
    unless another file is named; line numbers at that commit):
    - tasks: Cart-Pole, Acrobot, Mountain-Car, Car-On-Hill, Inverted-Pendulum
      (``results/dqn/scores_plot.py`` l.16; ``run_gym.py`` l.55-61 builds ``caronhill`` and ``pendulum`` from
      mushroom-rl's ``CarOnHill`` and ``CartPole``, the LSPI pendulum, the rest with ``Gym(id, horizon, gamma)``);
    - single-task ``dqn`` vs multi-task ``multidqn``, sigmoid features (``scores_plot.py`` l.15-18);
    - network ``GymNetwork`` (``dqn/networks.py`` l.122-171): per-task input layer Dense(80)+relu, two
      shared Dense(80) (relu, then the ``features`` activation), per-task linear Q heads, initialized as
      theirs (l.145-153: Xavier-uniform with the relu gain, the linear gain on the heads, PyTorch's default
      biases): ``init = "deramo"``;
    - 50,000 steps per task (l.332), one evaluation every 1,000 steps, an "epoch" (l.326; loop l.230-245);
      each learning step steps every task once (``core.py`` l.51-60), so budgets are per task;
    - one fit per step (l.329) of 100 transitions from each task's replay (l.319, ``dqn/dqn.py`` l.103-121);
    - replay 5,000 transitions per task, filled with 100 uniformly random steps first (l.288-290, l.200-202);
    - hard target copy every 100 updates (l.323, l.175: ``target_update_frequency // train_frequency``);
    - epsilon 1 -> 0.01 linearly over 5,000 steps, greedy (epsilon 0) evaluation (l.334-342);
    - Adam, lr 1e-3, eps 1e-8 (l.89-92, l.303-310); Huber TD loss (``dqn/losses.py`` l.22: ``smooth_l1_loss``);
    - each task its own gamma, both in the TD target (``dqn/dqn.py`` l.221) and in the reported score, the
      discounted return J (l.40-44, ``compute_J(dataset, gamma[idx])``), over 2,000 greedy steps (l.344);
      the study's report leads with it (``headline = "discounted"``), the undiscounted return beside it.

    The per-task gammas and horizons are command-line arguments (l.283-284) the scripts do not record; the
    authors' stored results do (branch ``prism`` at bbd46a3, ``results/dqn/{dqn,multidqn}/noreg-sigmoid/
    scores.npy``: 100 runs x 5 tasks x 51 epochs of the discounted return): Acrobot's and Mountain-Car's
    lowest score is -99.9957 = -(1 - 0.99^1000) / 0.01, a 1,000-step horizon at gamma 0.99 (mushroom-rl's
    ``Gym`` wrapper drops gym's own time limit for its horizon), CartPole's highest 99.343 = (1 - 0.99^500) /
    0.01, 500 steps at 0.99, Car-On-Hill's highest 0.3972 = 0.95^18 and a pendulum score -0.4181 = -0.95^17,
    gamma 0.95 for both (mushroom-rl's defaults: ``CarOnHill(horizon=100, gamma=.95)``, ``CartPole(...,
    horizon=3000, gamma=.95)``; our tasks keep those horizons).  So Acrobot and Mountain-Car run here to 1,000
    steps (``max_steps=1000``; gymnax's limits are 500 and 200, which the README's tables before 2026-12-07
    used).  The paper's Gym version of Cart-Pole is not recorded (its FQI scripts list CartPole-v0,
    ``fqi/gym/make_single_datasets.py``); we use CartPole-v1, whose 500 steps the scores match.

    Where we differ, and why:
    - relu on the second shared layer, not sigmoid: the README's tables were made before the option
      ``feature_activation = "sigmoid"`` (the paper's) existed, and the preset keeps their setting;
      ``benchmarks/deramo_transfer_sigmoid.py`` runs the transfer study with sigmoid features;
    - epsilon decays from step 0 over 10% of the run (5,000 of 50,000 steps), where theirs stays 1 for the
      100 random fill steps first; with a smaller --steps the decay shrinks with the run;
    - the loss is the sum of the per-task mean losses, theirs the mean over all tasks' samples: a constant
      factor (the number of tasks) that Adam's normalisation all but removes;
    - evaluation: the first ``eval_episodes`` whole greedy episodes per task and seed at the end of training
      (``final_eval`` and ``final_eval_discounted`` in summary.json), not the episodes that fit into 2,000
      steps after every epoch (``eval_every`` stays 0, as in the run behind the README's table);
    - 10 seeds, where the paper ran 100 (the stored results' runs; ``n_exp`` is a command-line argument).
    """
    return {
        "tasks": list(DERAMO_TASKS),
        "steps": 50_000,
        "seeds": 10,
        "eval_episodes": 10,
        "headline": "discounted",  # the paper's metric: the report leads with the discounted return J
        "options": {"num_envs": 1, "train_every": 1, "log_every": 1_000, "batch_size": 100,
                    "buffer_size": 5_000, "learning_starts": 100, "target_update_every": 100, "tau": 1.0,
                    "lr": 1e-3, "lr_schedule": "constant", "optimizer": "adam", "loss": "huber",
                    "eps_start": 1.0, "eps_end": 0.01, "eps_fraction": 0.1, "gamma": 0.99,
                    "hidden": [80, 80], "adapter_width": 80, "init": "deramo"},
        "variants": {"shared": {"sharing": "shared"}},
    }


MOORE_MT3 = ["MiniGrid-LavaGapS7-v0", "MiniGrid-RedBlueDoors-6x6-v0", "MiniGrid-MemoryS11-v0"]
MOORE_MT5 = [*MOORE_MT3, "MiniGrid-DoorKey-6x6-v0", "MiniGrid-DistShift1-v0"]
MOORE_MT7 = [*MOORE_MT5, "MiniGrid-SimpleCrossingS9N2-v0", "MiniGrid-MultiRoom-N2-S4-v0"]
"""MOORE's MiniGrid task sets (Hendawy et al. 2024, ``run_minigrid_ppo_mt.py``'s ``MT_EXP``): MT3 in its order, MT5
and MT7 as sets (MOORE lists MT5 as DoorKey, LavaGap, RedBlueDoors, DistShift1, Memory and MT7 as DoorKey,
DistShift1, RedBlueDoors, LavaGap, Memory, SimpleCrossing, MultiRoom).  The order only numbers the tasks; kept,
since a study's stored cells refuse a rerun under another task order."""
MOORE_EXPERTS = {3: 2, 5: 3, 7: 4}
"""MOORE's expert counts per task set (MT3 2, MT5 3, MT7 4): the ``moe`` and ``moore`` variants' K."""

MINIGRID_OPTIONS: dict[str, Any] = {
    # log_every 5,000 runs as 5,008 (whole vector steps of 16): 200,320 steps, evaluations every 20,032.  Kept so:
    # 4,000 would be exact, but would change every MiniGrid study's config (its stored cells then refuse a
    # rerun) and part from the study files of benchmarks/results, which are the preset as files.
    "log_every": 5_000, "num_envs": 16, "train_every": 16, "batch_size": 128, "buffer_size": 100_000,
    "learning_starts": 2_000, "n_step": 10, "eps_fraction": 0.3, "eps_end": 0.1, "gamma": 0.99,
}
"""DQN settings of the MiniGrid presets (see :func:`_moore`)."""


def _moore(tasks: list[str]) -> Callable[[], dict[str, Any]]:
    """MOORE's MiniGrid multi-task protocol (Hendawy, Peters, D'Eramo, ICLR 2024, "Multi-Task Reinforcement
    Learning with Mixture of Orthogonal Experts"; github.com/AhmedMagdyHendawy/MOORE, ``run_minigrid_ppo_mt.py``)
    with a DQN: independent networks, one shared conv trunk (MOORE's MTPPO baseline is this structure), the
    shared trunk with unit-norm task gradients and with PCGrad (Yu et al. 2020), and MOORE's two expert
    structures at its expert counts (:data:`MOORE_EXPERTS`): a mixture of experts (``moe:K``) and orthogonal
    experts (``moore:K``, :mod:`mtdqn.networks.experts`).

    As MOORE: the tasks of its MT3 / MT5 / MT7 (all ``MiniGrid-...-v0``), the ``ImgObsWrapper`` view (the
    7x7x3 partial egocentric view with occlusion, raw ids) and each env's default ``max_steps`` (our JAX
    versions of the package's tasks, :mod:`mtdqn.tasks.minigrid`), gamma 0.99, 200k env steps per task (MOORE's
    100 epochs of 2,000 steps), 16 evaluation episodes per task, the undiscounted return as the score.  MOORE
    reports the mean raw return over tasks; the optimal return as the reference of the normalized score is
    the published rerun's (Todorov et al. 2025: x / optimal; :mod:`mtdqn.taskfacts`).

    DQN settings.  Measured (issue 19; ``tests/test_learning.py``'s MiniGrid test): n-step targets.  Under a
    uniform random policy the replay gains only 1-7 rewarded transitions per 10k env steps per task (successes
    per 10k random steps: DoorKey 1.3, LavaGap 2.4, DistShift 2.1, SimpleCrossing 0.9, RedBlueDoors 3.1,
    MultiRoom 5.3, Memory 7.3), and with 1-step targets a greedy policy learns to wait out the time limit
    (episodes at max_steps, return 0): MemoryS11 + MultiRoom-N2-S4, 40k env steps per task, seeds 0 and 1,
    greedy 0.0 on both tasks with ``n_step = 1``; with ``n_step = 10`` MultiRoom 0.64 and 0.80 (random 0.007),
    Memory 0.11 and 0.0 (random 0.19; 0.53 for seed 0 at 60k).  So: n-step returns (``n_step = 10``: a success
    reaches the 10 transitions before it, not 1).  Chosen by analogy, not measured one against another:
    epsilon decaying to 0.1 over 30% of the run, 16 envs per task with one update of 128 transitions per task
    every 16 env steps (each transition is sampled ~8 times, as DQN's 32 every 4), learning from 2,000 env
    steps (so a short check such as ``--steps 5000`` still updates).  The lava tasks are harder for it:
    DistShift1 + LavaGapS7 at 40k-60k steps stayed at 0 with 1-step and 10-step targets alike (the greedy policy
    avoids lava and runs out the clock).

    Where we differ from MOORE: DQN, not PPO; 10 seeds by default, not 30; our conv trunk (conv 16, conv 32,
    Dense 128, per-task 1x1 adapters and heads), not MOORE's; greedy evaluation every 20k env steps per task,
    where MOORE samples its softmax policy (beta 1) and evaluates every 2,000; the published comparison
    (Todorov et al. 2025's rerun of MOORE's code, issue 19) ran 400k env steps per task, 30 seeds, and
    normalizes by x / optimal, ours (x - random) / (optimal - random) (the random returns are 0.007-0.19).
    """
    experts = MOORE_EXPERTS[len(tasks)]

    def preset() -> dict[str, Any]:
        return {
            "tasks": list(tasks),
            "steps": 200_000,
            "seeds": 10,
            "eval_episodes": 16,
            "eval_every": 20_000,
            "checkpoint_every": 20_000,  # hours per cell on a CPU: a stopped study resumes mid-cell
            "options": dict(MINIGRID_OPTIONS),
            "variants": {"shared": {"sharing": "shared"},
                         "shared+unit-norm": {"sharing": "shared", "strategy": "unit-norm"},
                         "shared+pcgrad": {"sharing": "shared", "strategy": "pcgrad"},
                         "moe": {"sharing": f"moe:{experts}"}, "moore": {"sharing": f"moore:{experts}"}},
        }

    preset.__doc__ = _moore.__doc__
    return preset


PRESETS: dict[str, Callable[[], dict[str, Any]]] = {"quick": _quick, "classic": _classic, "minatar": _minatar,
                                                    "deramo": _deramo, "minigrid-mt3": _moore(MOORE_MT3),
                                                    "minigrid-mt5": _moore(MOORE_MT5),
                                                    "minigrid-mt7": _moore(MOORE_MT7)}


def transfer_preset(seeds: int | None = None, steps: int | None = None) -> Any:
    """`mtdqn study transfer`: the transfer study in the shape of D'Eramo et al. 2020's (Acrobot-v1 held
    out), small and with our classic settings: pretraining on CartPole-v1 and MountainCar-v0, the trunk
    unfrozen after a fifth of the held-out budget.  ``steps`` sets both budgets (env steps per task).
    The paper's own protocol is `deramo-transfer`."""
    from mtdqn.studies.transfer import TransferSpec

    steps = 100_000 if steps is None else steps
    window, every = cadence(steps, max(1, steps // 20), CLASSIC_OPTIONS["log_every"], TrainConfig().num_envs)
    return TransferSpec(name="transfer", pretrain_tasks=("CartPole-v1", "MountainCar-v0"), target="Acrobot-v1",
                        steps=steps, seeds=5 if seeds is None else seeds,
                        run_options=RunOptions(eval_every=every), unfreeze_at=steps // 5,
                        lora_rank=8, options={**CLASSIC_OPTIONS, "log_every": window})


DERAMO_EPOCH = 1_000
"""env steps per task between two of D'Eramo et al.'s evaluations (``dqn/run_gym.py`` l.326)."""
DERAMO_UNFREEZE_EPOCH = 10
"""The paper's "unfreeze 10": its epoch loop counts from 1 and unfreezes ``if n_epoch >= unfreeze_epoch`` before
the epoch's learning (``dqn/run_gym.py`` l.230-231), so the trunk trains from the end of epoch 9."""


def deramo_transfer_preset(seeds: int | None = None, steps: int | None = None) -> Any:
    """`mtdqn study deramo-transfer`: D'Eramo et al. (ICLR 2020)'s transfer experiment on the `deramo` protocol.

    The multi-task DQN is pretrained on the paper's other four tasks (Cart-Pole, Mountain-Car, Car-On-Hill,
    the inverted pendulum) with every setting of :func:`_deramo` (network widths, initialization, replay,
    target copy, epsilon, Adam lr 1e-3, Huber loss, per-task gamma), then Acrobot-v1 is learned with a fresh
    input layer and head on top of the pretrained shared layers: ``frozen`` (the paper's "no unfreeze"),
    ``unfreeze-at-k`` ("unfreeze 10": the trunk trains from the start of epoch 10, after 9 epochs = 9,000
    steps, see ``DERAMO_UNFREEZE_EPOCH``), and ``scratch`` ("no initialization"); ``unfrozen`` (trained from the
    start, the paper's "unfreeze 0") and ``lora`` (rank 8, ours) come on top.  The paper reports on Acrobot
    frozen -65.6, unfreeze-10 -55.8, unfreeze-0 -58.6, scratch -58.3 (discounted return, gamma 0.99; the last
    epoch's mean over 100 runs in the authors' ``results/dqn/transfer/acro-noreg/unfreeze{0,10,51}-noreg-
    sigmoid.npy``, branch prism; their 100 runs start from one pretrained trunk, ``noreg-cart_mc_coh_pend.pkl``,
    ours each seed from its own pretraining).

    The grafted trunk is the pretraining's best, as the paper's ``--save-shared`` keeps it (``run_gym.py``
    l.255-257, l.268): per seed, the parameters of the evaluation with the highest sum over the four tasks
    of the discounted greedy return, ties to the later one, training never stopped (``keep_best``,
    :mod:`mtdqn.train.early_stop`; the pretraining's summary.json records the step under ``keep_best``).

    Where we differ: a greedy evaluation every epoch of ``eval_episodes`` whole episodes (theirs: the
    episodes within 2,000 steps), and the final score is the mean of the last three evaluations (their numbers
    are the last epoch's, the 50th: -65.56, -55.82, -58.30; the last three epochs' mean would read -66.16,
    -55.66, -58.77), both in ``final_discounted``.
    The unfreeze step counts the 100 random replay-filling steps inside the budget (ours: 50,000 steps in all;
    theirs: 100, then 50 epochs of 1,000), so their trunk starts to train at env step 9,100 and ours at 9,000.
    ``steps`` sets both budgets (env steps per task); with another budget the unfreeze step stays at 9 of the
    paper's 50 epochs, 18% of the run.
    """
    from mtdqn.studies.transfer import TransferSpec

    protocol = _deramo()
    epochs = protocol["steps"] // DERAMO_EPOCH  # the paper's 50
    steps = protocol["steps"] if steps is None else steps
    target = next(t for t in protocol["tasks"] if t.startswith("Acrobot-v1"))  # its 1,000-step horizon included
    options = protocol["options"]
    window, every = cadence(steps, min(DERAMO_EPOCH, max(1, steps // 20)), options["log_every"], options["num_envs"])
    return TransferSpec(name="deramo-transfer", target=target,
                        pretrain_tasks=tuple(t for t in protocol["tasks"] if t != target),
                        steps=steps, seeds=protocol["seeds"] if seeds is None else seeds,
                        run_options=RunOptions(eval_every=every, eval_episodes=protocol["eval_episodes"],
                                               keep_best=True),
                        unfreeze_at=max(1, (DERAMO_UNFREEZE_EPOCH - 1) * steps // epochs),
                        lora_rank=8, options={**options, "log_every": window})


def _pretrain_config(spec: Any) -> TrainConfig:
    """A transfer spec's pretraining config (its budget rules are the held-out runs': same steps and options)."""
    return apply_options(TrainConfig(tasks=spec.pretrain_tasks, steps=spec.steps, seeds=1), spec.options)


def _updates(cfg: TrainConfig) -> int:
    """The gradient updates a run of ``cfg`` makes (0: its budget ends before the first)."""
    d = derive(cfg)
    return updates_before_iteration(d, d.total_iters)


def check_transfer_budget(name: str, seeds: int | None, steps: Any) -> None:
    """A transfer preset's ``--steps`` refused, naming the least that makes an update, where its runs would make
    none.  The preset's logging window follows ``steps`` (:func:`cadence`), so a run's own refusal names the
    least budget for that window only (``--steps 4566`` was told ">= 4,789", which the preset's window for 4,789
    refuses again; 4,801 trains an update and 4,804 does not), and tells to lower ``learning_starts``, which the
    presets do not take.  The budget named is the least from which every budget makes an update.  A ``steps``
    that is no positive integer is left to the spec's own check (:func:`mtdqn.studies.transfer.held_out_spec`)."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        return
    preset = TRANSFER_PRESETS[name]
    cfg = _pretrain_config(preset(seeds, steps))
    d = derive(cfg)
    if updates_before_iteration(d, d.total_iters):
        return
    # the env step per task of the first update: every budget's, as the transfer presets' learning_starts does
    # not follow steps (groups_preset's does: a tenth of them)
    first = (first_update_iteration(d) + 1) * cfg.num_envs
    least = first  # any budget from here trains at least to the first update
    while least > 1 and _updates(_pretrain_config(preset(seeds, least - 1))):
        least -= 1
    raise ConfigError(f"preset {name}: no update would run: --steps {steps:,} ends before the first update, after "
                      f"env step {first:,} per task (the preset's learning_starts {cfg.dqn.learning_starts:,}); "
                      f"use --steps >= {least:,}")


TRANSFER_PRESETS: dict[str, Callable[..., Any]] = {"transfer": transfer_preset,
                                                   "deramo-transfer": deramo_transfer_preset}
"""Two-stage studies (pretraining, then the held-out task), run by :mod:`mtdqn.studies.transfer`."""


def cadence(steps: int, every: int, most: int, num_envs: int) -> tuple[int, int]:
    """(logging window, evaluation cadence) in env steps per task, for evaluations about every ``every`` steps,
    that the loop runs as asked: it rounds a window up to whole vector steps of ``num_envs``, the budget up to
    whole windows and the cadence to whole windows (:class:`mtdqn.train.drive.Schedule`), so the window is a
    multiple of ``num_envs`` dividing the cadence and, where one does, ``steps``: the longest up to ``most``.
    ``every`` is kept where such a window divides it, else it becomes the whole windows under it."""
    exact = longest_window(every, most, num_envs, steps)
    if exact:
        return exact, every
    windows = range(num_envs, max(num_envs, min(most, every)) + 1, num_envs)
    window = max((w for w in windows if steps % w == 0), default=windows[-1])
    return window, window * max(1, every // window)


GROUPS_PRESET = "groups"
"""The three-stage groups study (joint run, partition choice, the partitions trained), run by
:mod:`mtdqn.studies.groups`."""
GROUPS_TASKS = ("CartPole-v1", "Acrobot-v1", "MountainCar-v0")


def groups_preset(tasks: tuple[str, ...] | None = None, seeds: int | None = None, steps: int | None = None) -> Any:
    """`mtdqn study groups`: which of ``tasks`` (default :data:`GROUPS_TASKS`) should share a network.

    Classic settings and 100k env steps per task, or, when every task is a MiniGrid one, the MiniGrid presets'
    (:data:`MINIGRID_OPTIONS`: 10-step returns and 16 envs per task, without which their sparse rewards teach
    a DQN nothing; 200k steps, MOORE's budget, as in MT3 `independent` first reached LavaGap's threshold at
    160k; 16 evaluation episodes; checkpoints at each evaluation, as a MiniGrid run takes hours on a CPU).
    (``gym:MiniGrid-...`` host tasks and MinAtar sets keep the classic settings.)  Learning
    starts after a tenth of a small budget (at most the family's own start), and the logging windows shrink
    with it so the affinity has a curve; a greedy evaluation every tenth of the run, both in whole vector steps
    (:func:`cadence`: ``--steps 3000`` on 4 envs logs every 100 steps, not 150, which ran as 152 and trained
    3,040 steps)."""
    from mtdqn.studies.groups import GroupsSpec

    tasks = tuple(tasks if tasks is not None else GROUPS_TASKS)  # an empty list is refused (joint_study), not []
    minigrid = all(t.startswith("MiniGrid-") for t in tasks)
    steps = (200_000 if minigrid else 100_000) if steps is None else steps  # MiniGrid: MOORE's budget
    family = MINIGRID_OPTIONS if minigrid else {**CLASSIC_OPTIONS, "learning_starts": 5_000}
    window, every = cadence(steps, max(1, steps // 10), min(family["log_every"], max(1, steps // 20)),
                            family.get("num_envs", TrainConfig().num_envs))
    options = {**family, "log_every": window, "learning_starts": min(family["learning_starts"], steps // 10)}
    run_options = RunOptions(eval_every=every, eval_episodes=16, checkpoint_every=every) if minigrid else \
        RunOptions(eval_every=every)
    return GroupsSpec(name=GROUPS_PRESET, tasks=tasks, steps=steps, seeds=5 if seeds is None else seeds,
                      run_options=run_options, options=options)


def resolve_spec(name_or_path: str | Path, overrides: dict[str, Any] | None = None) -> StudySpec:
    """A preset by name, or a study TOML file by path; ``overrides`` replace top-level keys (--seeds, --steps)."""
    raw, source, name = study_table(name_or_path, overrides)
    return build_spec(raw, source, name)


def study_seeds_and_tasks(study: str | Path | dict[str, Any],
                          overrides: dict[str, Any] | None = None) -> tuple[int, list[str]] | None:
    """A study's seeds and tasks as written (a table, or a preset or study file with ``overrides``), before any
    validation: what the CLI and the Python API plan JAX's devices from, since validating a study imports the
    tasks and so starts JAX.  None where the table does not say them (its validation then says what is wrong)."""
    try:
        table = {**study, **(overrides or {})} if isinstance(study, dict) else study_table(study, overrides)[0]
        seeds, tasks = table["seeds"], table["tasks"]
    except (ConfigError, KeyError, TypeError):
        return None
    if not isinstance(seeds, int) or not isinstance(tasks, (list, tuple)):
        return None
    return seeds, [str(t) for t in tasks]


def study_table(name_or_path: str | Path, overrides: dict[str, Any] | None = None) -> tuple[dict[str, Any], str, str]:
    """(table, source, default name) of a preset or study file with ``overrides``, not yet validated.

    Cheap and JAX-free, so the CLI can plan devices from a study's seeds and
    tasks before JAX starts; :func:`resolve_spec` validates it.
    """
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    key = str(name_or_path)
    if key in PRESETS:
        return {**PRESETS[key](), **overrides}, f"preset {key}", key
    path = Path(name_or_path)
    names = [*PRESETS, *TRANSFER_PRESETS, GROUPS_PRESET]  # every name `mtdqn study` takes
    presets = ", ".join(names)
    if path.suffix != ".toml" and not path.exists():
        raise ConfigError(f"{key}: not a preset ({presets}) nor a study file (.toml){meant_name(key, names)}")
    if not path.exists():
        raise ConfigError(f"{path}: no such study file (built-in presets: {presets})")
    return {**read_study_file(path), **overrides}, str(path), path.stem
