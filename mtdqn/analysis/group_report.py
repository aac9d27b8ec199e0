"""The groups study's report: STUDY/groups.md and its tables under STUDY/groups_data/ (parquet and csv).

What it states (numbers from :mod:`mtdqn.analysis.group_scores`):

- every partition's predicted score, by the lookahead affinity and by the gradient cosine (``partitions``);
- per task and in aggregate, the realized score of each trained partition: the mean over seeds with a
  Student-t 95% interval inside the return's range, or below MIN_SEEDS seeds the seeds themselves (``realized``);
- whether the predicted best beats all-together and all-apart: Welch's difference and test per task and in
  aggregate, Holm-corrected over every comparison made (``comparisons``);
- Spearman's rank correlation between predicted and realized scores, for each predictor side by side
  (``agreement``);
- what goes with a task's gain or loss beside the others: in the joint run, per quarter of training, each
  task's share of the shared gradient and its training return, beside its return alone (``pull``).  A share
  that falls while the return alone climbs is a task the trunk no longer serves; whether the others starve it
  or it pulls less because it finds no reward, these numbers cannot separate (an intervention such as the
  `unit-norm` strategy, which equalizes the tasks' gradient norms, can).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mtdqn.errors import count
from mtdqn.rundir import STUDY_RECORD

from . import captions, fmt, ranges, stats
from .group_scores import (PREDICTORS, normalized_bounds, normalized_mean, points, predictor_matrices, pull_table,
                           rank_agreement, realized_scores, roles, score_weights, seed_mean)
from .groups import describe_partition, partition_score, partitions, ranked
from .outputs import write_frame, write_text
from .ranges import Bounds, return_bounds
from .tables import NEAR_RANDOM, near_random

__all__ = ["AGGREGATE", "group_tables", "write_groups_report"]

AGGREGATE = "aggregate"
"""The scope name of the mean over tasks of the anchor-normalized score."""
_AGAINST = ("together", "apart")


def _mean_matrices(mats: dict[str, np.ndarray | None]) -> dict[str, np.ndarray | None]:
    """Each predictor's matrix averaged over the joint run's seeds; None where absent or incomplete."""
    return {name: seed_mean(m) for name, m in mats.items()}


def partitions_table(z: dict[str, np.ndarray | None], tasks: tuple[str, ...], plan: dict[str, Any],
                     per_seed: dict[str, np.ndarray | None] | None = None) -> pd.DataFrame:
    """Every partition with its score and rank under each predictor (NaN where the predictor is missing), the
    score's 95% t interval over the joint run's seeds and its count of seeds scoring above all apart's 0
    (``per_seed``: each predictor's (seeds, T, T) matrices), and the roles it was trained in; in the affinity's
    ranking order."""
    trained: dict[str, list[str]] = {}
    for role, entry in roles(plan):
        trained.setdefault(entry["partition"], []).append(role)
    order = [p for p, _ in ranked(z["affinity"])] if z["affinity"] is not None else list(partitions(len(tasks)))
    frame = pd.DataFrame({"partition": [describe_partition(p, tasks) for p in order],
                          "groups": [len(p) for p in order]})
    for name in PREDICTORS:
        scores = [partition_score(z[name], p) if z[name] is not None else np.nan for p in order]
        frame[f"score_{name}"] = scores
        frame[f"rank_{name}"] = pd.Series(scores).rank(ascending=False, method="min")
        seeds = (per_seed or {}).get(name) if z[name] is not None else None
        by_seed = [stats.finite_values([_seed_score(m, p) for m in seeds]) if seeds is not None else
                   np.array([]) for p in order]
        # a partition's score is linear in Z: its mean is the score; its interval inside what the entries allow
        spread = [stats.t_mean(v, _score_bounds(name, p)) for v, p in zip(by_seed, order)]
        frame[f"lo_{name}"], frame[f"hi_{name}"] = [e.lo for e in spread], [e.hi for e in spread]
        frame[f"seeds_{name}"] = [v.size for v in by_seed]
        frame[f"above_apart_{name}"] = [int((v > 0).sum()) for v in by_seed]
    frame["trained_as"] = [",".join(trained.get(label, [])) for label in frame["partition"]]
    return frame


def _score_bounds(predictor: str, partition: Any) -> Bounds:
    """The range a partition's score can take: each task in a group of two or more scores the mean of entries in
    the predictor's range (:data:`_MATRIX_BOUNDS`), a task alone 0, so m such tasks sum to m times that range."""
    grouped = sum(len(group) for group in partition if len(group) > 1)
    lo, hi = _MATRIX_BOUNDS[predictor]
    return (grouped * lo if grouped else 0.0, grouped * hi)


def _seed_score(matrix: np.ndarray, partition: Any) -> float:
    """One seed's score of ``partition`` (:func:`score_weights`' product); NaN where that seed did not measure a
    pair it needs (the mean over seeds takes each pair from the seeds that measured it: :func:`seed_mean`)."""
    weights = score_weights(partition, len(matrix), None)
    used = weights != 0
    return float((weights[used] * matrix[used]).sum()) if np.isfinite(matrix[used]).all() else float("nan")


def _scopes(real: dict[str, np.ndarray | None], tasks: tuple[str, ...]) -> dict[str, np.ndarray | None]:
    return {**{t: real[t] for t in tasks}, AGGREGATE: normalized_mean(real)}


def _bounds(scope: str, tasks: tuple[str, ...]) -> Bounds:
    """The range a scope's score can take: a task's return range, or the aggregate's normalized one."""
    return normalized_bounds(tasks) if scope == AGGREGATE else return_bounds(scope)


def realized_table(real: dict[str, dict[str, np.ndarray | None]], plan: dict[str, Any],
                   tasks: tuple[str, ...]) -> pd.DataFrame:
    """Per role and scope (each task, and the aggregate): mean, interval, seed count and the seeds' values."""
    rows = []
    for role, entry in roles(plan):
        for scope, v in _scopes(real[role], tasks).items():
            e = stats.t_mean(v, _bounds(scope, tasks)) if v is not None else None
            rows.append({"role": role, "partition": entry["partition"], "scope": scope,
                         "mean": e.value if e else np.nan, "lo": e.lo if e else np.nan, "hi": e.hi if e else np.nan,
                         "n": e.n if e else 0, "seed_values": [] if v is None else [float(x) for x in v]})
    return pd.DataFrame(rows)


def comparisons_table(real: dict[str, dict[str, np.ndarray | None]], plan: dict[str, Any],
                      tasks: tuple[str, ...]) -> pd.DataFrame:
    """Predicted best minus together and minus apart, per scope: Welch's difference and p, Holm-adjusted over
    the table.  A scope where both sides are the same cells (the same partition, or the task's same group) is
    not a comparison: its difference is 0 by construction, and it is marked, not tested."""
    cells = {role: {t: g["cell"] for g in e["groups"] for t in g["tasks"]} for role, e in plan["partitions"].items()}
    rows = []
    for other in _AGAINST:
        best, them = _scopes(real["best"], tasks), _scopes(real[other], tasks)
        for scope in best:
            same = all(cells["best"][t] == cells[other][t] for t in (tasks if scope == AGGREGATE else (scope,)))
            note = "same cells" if same else "missing" if best[scope] is None or them[scope] is None else ""
            d = stats.welch_diff(best[scope], them[scope], _bounds(scope, tasks)) if not note else \
                stats.Estimate(np.nan, np.nan, np.nan, 0)
            rows.append({"comparison": f"best - {other}", "scope": scope, "diff": d.value, "lo": d.lo, "hi": d.hi,
                         "n": d.n, "p": stats.welch_p(best[scope], them[scope]) if not note else np.nan,
                         "note": note})
    frame = pd.DataFrame(rows)
    frame["p_holm"] = stats.holm(frame["p"].to_numpy())
    return frame


def agreement_table(mats: dict[str, np.ndarray | None], real: dict[str, dict[str, np.ndarray | None]],
                    plan: dict[str, Any], tasks: tuple[str, ...], reps: int, seed: int) -> pd.DataFrame:
    """Per predictor and scope: Spearman's rho between predicted and realized scores over the distinct trained
    partitions (for a task, its distinct groups) with a finished score, and its bootstrap interval."""
    rows = []
    for name in PREDICTORS:
        for scope in (AGGREGATE, *tasks):
            task = None if scope == AGGREGATE else tasks.index(scope)
            scored = [(p, _scopes(real[role], tasks)[scope]) for role, p in points(plan, tasks, None if task is None
                                                                                  else scope)]
            scored = [(p, v) for p, v in scored if v is not None]
            m = mats[name]
            usable = seed_mean(m) is not None and len(scored) >= 3
            e = rank_agreement(m, [v for _, v in scored], [p for p, _ in scored], task, reps=reps, seed=seed) \
                if usable else stats.Estimate(np.nan, np.nan, np.nan, 0)
            rows.append({"predictor": name, "scope": scope, "points": len(scored), "rho": e.value, "lo": e.lo,
                         "hi": e.hi, "n": e.n})
    return pd.DataFrame(rows)


def group_tables(study_dir: Path, *, reps: int = 2000, seed: int = 0) -> dict[str, pd.DataFrame]:
    """Every table of the report, keyed by its groups_data/ file stem."""
    plan = json.loads((Path(study_dir) / STUDY_RECORD).read_text())["groups"]
    tasks = tuple(plan["tasks"])
    mats = predictor_matrices(Path(study_dir) / plan["joint"], tasks)
    real = realized_scores(study_dir, plan)
    z = _mean_matrices(mats)
    spread = {n: [[stats.t_mean(mats[n][:, i, j], _MATRIX_BOUNDS[n]) for j in range(len(tasks))]
                  for i in range(len(tasks))] for n in PREDICTORS if z[n] is not None}
    matrix = pd.DataFrame([{"predictor": n, "task_i": a, "task_j": b, "value": z[n][i, j],
                            "lo": spread[n][i][j].lo, "hi": spread[n][i][j].hi, "n": spread[n][i][j].n}
                           for n in PREDICTORS if z[n] is not None
                           for i, a in enumerate(tasks) for j, b in enumerate(tasks)])
    return {"partitions": partitions_table(z, tasks, plan, mats), "matrix": matrix,
            "realized": realized_table(real, plan, tasks), "comparisons": comparisons_table(real, plan, tasks),
            "agreement": agreement_table(mats, real, plan, tasks, reps, seed),
            "pull": pull_table(study_dir, plan)}


_MATRIX_BOUNDS = {"affinity": ranges.AFFINITY, "cosine": ranges.COSINE}
"""The range of each predictor's entries, which their intervals over seeds stay inside."""


def _sig(x: float) -> str:
    """Three significant digits: affinities are often ~1e-4 (a step of size lr moves a loss by little)."""
    return f"{x:.3g}" if math.isfinite(x) else "n/a"


def _sig_interval(value: float, lo: float, hi: float) -> str:
    """A predictor's value with its 95% interval over the joint run's seeds where it has one."""
    return _sig(value) + (f" [{_sig(lo)}, {_sig(hi)}]" if math.isfinite(lo) and math.isfinite(hi) else "")


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell (a partition's groups are separated by '|')."""
    return text.replace("|", "\\|")


def _est(r: pd.Series) -> str:
    if r["n"] == 0:
        return "failed or missing"
    return fmt.estimate(r["mean"], r["lo"], r["hi"], fmt.values(r["seed_values"]))


def _diff(r: Any) -> str:
    if r.note:
        return {"same cells": "0 (the same cells)", "missing": "failed or missing"}[r.note]
    scale = max(abs(v) for v in (r.diff, r.lo, r.hi) if math.isfinite(v))
    sign = lambda v: ("+" if v > 0 else "") + fmt.num(v, scale)  # noqa: E731
    return sign(r.diff) + (f" [{sign(r.lo)}, {sign(r.hi)}]" if math.isfinite(r.lo) else
                           f" (n {r.n} < {stats.MIN_SEEDS}: no interval)")


_PREDICTOR_FILES = {"affinity": "affinity.parquet", "cosine": "grad_pairs.parquet"}
"""The joint run's table each predictor is read from (:func:`predictor_matrices`)."""


def _matrix_lines(matrix: pd.DataFrame, name: str, tasks: tuple[str, ...], file_missing: bool = False) -> list[str]:
    m = matrix[matrix["predictor"] == name]
    if m.empty and file_missing:  # the study measured it: the file is gone, not the measurement never made
        chosen = " (the partitions trained were chosen from it when the study ran)" if name == "affinity" else ""
        return [f"The joint run's {_PREDICTOR_FILES[name]} is missing: no {name} matrix here, and every partition's "
                f"{name} score is n/a{chosen}."]
    if m.empty:
        return [f"No {name} was recorded by the joint run."]
    cell = {(r.task_i, r.task_j): _sig_interval(r.value, getattr(r, "lo", np.nan), getattr(r, "hi", np.nan))
            if r.task_i != r.task_j else _sig(r.value) for r in m.itertuples()}
    return [f"| {name}: row i, column j | " + " | ".join(tasks) + " |", "|---" * (len(tasks) + 1) + "|",
            *[f"| {a} | " + " | ".join(cell[a, b] for b in tasks) + " |" for a in tasks]]


def _markdown(record: dict[str, Any], t: dict[str, pd.DataFrame], missing: tuple[str, ...] = ()) -> str:
    """groups.md; ``missing``: the predictors whose table the joint run no longer holds."""
    plan, tasks = record["groups"], tuple(record["groups"]["tasks"])
    n_seeds, steps = len(record["seeds"]), record["steps"]
    distinct = int(t["agreement"].query("scope == @AGGREGATE")["points"].max())
    lines = [f"# Which tasks should share a network: groups study `{record['name']}`", "",
             *(f"{line}\n" for line in (_smoke_test(n_seeds), _unlearned(t["realized"], tasks)) if line),
             f"Tasks {', '.join(tasks)}; {n_seeds} seeds; {steps:,} env steps per task per run. Stage 1: one joint "
             f"`shared` run of every task (`{plan['joint']}`) measured the lookahead affinity Z_i→j every "
             f"{plan['affinity_every']} updates (TAG, Fifty et al. 2021) and logged the gradient cosine. Stage 2: "
             "every partition of the tasks scored by TAG's criterion (the sum over tasks of the mean affinity its "
             "group-mates give it; a task alone scores 0) from each predictor averaged over the joint run's seeds. "
             "Stage 3: the affinity's predicted best and worst partitions, all tasks together and all apart, "
             "each group its own `shared` agent (a group of one: a single-task agent) with the study's seeds. "
             "The all-together partition is the joint run itself: one `shared` agent on every task with these "
             "seeds (the measurement changes no parameter).", "",
             "## Predictors (joint run, mean over seeds)", "",
             f"Each pair's mean over the joint run's seeds with its 95% t interval (below {stats.MIN_SEEDS} seeds: "
             "none).", "",
             *_matrix_lines(t["matrix"], "affinity", tasks, "affinity" in missing), "",
             *_matrix_lines(t["matrix"], "cosine", tasks, "cosine" in missing), "",
             f"All {len(t['partitions'])} partitions and their scores: groups_data/partitions.csv.", "",
             "## Realized score of each trained partition", "",
             "Final score (greedy undiscounted return) per task: a partition's score for a task is that of the "
             "group holding it; aggregate: the mean over tasks of the score normalized by fixed anchors (0 random, "
             f"1 reference). Mean [95% t interval] over seeds, below {stats.MIN_SEEDS} seeds the seeds themselves.",
             "", "| role | partition | predicted (affinity) | predicted (cosine) | " + " | ".join(tasks)
             + f" | {AGGREGATE} |", "|---" * (len(tasks) + 5) + "|"]
    scores = t["partitions"].set_index("partition")
    for role, entry in roles(plan):
        rows = t["realized"][t["realized"]["role"] == role].set_index("scope")
        row = scores.loc[entry["partition"]]
        pred = [_sig_interval(row[f"score_{n}"], row.get(f"lo_{n}", np.nan), row.get(f"hi_{n}", np.nan))
                for n in PREDICTORS]
        lines.append(f"| {role} | {_cell(entry['partition'])} | {' | '.join(pred)} | "
                     + " | ".join(_est(rows.loc[s]) for s in (*tasks, AGGREGATE)) + " |")
    if (caveat := _chosen_on_noise(scores, plan)):
        lines += ["", caveat]
    lines += ["", "## Does the predicted best beat all together and all apart?", "",
              f"Difference of means [95% Welch interval] (below {stats.MIN_SEEDS} seeds: none) and Welch's p, "
              "Holm-adjusted over every comparison in this table; > 0: the predicted best is better.", "",
              "| comparison | scope | difference | p (Holm) |", "|---|---|---|---|"]
    for r in t["comparisons"].itertuples():
        lines.append(f"| {r.comparison} | {r.scope} | {_diff(r)} | {fmt.pvalue(r.p_holm)} |")
    lines += ["", "## Do the predictors rank the partitions as training does?", "",
              "Spearman's rank correlation between predicted and realized scores of the distinct trained "
              "partitions (for a task: of the distinct groups they put it in), with a 95% percentile bootstrap "
              "interval over seeds (joint run and trained cells resampled independently; below "
              f"{stats.MIN_SEEDS} seeds: none). **It rests on {count(distinct, 'point')}**, the distinct trained "
              + (f"partitions: rho takes only a few values on so few, and a perfect ordering of {distinct} arises by "
                 f"chance once in {math.factorial(distinct)}; below 3 points there is none. " if distinct >= 3 else
                 "partitions with a score: too few for a rank correlation, which needs 3. ")
              + "The partitions were chosen by the affinity, so the cosine is judged on partitions it did not choose.",
              "",
              "| predictor | scope | points | rho |", "|---|---|---|---|"]
    for r in t["agreement"].itertuples():
        rho = fmt.estimate(r.rho, r.lo, r.hi) if r.points >= 3 else f"n/a ({r.points} points)"
        lines.append(f"| {r.predictor} | {r.scope} | {r.points} | {rho} |")
    lines += _pull_lines(t["pull"], tasks)
    lines += ["", "Not done here: the pairwise ground truth (the gain of training each pair of tasks together "
              "over apart, measured on its own, correlated with Z across ordered pairs)."]
    return "\n".join(lines) + "\n"


def _smoke_test(seeds: int) -> str:
    """groups.md's first line below MIN_SEEDS seeds, as the study report's ('' from MIN_SEEDS on)."""
    return captions.smoke_test_text(seeds, "run") if seeds < stats.MIN_SEEDS else ""


def _unlearned(realized: pd.DataFrame, tasks: tuple[str, ...]) -> str:
    """The tasks no trained partition learned (:func:`~mtdqn.analysis.tables.near_random` of every role's mean),
    said at the top: a 3-task smoke run scored at or below random everywhere while groups.md read as a ranking."""
    flat = []
    for task in tasks:
        means = realized.loc[realized["scope"] == task, "mean"].to_numpy(dtype=float)
        if near_random(task, means[np.isfinite(means)]):
            flat.append(task)
    if not flat:
        return ""
    return (f"**No trained partition learned {', '.join(flat)}**: every one scores less than {NEAR_RANDOM:.0%} "
            "of the way from the random policy to the reference there, so what this study says about grouping "
            f"{'it' if len(flat) == 1 else 'them'} rests on agents that did not learn; train longer.")


def _chosen_on_noise(scores: pd.DataFrame, plan: dict[str, Any]) -> str:
    """Under the realized table where the affinity does not tell its predicted best from all apart (score 0)
    beyond the joint run's seeds: a walk-through's best scored 1.12e-05, +/- over 5 seeds (3 of them positive),
    shown as a plain 'best'."""
    best = plan["partitions"].get("best")
    if best is None or best["partition"] not in scores.index or "seeds_affinity" not in scores:
        return ""
    row = scores.loc[best["partition"]]
    seeds, above = int(row["seeds_affinity"]), int(row["above_apart_affinity"])
    if not seeds or row["score_affinity"] <= 0 or (math.isfinite(row["lo_affinity"]) and row["lo_affinity"] > 0):
        return ""
    spread = (f"its 95% interval over the joint run's seeds, [{_sig(row['lo_affinity'])}, "
              f"{_sig(row['hi_affinity'])}], holds 0" if math.isfinite(row["lo_affinity"]) else
              f"below {stats.MIN_SEEDS} seeds it has no interval")
    return (f"**The predicted best is not told from all apart by the affinity**: its score, "
            f"{_sig(row['score_affinity'])}, is above all apart's 0 in {above} of {count(seeds, 'seed')}, and "
            f"{spread}. The study trains it as the best, but that choice rests on the measurement's noise: read "
            "its realized scores as one more partition, not as the affinity's prediction.")


def _pull_lines(pull: pd.DataFrame, tasks: tuple[str, ...]) -> list[str]:
    """The joint run's gradient shares and training returns per quarter, beside each task's return alone; the
    quarters' labels of the steps it trained (the asked --steps read '0-1.25025k' for 5,001 that trained 5,208)."""
    if pull.empty:
        return []
    num = lambda v, text: text.format(v) if math.isfinite(v) else "n/a"  # noqa: E731
    last = int(pull["last_step"].iloc[0])
    k = lambda q: f"{q * last / 4000:,.0f}" if last >= 400_000 else f"{q * last / 4000:.3g}"  # noqa: E731  (no 1e+03)
    edges = [f"{k(q)}-{k(q + 1)}k" for q in range(4)]
    lines = ["", "## What goes with a task's gain or loss: its pull on the shared trunk in the joint run", "",
             "Per quarter of training (env steps per task), mean over logging windows and seeds: the task's share "
             "of the summed per-task gradient norms on the shared parameters · its training return (ε-greedy "
             "episodes) in the joint run / alone (the all-apart partition's cell). A share that falls while the "
             "return alone climbs is a task the trunk no longer serves; whether the others starve it or it pulls "
             "less because it finds no reward, these numbers cannot separate.", "",
             "| task | " + " | ".join(edges) + " |", "|---" * 5 + "|"]
    by = pull.set_index(["task", "quarter"])
    for task in tasks:
        cells = []
        for q in range(4):
            if (task, q) not in by.index:
                cells.append("n/a")
                continue
            r = by.loc[(task, q)]
            cells.append(f"{num(100 * r['share'], '{:.0f}%')} · {num(r['return_joint'], '{:.2f}')} / "
                         f"{num(r['return_alone'], '{:.2f}')}")
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    return lines


def write_groups_report(study_dir: Path, *, reps: int = 2000, seed: int = 0) -> Path:
    """STUDY/groups.md and STUDY/groups_data/*.{parquet,csv}; returns the markdown's path."""
    study_dir = Path(study_dir)
    record = json.loads((study_dir / STUDY_RECORD).read_text())
    t = group_tables(study_dir, reps=reps, seed=seed)
    for stem, frame in t.items():
        write_frame(study_dir / "groups_data", stem, frame)
    joint = study_dir / record["groups"]["joint"]
    missing = tuple(name for name, file in _PREDICTOR_FILES.items() if not (joint / file).is_file())
    return write_text(study_dir / "groups.md", _markdown(record, t, missing))
