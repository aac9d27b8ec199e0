"""Learning tests: a real agent must clear thresholds a broken one cannot.

Budget (documented in the README): CartPole-v1 + Acrobot-v1, 200k env steps
per task, seed 0, 4 envs per task, one update of 64 transitions per task
every vector step, Adam lr 5e-4 decayed linearly, Polyak target tau 0.005,
squared-error TD loss, epsilon 1 -> 0.02 over the first 20%. A uniformly
random policy scores ~22 on CartPole and ~-500 on Acrobot; the thresholds are
greedy CartPole >= 200 (9x random) and Acrobot >= -120.

Why 200k (measured with batches of 128, the DQN default, until 2026-12-05): run with seeds 0-7 at this
budget on the machine the test was written on, every seed of both variants scored CartPole >= 499 and Acrobot
-72..-87.  At 150k, 2 of 8 shared seeds ended with CartPole at 264 and 182: a
greedy CartPole policy can still collapse there, and a float rounding change
(a different seed layout) is enough to pick those seeds.
Why CartPole >= 200, not 400: XLA compiles for the host CPU, so another
machine rounds differently and follows another trajectory from the same seed.
On an AMD EPYC (2026-12-03) independent seed 0 alone scored 385.7, and seeds
0-3 in one program CartPole 302, 500, 500, 500 (shared: 500 x 4; Acrobot
-76..-81 for both).  A greedy CartPole policy at this budget sits anywhere in
~300-500; 200 keeps the test about learning, not about one machine's bits.
Why one seed: every seed measured at 200k passes these thresholds, so a second seed
adds little power against a broken agent, only the CPU time of a second run
(the suite runs on two cores).
Why batches of 64, not the DQN default 128 (which this test used until 2026-12-05): the same learning for
55% of the training time (seed 0 alone on the AMD EPYC: the loop 37.2 -> 20.6 s, the test 46.8 -> 28.9 s;
greedy CartPole 500 and Acrobot -77).  Seeds 0-15 at 64, two programs of 8 seeds on the AMD EPYC
(2026-12-05): CartPole 500 x 14, 322, 431; Acrobot -75 ... -98: every seed passes, as every seed measured at
128 did (>= 302).
Why not cheaper still: measured 2026-12-04 (at batch 128), seeds 0-7 in one program on the AMD EPYC, half the
updates (--train-every 8) scored CartPole 137-326 (five below 200), and a (64, 64) network with 32-wide
adapters 178-500 (one below 200).
Why without the probes (``probes=False``: no gradient probe, no CKA): they read the trained state and change no
number of the run (tests/test_diagnostics.py trains with and without them and compares), and they are ~4 s of
optimized compiling per test here.
Why `shared` alone: the test ran `independent` too (131 s of the suite's 24 min
on 2026-12-04).  The two train through the same loop, losses and optimizer; what
`independent` changes is the network, whose tasks are checked to share no
output (test_networks.test_independent_tasks_do_not_share_outputs), and every
study trains it beside `shared` (README: classic-experts, MiniGrid MT3).
"""

from __future__ import annotations

import numpy as np
import pytest

from mtdqn.config import DQNConfig, NetworkConfig, TrainConfig
from mtdqn.train.run import train

pytestmark = [pytest.mark.slow, pytest.mark.optimized]  # real budgets: the optimized programs users run

LEARNING_DQN = DQNConfig(
    lr=5e-4, lr_schedule="linear", tau=0.005, target_update_every=1, loss="mse", train_every=4,
    eps_fraction=0.2, eps_end=0.02, buffer_size=50_000, learning_starts=5_000, batch_size=64,
)
THRESHOLDS = {"CartPole-v1": 200.0, "Acrobot-v1": -120.0}


LEARNING = TrainConfig(
    tasks=("CartPole-v1", "Acrobot-v1"), steps=200_000, seeds=1, seed=0, num_envs=4, log_every=25_000,
    network=NetworkConfig(sharing="shared"), dqn=LEARNING_DQN,
)


def test_two_task_agent_learns_both_tasks(tmp_path):
    summary = train(LEARNING, tmp_path / "shared", progress=False, eval_episodes=20, probes=False).summary
    for task, threshold in THRESHOLDS.items():
        greedy = np.asarray(summary["final_eval"][task])  # mean of 20 greedy episodes
        assert np.all(greedy >= threshold), f"{task}: greedy return {greedy}"
    # A uniformly random policy on the same tasks is far below the thresholds.
    assert summary["random_return"]["CartPole-v1"] < 60 and summary["random_return"]["Acrobot-v1"] < -300


# The conv trunk learns from images.  Budget: Breakout-MinAtar + SpaceInvaders-MinAtar, 50k env steps per
# game, seed 0, a half-width trunk (conv 8 -> conv 16 -> Dense 64, 8-channel adapters), one update of 64
# transitions per game every vector step of 4 envs, Adam lr 1e-3, squared-error TD loss, Polyak tau 0.005,
# epsilon 1 -> 0.05 over the first 20%.  What a broken agent scores (20 episodes): uniformly random 0.45
# (Breakout) and 3.7 (SpaceInvaders); the best constant action 0.4 and 3.0.  Measured at this budget, greedy,
# seeds 0-5: Breakout 9.8, 7.9, 8.6, 9.0, 9.0, 9.6; SpaceInvaders 22, 14, 8, 21, 23, 30; on the AMD EPYC where
# the other two tests needed room for another CPU's rounding (2026-12-03), seeds 0-3 in one program: Breakout
# 8.1, 9.0, 7.0, 7.8; SpaceInvaders 23, 20, 23, 22.  The test runs seed 0 alone: every seed measured on both
# machines passes, so a second one costs a run's CPU time and adds little power.  Thresholds:
# Breakout >= 4, SpaceInvaders >= 7 (about twice the best of random and every constant policy).
IMAGE_THRESHOLDS = {"Breakout-MinAtar": 4.0, "SpaceInvaders-MinAtar": 7.0}


def test_shared_conv_agent_learns_two_minatar_games(tmp_path):
    cfg = TrainConfig(
        tasks=tuple(IMAGE_THRESHOLDS), steps=50_000, seeds=1, seed=0, num_envs=4, log_every=12_500,
        network=NetworkConfig(sharing="shared", conv_channels=(8, 16), conv_dense=64, adapter_channels=8),
        dqn=DQNConfig(lr=1e-3, lr_schedule="constant", loss="mse", train_every=4, batch_size=64, buffer_size=50_000,
                      learning_starts=2_000, eps_fraction=0.2, eps_end=0.05),
    )
    summary = train(cfg, tmp_path / "minatar", progress=False, eval_episodes=20, probes=False).summary
    for task, threshold in IMAGE_THRESHOLDS.items():
        greedy = np.asarray(summary["final_eval"][task])
        assert np.all(greedy >= threshold), f"{task}: greedy returns per seed {greedy}"
        assert summary["random_return"][task] < threshold / 1.8, summary["random_return"]


# MiniGrid: a shared conv trunk learns two sparse-reward navigation tasks.  Budget: MemoryS11 + MultiRoom-N2-S4
# (of the seven, the two whose replay a random policy fills with the most rewards: 7.3 and 5.3 successes per
# 10k env steps, against 0.9-3.1 for the others), 60k env steps per task, seeds 0-3 in one program, 16 envs per
# task, one update of 128 transitions per task every vector step, 10-step returns, epsilon 1 -> 0.1 over the
# first 30% (the minigrid presets' settings, mtdqn/studies/presets.py).  With 1-step targets (n_step 1) both
# tasks scored 0.0 at 40k, the greedy policy waiting out the time limit.
# What a broken agent scores: the uniform random policy 0.19 on Memory (it stumbles onto one of the two end
# cells, half of them the right one; 0.19 +- 0.04 over 64 episodes) and 0.007 on MultiRoom, over 1,000
# episodes (mtdqn.taskfacts); every constant action 0.  A memoryless policy gets ~0.5 on Memory at most: at the
# end of the hallway the cue is out of view.
# Measured greedy returns at this budget (64 episodes), four seeds in one program, on an AMD EPYC:
#   2026-12-03, seeds 0-3: MultiRoom 0.77, 0.75, 0.75, 0.76; Memory 0.54, 0.56, 0.43, 0.00;
#   2026-12-04, the same code, seeds 4-7: MultiRoom 0.84, 0.64, 0.00, 0.21; Memory 0.50, 0.48, 0.48, 0.00;
#   2026-12-04, one random draw per layout (828d547; the same layout distribution, other random numbers),
#   seeds 0-3: MultiRoom 0.78, 0.82, 0.63, 0.81; Memory 0.00, 0.53, 0.63, 0.48;
#   seeds 4-7: MultiRoom 0.77, 0.33, 0.00, 0.00; Memory 0.42, 0.51, 0.49, 0.06.
# Both tasks are bimodal at 60k: a seed learns the task or collapses to ~0 (XLA compiles for the host CPU, so
# another machine rounds differently and follows another trajectory from the same seed: seed 0 alone scored
# Memory 0.53 on the machine the test was written on and 0.08 here).  Of these 16 seed-runs, 12 learned
# MultiRoom (>= 0.3) and 12 Memory.  So each task must be learned by at least one of the four seeds: >= 0.3 is
# 40x random on MultiRoom and random's 0.19 + 2.75 sd (64 episodes) on Memory, which a broken agent does not
# reach; a seed's chance of collapsing, ~1/4, makes all four collapsing on a task a ~0.4% event.  (Asking
# every seed to learn MultiRoom, as this test did, fails ~2 runs in 3 at that rate: seeds 4-7 failed it.)
# Memory's 0.3 shows learning, not use of the cue: a policy that ignores it and always picks one side succeeds
# half the time (up to ~0.5); MultiRoom's clause is the one no untrained or reward-blind agent passes.
MINIGRID_THRESHOLDS = {"MiniGrid-MemoryS11-v0": 0.3, "MiniGrid-MultiRoom-N2-S4-v0": 0.3}


def test_shared_conv_agent_learns_two_minigrid_tasks(tmp_path):
    cfg = TrainConfig(
        tasks=tuple(MINIGRID_THRESHOLDS), steps=60_000, seeds=4, seed=0, num_envs=16, log_every=12_000,
        network=NetworkConfig(sharing="shared"),
        dqn=DQNConfig(train_every=16, batch_size=128, buffer_size=60_000, learning_starts=2_000, n_step=10,
                      eps_fraction=0.3, eps_end=0.1),
    )
    summary = train(cfg, tmp_path / "minigrid", progress=False, eval_episodes=64, probes=False).summary
    memory = np.asarray(summary["final_eval"]["MiniGrid-MemoryS11-v0"])
    multiroom = np.asarray(summary["final_eval"]["MiniGrid-MultiRoom-N2-S4-v0"])
    assert np.max(multiroom) >= MINIGRID_THRESHOLDS["MiniGrid-MultiRoom-N2-S4-v0"], f"MultiRoom per seed {multiroom}"
    assert np.max(memory) >= MINIGRID_THRESHOLDS["MiniGrid-MemoryS11-v0"], f"Memory per seed {memory}"
    for task, threshold in MINIGRID_THRESHOLDS.items():
        assert summary["random_return"][task] < threshold - 0.05, summary["random_return"]
