"""Does the lookahead affinity explain which pairs of D'Eramo's five tasks gain from sharing? (issue 21)

The ground truth TAG's criterion (Fifty et al., NeurIPS 2021) is meant to
predict: for each of the 10 pairs of the ``deramo`` tasks (CartPole-v1,
Acrobot-v1, MountainCar-v0, CarOnHill-v0, InvertedPendulumDiscrete-v0), how
much each task of the pair gains from training *together* (one ``shared``
agent on the two tasks) over training *apart* (a single-task agent), with the
``deramo`` preset's protocol (``mtdqn/studies/presets.py``, ``_deramo``:
50,000 env steps per task, one update of 100 transitions per task per step,
10 seeds, each task its own gamma) and its metric, the discounted greedy
return at the end of training (10 episodes per task and seed).

Cells (ordinary study cells, so a rerun skips finished ones and a killed one
resumes):

- ``cells/joint``: one ``shared`` agent on all five tasks, measuring the
  lookahead affinity Z_{i->j} about 100 times per run (``--affinity-every``)
  and the gradient cosine: the predictors, as ``mtdqn study groups``
  measures them;
- ``groups/<a>+<b>``: each pair, also measuring its own Z (a third predictor:
  the affinity within the pair's own training);
- ``groups/<a>``: each task alone.

The gain of task i from partner j, per ordered pair (20 of them), is
``mean_s J_i(together with j) - mean_s J_i(alone)`` (separate runs, so the
difference is Welch's, with its p and Holm over the 20), divided by task i's
gap between a uniformly random policy's discounted return (measured in each
run's summary) and the largest discounted return its rewards allow (a bound,
not always reachable)
(:func:`mtdqn.analysis.ranges.discounted_bounds`): a gain of 0.1 closes a
tenth of the gap, whatever the task's reward scale.  The predictor of i's gain
from j is Z_{j->i} (how much a step on j's loss lowers i's), and the cosine
of i and j (symmetric).  Their agreement is Spearman's and Pearson's
correlation across the 20 ordered pairs, with a percentile bootstrap over
seeds (each run's seeds resampled once per replicate, for everything that run
measured; runs independently).

    python benchmarks/pairwise_affinity.py                     # 10 seeds, 50,000 steps per task
    python benchmarks/pairwise_affinity.py --seeds 2 --steps 2000 --out runs/pairwise-smoke   # smoke run
    python benchmarks/pairwise_affinity.py --table-only

It writes ``benchmarks/results/pairwise_affinity.md`` (and the per-pair rows
as ``pairwise_affinity.csv`` beside it).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

PREDICTORS = {"affinity_joint": "Z_{j→i}, five-task joint run", "affinity_pair": "Z_{j→i}, the pair's own run",
              "cosine_joint": "gradient cosine of i and j, five-task joint run"}


def _study(seeds: int | None, steps: int | None):
    """The joint run's study spec: the deramo preset's tasks, budget, seeds and options, one `shared` variant
    measuring the affinity (the groups study's joint run on the deramo protocol)."""
    from mtdqn.runoptions import RunOptions
    from mtdqn.studies.groups import GroupsSpec, joint_study
    from mtdqn.studies.presets import PRESETS

    preset = PRESETS["deramo"]()
    spec = GroupsSpec(name="pairwise-deramo", tasks=tuple(preset["tasks"]),
                      steps=preset["steps"] if steps is None else steps,
                      seeds=preset["seeds"] if seeds is None else seeds,
                      run_options=RunOptions(eval_episodes=preset["eval_episodes"]), options=dict(preset["options"]))
    return joint_study(spec)


def _cells(study) -> list[tuple[Any, str]]:
    """(cell config, folder relative to the study) of every run, in training order: the joint run, each task
    alone, then each pair (measuring its own affinity at the joint run's rate of measurements per update), so
    a stopped run already has every gain of the pairs it finished."""
    from mtdqn.studies.groups import JOINT, group_cell, group_name
    from mtdqn.studies.runner import cell_configs

    joint = cell_configs(study, 0)[0]
    every = joint.config.affinity_every
    out = [(joint, f"cells/{JOINT}")]
    out += [(group_cell(study, (t,)), f"groups/{group_name((t,))}") for t in study.tasks]
    for a, b in itertools.combinations(study.tasks, 2):
        cell = group_cell(study, (a, b))
        out.append((dataclasses.replace(cell, config=dataclasses.replace(cell.config, affinity_every=every)),
                    f"groups/{group_name((a, b))}"))
    return out


def run(out: Path, seeds: int | None, steps: int | None, only: list[str] | None = None) -> float:
    """Train every cell not finished yet (of ``only``, folders relative to ``out``, when given: two processes
    with disjoint lists use both cores where one cell leaves one idle); the wall seconds of this invocation."""
    from rich.console import Console

    from mtdqn.devices import cpu_plan, unroll_cpu_threefry, use_cpu_cores
    from mtdqn.io import write_json
    from mtdqn.studies.cell import cell_status
    from mtdqn.studies.runner import progress_printer, run_local, study_record

    study = _study(seeds, steps)
    use_cpu_cores(*cpu_plan(study.seeds, list(study.tasks), 0))  # as `mtdqn study` starts JAX
    unroll_cpu_threefry()
    every = _cells(study)
    known = [rel for _, rel in every]
    unknown = sorted(set(only or ()) - set(known))
    if unknown:
        raise SystemExit(f"error: --cells: no such cell {unknown[0]!r}; the cells are {', '.join(known)}")
    cells = [(c, out / rel) for c, rel in every if only is None or rel in only]
    statuses = [cell_status(c, d) for c, d in cells]  # a conflicting finished cell stops it before any write
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "study.json", {**study_record(study), "pairwise": known})
    on_event = progress_printer(Console(), len(cells))
    for (cell, _), status in zip(cells, statuses):
        if status == "done":
            on_event("skip", cell, None)
    t0 = time.perf_counter()
    run_local([(c, d) for (c, d), s in zip(cells, statuses) if s != "done"], on_event, True)
    return time.perf_counter() - t0


def _summary(cell_dir: Path) -> dict[str, Any]:
    path = cell_dir / "summary.json"
    summary = json.loads(path.read_text()) if path.is_file() else {}
    if summary.get("status") != "ok":
        raise SystemExit(f"error: {path}: cell not finished (status {summary.get('status')!r})")
    return summary


def _finished(cell_dir: Path) -> bool:
    path = cell_dir / "summary.json"
    return path.is_file() and json.loads(path.read_text()).get("status") == "ok"


def _scores(cell_dir: Path) -> dict[str, np.ndarray]:
    """{task: (seeds,) discounted greedy return at the end of training} of a finished cell."""
    return {t: np.asarray(v, np.float64) for t, v in _summary(cell_dir)["final_eval_discounted"].items()}


def _gap(task: str, cell_dir: Path) -> float:
    """Task's gap from a random policy's discounted return (as its single-task run measured it) to the largest
    discounted return an episode can have."""
    from mtdqn.analysis import ranges

    summary = _summary(cell_dir)
    return ranges.discounted_bounds(task, summary["task_gamma"][task])[1] - summary["random_return_discounted"][task]


def _runs(study_dir: Path, tasks: tuple[str, ...]) -> dict[str, Any]:
    """Every finished run's per-seed numbers, kept per run (the bootstrap resamples each run's seeds once):
    ``alone[t]`` (seeds,) scores of t's single-task run; ``pairs[(a, b)]`` for each finished pair, a <= b in
    the study's order: {"score": {a: (seeds,), b: (seeds,)}, "z": {(a, b): (seeds,) Z_{a->b}, (b, a): ...}}
    from the pair's own run; ``joint``: {"affinity", "cosine"} (seeds, T, T) of the five-task run, row the task
    that steps (Z[i, j] = Z_{i->j}: affinity.parquet's ``task_i`` steps, ``task_j``'s loss is measured)."""
    from mtdqn.analysis.group_scores import predictor_matrices
    from mtdqn.studies.groups import group_name

    alone = {t: _scores(study_dir / "groups" / group_name((t,)))[t] for t in tasks}
    pairs = {}
    for a, b in itertools.combinations(tasks, 2):
        cell = study_dir / "groups" / group_name((a, b))
        if not _finished(cell):
            continue
        own = predictor_matrices(cell, (a, b))["affinity"]
        if own is None:
            raise SystemExit(f"error: {cell}: the pair's run has no affinity.parquet")
        pairs[a, b] = {"score": _scores(cell), "z": {(a, b): own[:, 0, 1], (b, a): own[:, 1, 0]}}
    joint = predictor_matrices(study_dir / "cells" / "joint", tasks)
    if joint["affinity"] is None or joint["cosine"] is None:
        raise SystemExit(f"error: {study_dir / 'cells' / 'joint'}: no affinity.parquet or grad_pairs.parquet")
    return {"tasks": tasks, "alone": alone, "pairs": pairs, "joint": joint,
            "gaps": {t: _gap(t, study_dir / "groups" / group_name((t,))) for t in tasks}}


def _ordered(raw: dict[str, Any]) -> list[tuple[str, str, tuple[str, str]]]:
    """(i, j, the pair run's key) of every ordered pair whose run finished: i gains, j is its partner."""
    return [(i, j, (i, j) if (i, j) in raw["pairs"] else (j, i))
            for i, j in itertools.permutations(raw["tasks"], 2) if (i, j) in raw["pairs"] or (j, i) in raw["pairs"]]


def _seed_mean(v: np.ndarray, axis: int) -> np.ndarray:
    """Mean over seeds of what each measured; NaN (silently) where no seed measured it (a matrix's diagonal)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(v, axis=axis)


def _values(raw: dict[str, Any], draw: Any) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(gains (..., pairs), {predictor: (..., pairs)}) with every run's per-seed array reduced by ``draw`` (a
    function of the run's name and the array, returning its mean over seeds as the caller resamples them)."""
    tasks, order = raw["tasks"], _ordered(raw)
    k = {t: n for n, t in enumerate(tasks)}
    gains = np.stack([(draw(key, raw["pairs"][key]["score"][i]) - draw(i, raw["alone"][i])) / raw["gaps"][i]
                      for i, j, key in order], -1)
    joint_z = draw("joint", raw["joint"]["affinity"])
    joint_cos = draw("joint", raw["joint"]["cosine"])
    preds = {"affinity_joint": np.stack([joint_z[..., k[j], k[i]] for i, j, _ in order], -1),
             "affinity_pair": np.stack([draw(key, raw["pairs"][key]["z"][j, i]) for i, j, key in order], -1),
             "cosine_joint": np.stack([joint_cos[..., k[i], k[j]] for i, j, _ in order], -1)}
    return gains, preds


def pair_rows(study_dir: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """One row per ordered pair of a finished pair run (i gains, j the partner): the normalized gain with its
    Welch interval and p (Holm over the rows), and each predictor's seed mean; and the runs' per-seed numbers."""
    from mtdqn.analysis import stats

    study = json.loads((study_dir / "study.json").read_text())
    raw = _runs(study_dir, tuple(study["tasks"]))
    if not raw["pairs"]:
        raise SystemExit(f"error: {study_dir}: no pair's run has finished yet; nothing to correlate")
    _, preds = _values(raw, lambda run, v: _seed_mean(v, 0))
    rows = []
    for n, (i, j, key) in enumerate(_ordered(raw)):
        x, y, gap = raw["pairs"][key]["score"][i], raw["alone"][i], raw["gaps"][i]
        d = stats.welch_diff(x / gap, y / gap)
        rows.append({"task": i, "partner": j, "alone": np.mean(y), "together": np.mean(x), "gap": gap,
                     "gain": d.value, "gain_lo": d.lo, "gain_hi": d.hi, "p": stats.welch_p(x, y),
                     "n": f"{len(x)} / {len(y)}", **{name: float(v[n]) for name, v in preds.items()}})
    table = pd.DataFrame(rows)
    p = table["p"].to_numpy()
    ok = np.isfinite(p)
    table["p_holm"] = np.nan
    table.loc[ok, "p_holm"] = stats.holm(p[ok])
    return table, raw


def correlations(table: pd.DataFrame, raw: dict[str, Any], *, reps: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Per predictor: Spearman's and Pearson's correlation of its values with the gains across the ordered
    pairs, each with a 95% percentile bootstrap over seeds: each run's seeds resampled once per replicate
    and used for everything that run measured (a pair run's two scores and two affinities alike), runs
    independently; no interval below :data:`~mtdqn.analysis.stats.MIN_SEEDS` seeds in a run."""
    from mtdqn.analysis import stats
    from mtdqn.analysis.group_scores import spearman_rows

    rng, picks = np.random.default_rng(seed), {}

    def draw(run: Any, v: np.ndarray) -> np.ndarray:  # (reps, ...): v's seed mean under the run's draw
        if run not in picks:
            picks[run] = rng.integers(0, len(v), (reps, len(v)))
        return _seed_mean(v[picks[run]], 1)

    gains, preds = _values(raw, draw)
    seeds = min([len(v) for v in raw["alone"].values()] + [len(raw["joint"]["affinity"])]
                + [len(r["score"][k]) for r in raw["pairs"].values() for k in r["score"]])
    out = []
    for name, pred in preds.items():
        row = {"predictor": PREDICTORS[name], "pairs": len(table)}
        for label, fn in (("spearman", spearman_rows), ("pearson", _pearson_rows)):
            row[label] = float(fn(table[name].to_numpy()[None], table["gain"].to_numpy()[None])[0])
            draws = fn(pred, gains)
            draws = draws[np.isfinite(draws)]
            enough = seeds >= stats.MIN_SEEDS and draws.size > 0
            lo, hi = np.quantile(draws, [0.025, 0.975]) if enough else (np.nan, np.nan)
            row |= {f"{label}_lo": float(lo), f"{label}_hi": float(hi)}
        out.append(row)
    return pd.DataFrame(out)


def _pearson_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    x, y = x - x.mean(-1, keepdims=True), y - y.mean(-1, keepdims=True)
    den = np.sqrt((x ** 2).sum(-1) * (y ** 2).sum(-1))
    return np.where(den > 0, (x * y).sum(-1) / np.where(den > 0, den, 1.0), np.nan)


def _g(x: float) -> str:
    return "—" if not np.isfinite(x) else f"{x:.3g}"


def _ci(value: float, lo: float, hi: float, digits: int) -> str:
    """``value [lo, hi]`` with signs, or the value alone where no interval was computed (too few seeds)."""
    if not np.isfinite(value):
        return "—"
    return f"{value:+.{digits}f}" + (f" [{lo:+.{digits}f}, {hi:+.{digits}f}]" if np.isfinite(lo) else "")


def markdown(study_dir: Path, wall: float | None) -> tuple[str, pd.DataFrame]:
    """The results page, and the per-pair table behind it."""
    table, raw = pair_rows(study_dir)
    corr = correlations(table, raw)
    study = json.loads((study_dir / "study.json").read_text())
    walls = {rel: _summary(study_dir / rel)["wall_time_s"] for rel in study["pairwise"] if _finished(study_dir / rel)}
    pairs = len(table) // 2
    lines = [
        "# Pairwise ground truth: does the lookahead affinity explain which deramo tasks gain from sharing?",
        "",
        f"Made by `python benchmarks/pairwise_affinity.py` (study folder `{study_dir}`): the `deramo` protocol, "
        f"{len(study['seeds'])} seeds per run, {study['steps']:,} env steps per task, the discounted greedy return "
        f"at the end of training. {len(walls)} of {len(study['pairwise'])} runs finished ({pairs} of 10 pairs), {sum(walls.values()) / 60:.0f} min of cell wall time"
        + (f"; this invocation {wall / 60:.0f} min" if wall is not None else "") + ".",
        "",
        "Gain of task i from partner j: (J_i trained with j − J_i trained alone) / (the largest discounted return "
        "i's rewards allow — a bound, not always reachable: 0 for Acrobot and MountainCar — minus J_i of a random "
        "policy), Welch's 95% interval and p over seeds (separate runs), Holm-adjusted over the ordered pairs shown. "
        "Correlation intervals resample each run's seeds (seed noise only, not the choice of tasks); the cosine is "
        "symmetric, so it has one value per pair and ties in its ranks. "
        "Predictors: Z_{j→i} = 1 − L_i(after a step on j's loss) / L_i, averaged over training and seeds, in the "
        "five-task joint run and in the pair's own run; the gradient cosine of i and j on the shared parameters "
        "in the joint run.",
        "",
        f"## Correlation with the gain across the {len(table)} ordered pairs",
        "",
        "| predictor | Spearman [95% bootstrap] | Pearson [95% bootstrap] |",
        "|---|---|---|",
    ]
    for r in corr.itertuples():
        lines.append(f"| {r.predictor} | {_ci(r.spearman, r.spearman_lo, r.spearman_hi, 2)} | "
                     f"{_ci(r.pearson, r.pearson_lo, r.pearson_hi, 2)} |")
    lines += ["", "## Per ordered pair", "",
              "| task i | partner j | J_i alone | J_i with j | gain [95% CI] | p (Holm) | Z_{j→i} joint | "
              "Z_{j→i} pair | cosine | seeds (with / alone) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in table.itertuples():
        lines.append(f"| {r.task} | {r.partner} | {_g(r.alone)} | {_g(r.together)} | "
                     f"{_ci(r.gain, r.gain_lo, r.gain_hi, 3)} | {_g(r.p)} ({_g(r.p_holm)}) | {_g(r.affinity_joint)} | "
                     f"{_g(r.affinity_pair)} | {_g(r.cosine_joint)} | {r.n} |")
    return "\n".join(lines) + "\n", table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=None, help="override the preset's 10 seeds")
    parser.add_argument("--steps", type=int, default=None, help="override the preset's 50,000 env steps per task")
    parser.add_argument("--out", type=Path, default=Path("runs") / "pairwise-deramo", help="study folder")
    parser.add_argument("--table-only", action="store_true", help="only read the stored cells in --out")
    parser.add_argument("--cells", default=None,
                        help="train only these cells (comma-separated folders, e.g. groups/CartPole-v1); "
                             "run two such processes with disjoint lists, never two on one cell")
    parser.add_argument("--md", type=Path, default=Path(__file__).parent / "results" / "pairwise_affinity.md")
    args = parser.parse_args()
    only = None if args.cells is None else [c.strip() for c in args.cells.split(",") if c.strip()]
    wall = None if args.table_only else run(args.out, args.seeds, args.steps, only)
    text, table = markdown(args.out, wall)
    args.md.parent.mkdir(parents=True, exist_ok=True)
    args.md.write_text(text)
    table.to_csv(args.md.with_suffix(".csv"), index=False)
    print(text)


if __name__ == "__main__":
    main()
