"""The groups study (`mtdqn study groups`): bad input, stage 2 from a stored affinity table, the report from
synthetic cells, and one tiny end-to-end run (slow)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mtdqn.analysis import stats
from scipy import stats as sps

from mtdqn.analysis.group_report import group_tables, write_groups_report
from mtdqn.analysis.group_scores import rank_agreement, score_weights, spearman
from mtdqn.analysis.groups import MAX_TASKS, partition_score, partitions, task_scores
from mtdqn.cli import main
from mtdqn.errors import ConfigError
from mtdqn.runoptions import RunOptions
from mtdqn.studies.groups import GroupsSpec, choose_partitions, joint_study, plan_record, run_groups_study

A, B, C = "CartPole-v1", "Acrobot-v1", "MountainCar-v0"
MT3 = ("MiniGrid-LavaGapS7-v0", "MiniGrid-RedBlueDoors-6x6-v0", "MiniGrid-MemoryS11-v0")
TASKS = (A, B, C)
# Z[i, j] = Z_{i->j}: A and B help each other, C hurts both and they hurt C.  Best A+B | C (score 1.0), worst
# A+C | B (-1.0), together -0.35, apart 0.
Z = np.array([[1.0, 0.5, -0.2],
              [0.5, 1.0, -0.3],
              [-0.8, -0.4, 1.0]])
# The cosine ranks them the other way round: worst 1.0, together 0.1, apart 0, best -1.0.
COS = {(A, B): -0.5, (A, C): 0.5, (B, C): 0.1}
SEEDS = [0, 1, 2, 3, 4]
# Each group cell's final score per task (mean; seed i adds i): realized aggregate best > apart > together > worst.
FINALS = {"cells/joint": {A: 200.0, B: -200.0, C: -180.0}, "groups/CartPole-v1+Acrobot-v1": {A: 450.0, B: -90.0},
          "groups/MountainCar-v0": {C: -150.0}, "groups/CartPole-v1": {A: 300.0}, "groups/Acrobot-v1": {B: -120.0},
          "groups/CartPole-v1+MountainCar-v0": {A: 20.0, C: -200.0}}


@pytest.mark.parametrize("tasks, message", [
    (["CartPole-v1"], "grouping needs at least 2 tasks, got 1"),
    (["CartPole-v1", "Acrobot-v1", "MountainCar-v0", "CarOnHill-v0", "InvertedPendulumDiscrete-v0",
      "Breakout-MinAtar", "Asterix-MinAtar", "Freeway-MinAtar"], f"at most {MAX_TASKS} tasks"),
    (["CartPole-v1", "Breakout-MinAtar"], "cannot mix vector tasks"),
])
def test_bad_groups_input_is_one_line_and_writes_nothing(tmp_path, capsys, tasks, message):
    out = tmp_path / "study"
    with pytest.raises(SystemExit) as exc:
        main(["study", "groups", "--tasks", ",".join(tasks), "--seeds", "2", "--steps", "5000", "--out", str(out),
              "--progress", "False"])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and len(err.splitlines()) == 1 and err.startswith("error: ") and message in err
    assert not out.exists()


def _affinity_rows(z: np.ndarray, seeds: list[int]) -> pd.DataFrame:
    """Two logging windows per seed whose mean is ``z`` plus a seed's small offset (the order never changes)."""
    rows = []
    for seed in seeds:
        for step, shift in ((1000, -0.05), (2000, 0.05)):
            rows += [{"step": step, "seed": seed, "task_i": a, "task_j": b,
                      "value": np.float32(z[i, j] + shift + 0.01 * seed)}
                     for i, a in enumerate(TASKS) for j, b in enumerate(TASKS)]
    return pd.DataFrame(rows)


def test_stage_2_chooses_from_the_stored_affinity_table(tmp_path):
    _affinity_rows(Z, SEEDS).to_parquet(tmp_path / "affinity.parquet")
    chosen = choose_partitions(tmp_path, TASKS)
    assert chosen == {"best": ((0, 1), (2,)), "worst": ((0, 2), (1,)), "together": ((0, 1, 2),),
                      "apart": ((0,), (1,), (2,))}
    plan = plan_record(TASKS, chosen, 11)
    assert plan["partitions"]["best"] == {"partition": f"{A}+{B} | {C}", "groups": [
        {"tasks": [A, B], "cell": f"groups/{A}+{B}"}, {"tasks": [C], "cell": f"groups/{C}"}]}
    assert plan["partitions"]["together"]["groups"] == [{"tasks": list(TASKS), "cell": "cells/joint"}]
    partial = _affinity_rows(Z, SEEDS)
    partial = partial[~((partial["task_i"] == A) & (partial["task_j"] == C))]
    partial.to_parquet(tmp_path / "affinity.parquet")
    with pytest.raises(ConfigError, match="no affinity for every task pair"):
        choose_partitions(tmp_path, TASKS)


def test_the_bootstraps_scores_and_ranks_are_tags_and_spearmans():
    """The bootstrap scores partitions as one product with fixed weights and ranks them itself: both must give
    what partition_score / task_scores and scipy give."""
    z = np.random.default_rng(0).normal(size=(4, 4))
    for p in partitions(4):
        assert (score_weights(p, 4, None) * z).sum() == pytest.approx(partition_score(z, p))
        for t in range(4):
            assert (score_weights(p, 4, t) * z).sum() == pytest.approx(task_scores(z, p)[t])
    x, y = np.array([1.0, 2.0, 2.0, 5.0]), np.array([3.0, 1.0, 4.0, 4.0])  # ties on both sides
    assert spearman(x, y) == pytest.approx(sps.spearmanr(x, y).statistic)
    assert np.isnan(spearman(x[:2], y[:2])) and np.isnan(spearman(np.ones(4), y))


def _summary(finals: dict[str, float]) -> dict:
    return {"variant": "x", "status": "ok", "seeds": SEEDS,
            "final_score": {t: [v + i for i in range(len(SEEDS))] for t, v in finals.items()}}


def make_groups_study(root: Path, failed: tuple[str, ...] = ()) -> Path:
    """A stored groups study: the joint run's tables and every group cell's summary, no training."""
    plan = plan_record(TASKS, {"best": ((0, 1), (2,)), "worst": ((0, 2), (1,)), "together": ((0, 1, 2),),
                               "apart": ((0,), (1,), (2,))}, 11)
    (root / "cells" / "joint").mkdir(parents=True)
    (root / "study.json").write_text(json.dumps({"name": "synthetic", "tasks": list(TASKS), "seeds": SEEDS,
                                                 "steps": 5000, "groups": plan}))
    _affinity_rows(Z, SEEDS).to_parquet(root / "cells" / "joint" / "affinity.parquet")
    pd.DataFrame([{"step": 1000, "seed": s, "task_a": a, "task_b": b, "cosine": c + 0.01 * s}
                  for s in SEEDS for (a, b), c in COS.items()]).to_parquet(root / "cells/joint/grad_pairs.parquet")
    for cell, finals in FINALS.items():
        (root / cell).mkdir(parents=True, exist_ok=True)
        summary = {"status": "failed", "error": "boom"} if cell in failed else _summary(finals)
        (root / cell / "summary.json").write_text(json.dumps(summary))
    return root


def _values(cell: str, task: str) -> np.ndarray:
    return np.array([FINALS[cell][task] + i for i in range(len(SEEDS))])


def test_the_report_from_synthetic_cells(tmp_path):
    study = make_groups_study(tmp_path)
    t = group_tables(study, reps=200)
    realized = t["realized"].set_index(["role", "scope"])
    best_a = realized.loc[("best", A)]  # a partition's score for a task: its group's cell
    assert best_a["seed_values"] == list(_values("groups/CartPole-v1+Acrobot-v1", A))
    assert best_a["mean"] == pytest.approx(452.0) and best_a["n"] == 5 and best_a["lo"] < 452 < best_a["hi"]
    assert realized.loc[("apart", C)]["mean"] == realized.loc[("best", C)]["mean"]  # one cell: MountainCar alone
    agg = realized.xs("aggregate", level="scope")["mean"]
    assert agg["best"] > agg["apart"] > agg["together"] > agg["worst"]

    comp = t["comparisons"].set_index(["comparison", "scope"])
    expected = stats.welch_diff(_values("groups/CartPole-v1+Acrobot-v1", A), _values("cells/joint", A), (0.0, 500.0))
    row = comp.loc[("best - together", A)]
    assert (row["diff"], row["lo"], row["hi"]) == pytest.approx(tuple(expected[:3]))
    assert comp.loc[("best - apart", C)]["note"] == "same cells" and math.isnan(comp.loc[("best - apart", C)]["p"])
    tested = t["comparisons"]["p"].notna()
    assert tested.sum() == 7  # 2 comparisons x (3 tasks + aggregate), less MountainCar's one cell in best and apart
    np.testing.assert_allclose(t["comparisons"]["p_holm"][tested], stats.holm(t["comparisons"]["p"][tested]))

    agree = t["agreement"].set_index(["predictor", "scope"])
    assert agree.loc[("affinity", "aggregate")]["points"] == 4
    assert agree.loc[("affinity", "aggregate")]["rho"] == pytest.approx(1.0)
    assert agree.loc[("cosine", "aggregate")]["rho"] == pytest.approx(-1.0)
    assert agree.loc[("affinity", "aggregate")]["lo"] <= 1.0 and agree.loc[("affinity", "aggregate")]["n"] == 5
    assert agree.loc[("affinity", C)]["points"] == 3  # MountainCar: alone (best, apart), with all, with CartPole

    parts = t["partitions"]
    assert len(parts) == 5 and parts.iloc[0]["partition"] == f"{A}+{B} | {C}"
    assert parts.iloc[0]["score_affinity"] == pytest.approx(1.0, abs=0.05)
    assert parts.set_index("partition").loc[f"{A} | {B} | {C}", "trained_as"] == "apart"

    text = write_groups_report(study).read_text()
    assert "**It rests on 4 points**" in text and f"| best | {A}+{B} \\| {C} |" in text
    assert (study / "groups_data" / "agreement.csv").is_file()


def test_the_joint_runs_pull_per_quarter_beside_each_task_alone(tmp_path):
    """Shares are each window's share averaged (not a ratio of mean norms), sum to 1 over tasks in every quarter,
    and bin by the run's last logged step (a window closing on a quarter's edge counts before it); returns come
    from the joint run and from each task's all-apart cell, binned alike."""
    study = make_groups_study(tmp_path)
    rows, joint_m, alone = [], [], []
    windows = (626, 1252, 1878, 2504, 3130, 3756, 4382, 5008)  # the last ends past the nominal 5000 steps
    for w, step in enumerate(windows):
        # Two windows per quarter: norms 3, 1, 0 then 1, 3, 4.  C's shares are 0 and 1/2, their mean 1/4; a ratio
        # of mean norms would give 4/12 = 1/3.  A's are 3/4 and 1/8.
        norms = {A: 3.0, B: 1.0, C: 0.0} if w % 2 == 0 else {A: 1.0, B: 3.0, C: 4.0}
        for s_ in SEEDS:
            for task, n in norms.items():
                rows.append({"step": step, "seed": s_, "task": task, "grad_norm": n, "weight": 1.0, "loss": 0.1})
                joint_m.append({"step": step, "task": task, "seed": s_, "episode_return": float(w)})
                alone.append({"step": step, "task": task, "seed": s_, "episode_return": 10.0 + w})
    pd.DataFrame(rows).to_parquet(study / "cells/joint/grad_tasks.parquet")
    pd.DataFrame(joint_m).to_parquet(study / "cells/joint/metrics.parquet")
    alone = pd.DataFrame(alone)
    for task in (B, C):  # A's all-apart cell has no metrics: its return alone is n/a
        alone[alone["task"] == task].to_parquet(study / "groups" / task / "metrics.parquet")
    pull = group_tables(study, reps=50)["pull"].set_index(["task", "quarter"])
    assert sorted(pull.index.get_level_values("quarter").unique()) == [0, 1, 2, 3]
    np.testing.assert_allclose(pull.groupby("quarter")["share"].sum(), 1.0)
    assert pull.loc[(C, 1), "share"] == pytest.approx(0.25)  # mean of 0 and 1/2, not 4/12
    assert pull.loc[(A, 1), "share"] == pytest.approx((3 / 4 + 1 / 8) / 2)
    assert pull.loc[(A, 0), "return_joint"] == pytest.approx(0.5)  # windows 0 and 1 (1252 is the first edge)
    assert pull.loc[(A, 3), "return_joint"] == pytest.approx(6.5)  # windows 6 and 7: 5008 is the run's last
    assert pull.loc[(B, 2), "return_alone"] == pytest.approx(14.5) and pull.loc[(C, 3), "return_alone"] == 16.5
    assert math.isnan(pull.loc[(A, 3), "return_alone"])
    text = write_groups_report(study).read_text()
    assert "its pull on the shared trunk in the joint run" in text
    assert f"| {C} | 25% · 0.50 / 10.50 | 25% · 2.50 / 12.50 | 25% · 4.50 / 14.50 | 25% · 6.50 / 16.50 |" in text
    assert f"| {A} | 44% · 0.50 / n/a |" in text
    assert "| task | 0-1.25k | 1.25-2.5k | 2.5-3.76k | 3.76-5.01k |" in text  # of the 5,008 trained, not 5,000 asked


def test_mtdqn_report_rebuilds_a_groups_studys_groups_md(tmp_path, monkeypatch, capsys):
    """`mtdqn report STUDY` rebuilt the joint run's report but not groups.md, which `study groups` writes; now
    both, and it names both, as `mtdqn study groups` does (it named only report.html)."""
    import mtdqn.studies.runner

    study = make_groups_study(tmp_path)
    # the joint run's ordinary report is the plain study's (tested there); this synthetic joint run has no summary
    monkeypatch.setattr(mtdqn.studies.runner, "build", lambda out: out / "report" / "report.html")
    capsys.readouterr()
    main(["report", str(study)])
    assert capsys.readouterr().out.splitlines() == [f"groups report: {study / 'groups.md'}",
                                                    f"report: {study / 'report' / 'report.html'}"]
    assert "**It rests on 4 points**" in (study / "groups.md").read_text()
    assert (study / "groups_data" / "agreement.csv").is_file()


def test_without_the_joint_runs_gradients_there_is_no_pull_section(tmp_path):
    study = make_groups_study(tmp_path)  # no grad_tasks.parquet: a joint run without a shared parameter
    assert group_tables(study, reps=50)["pull"].empty
    assert "pull on the shared trunk" not in write_groups_report(study).read_text()


def test_a_failed_group_is_reported_as_missing(tmp_path):
    t = group_tables(make_groups_study(tmp_path, failed=("groups/CartPole-v1+MountainCar-v0",)), reps=50)
    worst = t["realized"].set_index(["role", "scope"]).loc["worst"]
    assert worst.loc[A, "n"] == 0 and worst.loc[B, "n"] == 5 and math.isnan(worst.loc["aggregate", "mean"])
    assert t["agreement"].set_index(["predictor", "scope"]).loc[("affinity", "aggregate"), "points"] == 3


def test_a_failed_group_cell_is_one_of_the_studys_failed_cells(tmp_path):
    """`mtdqn study` exits 3 naming the failed cells (Study.failed): a groups study's record lists only its joint
    run among its variants, so a failed group cell was never seen and the study exited 0."""
    from mtdqn.results import Study

    study = make_groups_study(tmp_path, failed=("groups/CartPole-v1+MountainCar-v0",))
    record = json.loads((study / "study.json").read_text())
    (study / "study.json").write_text(json.dumps({**record, "variants": ["joint"]}))  # as study_record writes it
    assert Study(study).failed == {"groups/CartPole-v1+MountainCar-v0": "boom"}
    assert set(Study(study).trained_cells) == {"joint", *(c for c in FINALS if c.startswith("groups/"))}


def test_a_lost_affinity_table_and_too_few_points_are_said_as_such(tmp_path):
    """The joint run's affinity.parquet deleted: groups.md said "No affinity was recorded by the joint run"; and
    with two groups failed, "It rests on 2 points ... a perfect ordering of 2 arises by chance once in 2"."""
    study = make_groups_study(tmp_path, failed=("groups/CartPole-v1+MountainCar-v0", "groups/CartPole-v1+Acrobot-v1"))
    (study / "cells" / "joint" / "affinity.parquet").unlink()
    text = write_groups_report(study).read_text()
    assert ("The joint run's affinity.parquet is missing: no affinity matrix here, and every partition's affinity "
            "score is n/a (the partitions trained were chosen from it when the study ran).") in text
    assert "No affinity was recorded" not in text and "| cosine: row i, column j |" in text
    assert ("**It rests on 2 points**, the distinct trained partitions with a score: too few for a rank correlation, "
            "which needs 3.") in text and "arises by chance" not in text


def test_the_pull_tables_quarters_read_in_thousands_at_any_length():
    """A joint run of a million steps labelled its quarters '750-1e+03k'."""
    from mtdqn.analysis.group_report import _pull_lines

    pull = pd.DataFrame([{"task": A, "quarter": q, "share": 1.0, "loss": 0.1, "return_joint": 1.0,
                          "return_alone": 2.0, "last_step": 1_000_000} for q in range(4)])
    assert "| task | 0-250k | 250-500k | 500-750k | 750-1,000k |" in _pull_lines(pull, (A,))


def _tiny_spec(tasks: tuple[str, ...]) -> GroupsSpec:
    return GroupsSpec(name="tiny", tasks=tasks, steps=1000, seeds=2, affinity_every=20,
                      run_options=RunOptions(eval_episodes=2, eval_every=500),
                      options={"hidden": [32], "adapter_width": 16, "num_envs": 4, "log_every": 500,
                               "learning_starts": 200, "buffer_size": 400, "batch_size": 16})


def test_the_joint_study_is_a_one_variant_study_with_the_affinity_on():
    study = joint_study(_tiny_spec((A, B)))
    assert list(study.variants) == ["joint"] and study.reference == "joint"
    assert study.variants["joint"] == {"sharing": "shared", "affinity_every": 20}


def test_the_preset_takes_each_task_familys_settings():
    """Classic tasks get the classic settings; MiniGrid tasks the MiniGrid presets' (10-step returns, 16 envs):
    with the classic ones a DQN learns none of them (tests/test_learning.py's MiniGrid budget note)."""
    from mtdqn.studies.presets import MINIGRID_OPTIONS, groups_preset

    classic = groups_preset(None, 2, 50_000)
    assert classic.options == {"log_every": 2_500, "loss": "mse", "learning_starts": 5_000}
    assert classic.run_options == RunOptions(eval_every=5_000)
    minigrid = groups_preset(MT3, 5, 200_000)
    assert minigrid.options == {**MINIGRID_OPTIONS, "log_every": 4_000, "learning_starts": 2_000}
    assert minigrid.options["n_step"] == 10 and minigrid.options["num_envs"] == 16
    assert minigrid.run_options == RunOptions(eval_every=20_000, eval_episodes=16, checkpoint_every=20_000)
    assert groups_preset(MT3, 5, None).steps == 200_000 and groups_preset(None, 5, None).steps == 100_000


@pytest.mark.parametrize("tasks, steps", [((A, B), 3_000), (None, None), (None, 50_000), (MT3, None), (MT3, 64_000)])
def test_the_preset_asks_for_a_cadence_the_loop_runs(tasks, steps):
    """The trainer rounds a logging window up to whole vector steps and the budget and the cadences to whole
    windows, so the preset asks for windows of whole vector steps dividing both: `--steps 3000` on 4 envs asked
    for windows of 150, which ran as 152 (3,040 steps, an evaluation every 304 instead of 300)."""
    from mtdqn.config import TrainConfig, derive
    from mtdqn.studies.presets import cadence, groups_preset
    from mtdqn.studies.spec import apply_options

    spec = groups_preset(tasks, 2, steps)
    cfg = apply_options(TrainConfig(tasks=spec.tasks, steps=spec.steps, seeds=2), spec.options)
    d = derive(cfg)
    assert d.iters_per_chunk * cfg.num_envs == cfg.log_every and d.env_steps == spec.steps
    assert spec.run_options.eval_every % cfg.log_every == 0 == spec.run_options.checkpoint_every % cfg.log_every
    assert spec.run_options.eval_every == spec.steps // 10
    assert cadence(3_000, 300, 150, 4) == (100, 300)
    assert cadence(5_000, 500, 250, 16) == (240, 480)  # 5,000 is no whole number of vector steps of 16


@pytest.mark.slow
def test_groups_study_end_to_end(tmp_path):
    """Two tasks: two partitions (together, apart), so three cells (the joint run and each task alone)."""
    out = tmp_path / "study"
    result = run_groups_study(_tiny_spec((A, B)), out, progress=False, report=False)
    record = json.loads((out / "study.json").read_text())
    assert record["variants"] == ["joint"] and set(record["groups"]["partitions"]) == {"best", "worst", "together",
                                                                                    "apart"}
    assert {r["partition"] for r in record["groups"]["partitions"].values()} == {f"{A}+{B}", f"{A} | {B}"}
    assert all(s["status"] == "ok" for s in result.summaries.values()) and len(result.summaries) == 3
    assert (out / "cells" / "joint" / "affinity.parquet").is_file()
    realized = pd.read_csv(out / "groups_data" / "realized.csv")
    assert set(realized["role"]) == {"best", "worst", "together", "apart"} and (realized["n"] == 2).all()
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*/*/summary.json")}
    run_groups_study(_tiny_spec((A, B)), out, progress=False, report=False)  # a rerun trains nothing
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/*/summary.json")} == stamps and len(stamps) == 3


def test_groups_md_says_where_its_numbers_cannot_carry_a_ranking(tmp_path):
    """A walk-through's groups.md (1) showed the affinity as means alone and named a 'best' whose score, 1.12e-05,
    was above all apart's 0 in 3 of 5 seeds: the matrix and the predicted scores carry their intervals over
    seeds, and such a best is said to rest on noise; (2) gave the aggregate an interval below what any policy
    can score ([-0.080, 0.286] where the floor is -0.024); (3) opened a 2-seed run, every partition at or below
    random, as a ranking: a smoke-test line and a line naming the tasks no partition learned."""
    from mtdqn.analysis.anchors import lookup, normalize
    from mtdqn.analysis.group_report import _smoke_test, _unlearned
    from mtdqn.analysis.group_scores import normalized_bounds

    clear = write_groups_report(make_groups_study(tmp_path / "clear")).read_text()
    assert "| CartPole-v1 | 1.02 | 0.52 [0.5, 0.54] | -0.18 [-0.2, -0.16] |" in clear
    assert f"| best | {A}+{B} \\| {C} | 1.04 [1, 1.08] |" in clear and "not told from all apart" not in clear
    noisy = make_groups_study(tmp_path / "noisy")  # each seed's affinities shifted by +-0.5: best's score +-1
    rows = _affinity_rows(Z, SEEDS)
    rows["value"] = (rows["value"] * 0.01 + np.where(rows["seed"] % 2 == 0, 0.5, -0.5)).astype(np.float32)
    rows.to_parquet(noisy / "cells" / "joint" / "affinity.parquet")
    text = write_groups_report(noisy).read_text()
    assert "**The predicted best is not told from all apart by the affinity**: its score, 0.21, is above all " \
           "apart's 0 in 3 of 5 seeds, and its 95% interval over the joint run's seeds, [-1.15, 1.57], holds 0" in text
    # the aggregate's interval stays inside the normalized range its tasks can take
    floor = normalized_bounds(TASKS)
    assert floor[0] == pytest.approx(np.mean([float(normalize(lo, lookup(t).random, lookup(t).reference))
                                              for t, lo in ((A, 0.0), (B, -500.0), (C, -200.0))]))
    low = make_groups_study(tmp_path / "low")
    spread = {A: [0.0] * 4 + [500.0], B: [-500.0] * 4 + [-60.0], C: [-200.0] * 4 + [-100.0]}
    for cell in ("groups/CartPole-v1", "groups/Acrobot-v1", "groups/MountainCar-v0"):
        task = next(iter(FINALS[cell]))
        summary = json.loads((low / cell / "summary.json").read_text())
        (low / cell / "summary.json").write_text(json.dumps({**summary, "final_score": {task: spread[task]}}))
    apart = group_tables(low, reps=200)["realized"].set_index(["role", "scope"]).loc[("apart", "aggregate")]
    assert apart["lo"] == pytest.approx(floor[0]) and apart["mean"] > floor[0]  # clipped: the t interval left it
    gap = make_groups_study(tmp_path / "gap")  # seed 0 never measured one pair: scored from the seeds that did
    rows = _affinity_rows(Z, SEEDS)
    rows = rows[~((rows["seed"] == 0) & (rows["task_i"] == A) & (rows["task_j"] == B))]
    rows.to_parquet(gap / "cells" / "joint" / "affinity.parquet")
    best = group_tables(gap, reps=200)["partitions"].set_index("partition").loc[f"{A}+{B} | {C}"]
    assert best["seeds_affinity"] == 4 and math.isfinite(best["score_affinity"])  # (raised: the report was lost)
    assert write_groups_report(gap).is_file()
    near_one = make_groups_study(tmp_path / "near_one")  # A and B give each other ~1 (at most 1) but one seed 0.2
    rows = _affinity_rows(Z, SEEDS)
    pair = rows["task_i"].isin([A, B]) & rows["task_j"].isin([A, B]) & (rows["task_i"] != rows["task_j"])
    rows.loc[pair, "value"] = np.where(rows.loc[pair, "seed"] == 4, 0.2, 1.0).astype(np.float32)
    rows.to_parquet(near_one / "cells" / "joint" / "affinity.parquet")
    best = group_tables(near_one, reps=200)["partitions"].set_index("partition").loc[f"{A}+{B} | {C}"]
    assert best["score_affinity"] == pytest.approx(1.68) and best["hi_affinity"] == 2.0  # t's 2.57: impossible
    assert _smoke_test(5) == "" and _smoke_test(2).startswith("**Smoke test, not evidence.** This study has 2 seeds "
                                                              "per run, fewer than the 5")
    flat = pd.DataFrame({"scope": [A, A, B, B], "mean": [9.4, 11.7, -120.0, -110.0]})  # CartPole below random
    assert _unlearned(flat, (A, B)).startswith("**No trained partition learned CartPole-v1**: every one scores ")


def test_a_seed_without_a_final_score_leaves_the_numbers_it_cannot_give(tmp_path):
    """A NaN final score (an evaluation episode that never ended) in one group cell: the realized means and the
    comparisons drop that seed, and the rank agreement, which averaged each partition's seeds with it and read
    NaN (no rho, no interval), averages the seeds with a score."""
    study = make_groups_study(tmp_path)
    cell = study / "groups/CartPole-v1+Acrobot-v1" / "summary.json"
    summary = json.loads(cell.read_text())
    summary["final_score"][A][2] = float("nan")
    cell.write_text(json.dumps(summary))
    t = group_tables(study, reps=200)
    best = t["realized"].set_index(["role", "scope"]).loc["best"]
    assert best.loc[A, "n"] == 4 and best.loc[A, "mean"] == pytest.approx(np.mean([450, 451, 453, 454]))
    assert best.loc["aggregate", "n"] == 4
    agree = t["agreement"].set_index(["predictor", "scope"])
    row = agree.loc[("affinity", "aggregate")]
    assert row["rho"] == pytest.approx(1.0) and row["n"] == 4 and np.isnan([row["lo"], row["hi"]]).all()  # < 5
    assert agree.loc[("cosine", A)]["rho"] == pytest.approx(-1.0) and agree.loc[("cosine", A)]["n"] == 4
    assert agree.loc[("affinity", C)]["n"] == 5 and np.isfinite(agree.loc[("affinity", C)]["lo"])  # all scored

    # The bootstrap itself, at 6 seeds with one unscored: draws average the seeds they picked that have a value.
    parts = [((0, 1), (2,)), ((0, 2), (1,)), ((0, 1, 2),), ((0,), (1,), (2,))]
    realized = [np.array([4.0, 4.1, np.nan, 4.2, 3.9, 4.0]), np.ones(6), np.full(6, 2.0), np.full(6, 3.0)]
    e = rank_agreement(np.repeat(Z[None], 6, axis=0), realized, parts, None, reps=200)
    assert e.value == pytest.approx(1.0) and e.n == 5 and e.lo == pytest.approx(1.0) and e.hi == pytest.approx(1.0)
