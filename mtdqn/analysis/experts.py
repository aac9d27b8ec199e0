"""Why a mixture of experts helps or not: each task's mixing weights, how concentrated and how different between
tasks they are, and expert collapse.

Read from ``experts.parquet`` (:data:`mtdqn.rundir.EXPERT_SCHEMA`; runs with
``--sharing moe:K`` or ``moore:K`` only), one row per logging window, seed,
task and expert.  Four questions:

- *Which experts does each task use?*  Its softmax mixing weights over
  training (they start even: every logit at zero).  Only ``moore``'s expert
  labels mean the same thing in every seed: its Gram–Schmidt runs in expert
  order, so expert 0 is kept as is and expert k is what remains of its output
  after removing the directions of experts < k.  ``moe``'s labels are
  arbitrary per seed (label switching: nothing ties one seed's expert 0 to
  another's), so its weights are ranked per seed (largest first) before any
  mean over seeds.
- *Does each task concentrate on few experts?*  The entropy of a task's
  weights, shown as a share of its maximum log K: 1 is the even mixture, 0 one
  expert alone.  Low entropy is concentration, not specialization: every task
  can concentrate on the same expert.
- *Do the tasks specialize, i.e. use different experts?*  Per seed, the mean
  over task pairs of the Jensen–Shannon divergence (bits, in [0, 1]) between
  two tasks' weights, and whether every task leans on the same expert (its
  weight past halfway from the even mixture to that expert alone:
  :func:`leaning_share`).
- *Have the experts collapsed?*  The mean pairwise cosine between the
  experts' representations on the task's observations: near 1, K experts
  compute one thing (``moe`` can drift there).  MOORE's Gram–Schmidt makes the
  representations ``moore`` mixes orthonormal, so their cosine is 0 by
  construction (shown as such, not estimated), and its experts' own outputs
  before the orthonormalization stand beside it; without Gram–Schmidt there is
  no "before" to show.

Every summary is a per-seed quantity first (the mean over tasks, task pairs or
experts where it spans them), then the mean over seeds with a Student-t 95% CI
clipped to its range (none below :data:`~mtdqn.analysis.stats.MIN_SEEDS` seeds).
The tables are tidy numbers; :func:`summary_display` and the captions here turn
them into the report's mixture-of-experts section.
"""

from __future__ import annotations

import itertools
import math
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy.special import rel_entr

from . import ranges, stats
from .fmt import estimate, num
from .load import Cell, Study

__all__ = ["mixing_curve_table", "experts_curve_table", "experts_summary_table", "final_weights_table",
           "js_divergence", "between_task_divergence", "one_expert_everywhere", "uses_gram_schmidt",
           "summary_display", "summary_caption", "mixing_caption", "SUMMARY_TITLE", "ALL_TASKS", "leaning_share"]

_EST = ["mean", "lo", "hi", "n"]
ALL_TASKS = "all tasks"
"""The ``task`` of a summary row over every task (per seed the mean over tasks)."""
QUANTITIES = ("entropy_share", "cosine", "cosine_raw")
"""The curve table's quantities: entropy / log K, the mean pairwise cosine of the mixed representations, and of
the experts' outputs before Gram–Schmidt."""
SUMMARY_TITLE = "Mixture of experts at the end of training"
NONE = "—"
"""A cell whose quantity does not exist for the row (a between-task measure on one task's row, the cosine before
Gram–Schmidt of a variant without it)."""


class _Mixture(NamedTuple):
    """A variant that trained a mixture of experts: its experts.parquet rows (with ``entropy_share``) and whether
    its experts are orthonormalized in expert order (then their labels are ordered, else exchangeable)."""

    variant: str
    frame: pd.DataFrame
    gram_schmidt: bool


def _est_row(values: np.ndarray, bounds: ranges.Bounds) -> dict[str, float]:
    return dict(zip(_EST, stats.t_mean(values, bounds)))


def _est_columns(prefix: str, values: np.ndarray, bounds: ranges.Bounds) -> dict[str, float]:
    """``{prefix}_mean``, ``_lo`` and ``_hi``: the mean over seeds and its clipped 95% Student-t interval."""
    e = stats.t_mean(values, bounds)
    return {f"{prefix}_mean": e.value, f"{prefix}_lo": e.lo, f"{prefix}_hi": e.hi}


def uses_gram_schmidt(cell: Cell) -> bool:
    """Whether the cell orthonormalized its experts before the mixing (``--sharing moore:K``), from its recorded
    sharing (summary.json, else config.json).  A run that recorded neither is told by its data: without
    Gram–Schmidt the mixed representations are the experts' own, so ``cosine_raw`` equals ``cosine``."""
    if cell.sharing:
        return cell.sharing.split(":", 1)[0] == "moore"
    ex = cell.experts
    return not np.allclose(ex["cosine"].to_numpy(np.float64), ex["cosine_raw"].to_numpy(np.float64))


def _mixtures(study: Study) -> list[_Mixture]:
    """The ok variants that trained a mixture of experts, in study order."""
    out = []
    for v in study.ok_variants:
        cell = study.cells[v]
        ex = cell.experts
        if ex is None or not len(ex):
            continue
        k = int(ex["expert"].nunique())
        out.append(_Mixture(v, ex.assign(entropy_share=ex["entropy"].astype(np.float64) / np.log(k)),
                            uses_gram_schmidt(cell)))
    return out


def _ranked(ex: pd.DataFrame) -> pd.DataFrame:
    """The rows with ``expert`` replaced by the weight's rank within its (step, seed, task): 0 the task's largest
    weight.  Ranks mean the same in every seed where arbitrary expert labels do not."""
    rank = ex.groupby(["step", "seed", "task"])["weight"].rank(method="first", ascending=False)
    return ex.assign(expert=rank.astype(np.int64) - 1)


def _labelled(m: _Mixture) -> pd.DataFrame:
    """The weights under labels comparable across seeds: the experts themselves when ordered by Gram–Schmidt,
    else their ranks (:func:`_ranked`)."""
    return m.frame if m.gram_schmidt else _ranked(m.frame)


def _per_task(ex: pd.DataFrame) -> pd.DataFrame:
    """One row per (step, seed, task): the entropy (the same on the task's rows) and its share of log K, and the
    cosines averaged over the task's experts (the mean pairwise cosine)."""
    return ex.groupby(["step", "seed", "task"], sort=True)[[*QUANTITIES, "entropy"]].mean().reset_index()


def _bounds(quantity: str) -> ranges.Bounds:
    return ranges.FRACTION if quantity == "entropy_share" else ranges.COSINE


def js_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """The Jensen–Shannon divergence in bits between two weight vectors over the same experts: symmetric, 0 for
    equal weights, 1 for weights on disjoint experts (base 2 bounds it by 1 whatever K)."""
    p, q = np.asarray(p, np.float64), np.asarray(q, np.float64)
    m = (p + q) / 2
    return float((rel_entr(p, m).sum() + rel_entr(q, m).sum()) / (2 * np.log(2)))


def between_task_divergence(weights: np.ndarray) -> float:
    """How differently the tasks mix the experts, from their weights (tasks, experts): the mean over task pairs
    of :func:`js_divergence`.  Specialization reads here, not in the entropy: tasks that all concentrate on one
    expert score 0.  NaN for a single task."""
    pairs = list(itertools.combinations(range(len(weights)), 2))
    return float(np.mean([js_divergence(weights[i], weights[j]) for i, j in pairs])) if pairs else math.nan


def across_seed_divergence(by_seed: dict[int, np.ndarray]) -> float:
    """The between-task divergence's baseline for ordered experts (Gram–Schmidt): the mean over tasks and pairs
    of seeds of the JS divergence between one task's weights in two seeds, from each seed's (tasks, experts)
    weights.  How much a task's mixture varies with the seed alone; tasks that specialize differ from one
    another by more than this (a referee found moore's between-task 0.122 beside an across-seed 0.132).
    Without Gram–Schmidt expert labels switch between seeds and no relabelling gives an unbiased baseline (the
    best of K! relabellings halved it on random mixtures), so there is none: callers pass ordered runs only.
    NaN below two seeds."""
    seeds = sorted(by_seed)
    values = [js_divergence(by_seed[s][t], by_seed[u][t]) for s, u in itertools.combinations(seeds, 2)
              for t in range(min(len(by_seed[s]), len(by_seed[u])))]
    return float(np.mean(values)) if values else math.nan


def leaning_share(experts: int) -> float:
    """The weight above which a task leans on one of K experts: past halfway from the even mixture (1/K) to that
    expert alone (1), i.e. (1 + 1/K) / 2: 0.75 at K = 2, 0.67 at K = 3.  A majority (> 1/2) would not do: at
    K = 2 it is the even mixture itself, and weights that never moved from it (0.502 / 0.498) counted."""
    return (1 + 1 / experts) / 2


def one_expert_everywhere(weights: np.ndarray) -> bool:
    """Whether one expert gets more than :func:`leaning_share` of every task's weight (tasks, experts): all the
    tasks lean on the same shared expert, the opposite of specializing."""
    top = weights.argmax(axis=1)
    return bool((weights.max(axis=1) > leaning_share(weights.shape[1])).all() and (top == top[0]).all())


def _weight_matrices(rows: pd.DataFrame) -> dict[int, np.ndarray]:
    """Per seed, its tasks' mixing weights at one step as a (tasks, experts) matrix, rows renormalized to sum to 1
    (float32 softmax outputs); tasks missing an expert's row are left out."""
    wide = rows.pivot_table(index=["seed", "task"], columns="expert", values="weight").dropna()
    w = wide.to_numpy(np.float64)
    w = w / w.sum(axis=1, keepdims=True)
    seeds = wide.index.get_level_values("seed").to_numpy()
    return {int(s): w[seeds == s] for s in np.unique(seeds)}


def _between_tasks(rows: pd.DataFrame) -> pd.DataFrame:
    """Per seed (index), at one step: the tasks' mean pairwise JS divergence and whether one expert has most of
    the weight in every task."""
    per_seed = {s: {"divergence": between_task_divergence(w), "one_expert": one_expert_everywhere(w)}
                for s, w in _weight_matrices(rows).items()}
    return pd.DataFrame.from_dict(per_seed, orient="index", columns=["divergence", "one_expert"])


def mixing_curve_table(study: Study) -> pd.DataFrame:
    """Per variant, task, expert and step: the task's mixing weight on the expert, mean and 95% CI over seeds.
    ``ranked``: the variant's expert labels are arbitrary per seed (no Gram–Schmidt), so ``expert`` is the
    weight's rank in its seed (0: the task's largest weight), not a label."""
    rows = []
    for m in _mixtures(study):
        ex = _labelled(m)
        for task in study.tasks:
            for (expert, step), g in ex[ex["task"] == task].groupby(["expert", "step"], sort=True):
                rows.append({"variant": m.variant, "task": task, "expert": int(expert), "ranked": not m.gram_schmidt,
                             "step": int(step), **_est_row(g["weight"].to_numpy(np.float64), ranges.FRACTION)})
    return pd.DataFrame(rows, columns=["variant", "task", "expert", "ranked", "step", *_EST])


def experts_curve_table(study: Study) -> pd.DataFrame:
    """Per variant, quantity (:data:`QUANTITIES`) and step: per seed the mean over tasks, then the mean and 95% CI
    over seeds."""
    rows = []
    for m in _mixtures(study):
        by_seed = _per_task(m.frame).groupby(["step", "seed"], sort=True)[list(QUANTITIES)].mean().reset_index()
        for q in QUANTITIES:
            for step, g in by_seed.groupby("step", sort=True):
                rows.append({"variant": m.variant, "quantity": q, "step": int(step),
                             **_est_row(g[q].to_numpy(np.float64), _bounds(q))})
    return pd.DataFrame(rows, columns=["variant", "quantity", "step", *_EST])


def _last_step(ex: pd.DataFrame) -> pd.DataFrame:
    return ex[ex["step"] == ex["step"].max()]


def _summary_rows(m: _Mixture, tasks: tuple[str, ...]) -> list[dict]:
    """:func:`experts_summary_table`'s rows of one variant: every task first, then each."""
    ex = m.frame
    k, step = int(ex["expert"].nunique()), int(ex["step"].max())
    last = _per_task(_last_step(ex))
    between = _between_tasks(_last_step(ex))
    groups = [(ALL_TASKS, last.groupby("seed")[[*QUANTITIES, "entropy"]].mean())]
    groups += [(t, last[last["task"] == t].set_index("seed")) for t in tasks if (last["task"] == t).any()]
    rows = []
    for task, per_seed in groups:
        entropy = stats.t_mean(per_seed["entropy"].to_numpy(np.float64), (0.0, float(np.log(k))))
        row = {"variant": m.variant, "task": task, "experts": k, "gram_schmidt": m.gram_schmidt, "step": step,
               "log_k": float(np.log(k)), "entropy_mean": entropy.value, "entropy_lo": entropy.lo,
               "entropy_hi": entropy.hi}
        for q in QUANTITIES:
            row |= _est_columns(q, per_seed[q].to_numpy(np.float64), _bounds(q))
        everywhere = task == ALL_TASKS  # a between-task quantity: on the row over every task only
        row |= _est_columns("divergence", between["divergence"].to_numpy(np.float64) if everywhere
                            else np.array([]), ranges.FRACTION)
        row["one_expert_seeds"] = float(between["one_expert"].sum()) if everywhere else math.nan
        row["divergence_across_seeds"] = (across_seed_divergence(_weight_matrices(_last_step(ex)))
                                          if everywhere and m.gram_schmidt else math.nan)
        rows.append({**row, "n": entropy.n})
    return rows


def experts_summary_table(study: Study) -> pd.DataFrame:
    """Per variant, at the end of training (each run's last step): the number of experts, whether they are
    orthonormalized (``gram_schmidt``), the weights' entropy (nats, with log K, and as a share of it) and the
    mean pairwise cosine between the experts (mixed and raw), over every task (:data:`ALL_TASKS`, per seed the
    mean over tasks) and per task; on the row over every task also the between-task JS divergence (bits) and
    ``one_expert_seeds``, the seeds in which every task leans on the same expert (:func:`leaning_share`; NaN on a
    task's own row); mean and 95% CI over seeds."""
    rows = [r for m in _mixtures(study) for r in _summary_rows(m, study.tasks)]
    return pd.DataFrame(rows, columns=_SUMMARY_COLUMNS)


_SUMMARY_COLUMNS = ["variant", "task", "experts", "gram_schmidt", "step", "log_k", "entropy_mean", "entropy_lo",
                    "entropy_hi", *(f"{q}_{s}" for q in QUANTITIES for s in ("mean", "lo", "hi")),
                    "divergence_mean", "divergence_lo", "divergence_hi", "one_expert_seeds",
                    "divergence_across_seeds", "n"]


def final_weights_table(study: Study) -> pd.DataFrame:
    """Per variant, task (every task, then each) and expert, at the end of training: the task's mixing weight,
    mean and 95% CI over seeds, under labels comparable across seeds (``ranked`` as in :func:`mixing_curve_table`;
    the row over every task is per seed the mean over tasks)."""
    rows = []
    for m in _mixtures(study):
        last = _last_step(_labelled(m))
        every = last.groupby(["seed", "expert"], as_index=False)["weight"].mean()
        for task in (ALL_TASKS, *study.tasks):
            g = every if task == ALL_TASKS else last[last["task"] == task]
            for expert, ge in g.groupby("expert", sort=True):
                rows.append({"variant": m.variant, "task": task, "expert": int(expert), "ranked": not m.gram_schmidt,
                             **_est_row(ge["weight"].to_numpy(np.float64), ranges.FRACTION)})
    return pd.DataFrame(rows, columns=["variant", "task", "expert", "ranked", *_EST])


def _shown(mean: float, lo: float, hi: float, n: int) -> str:
    """'mean [lo, hi]', or the mean with why it has no interval (the report's convention, as its other tables)."""
    if not math.isfinite(mean):
        return "n/a"
    if math.isfinite(lo):
        return estimate(mean, lo, hi)
    if n < stats.MIN_SEEDS:
        return f"{num(mean)} (no CI, n < {stats.MIN_SEEDS})"
    return f"{num(mean)} (no CI: no spread over seeds)"


def _weight_label(expert: int, ranked: bool) -> str:
    """What an expert index names: a rank without Gram–Schmidt, else the expert and what Gram–Schmidt left it."""
    if ranked:
        return "rank 1 (largest)" if expert == 0 else f"rank {expert + 1}"
    if expert == 0:
        return "expert 0 (as is)"
    return f"expert {expert} (residual after {'0' if expert == 1 else f'0–{expert - 1}'})"


def _weights_cell(weights: pd.DataFrame) -> str:
    """One row's end-of-training weights, expert by expert (or rank by rank): 'label mean [lo, hi]; ...'."""
    return "; ".join(f"{_weight_label(r.expert, r.ranked)} {_shown(r.mean, r.lo, r.hi, r.n)}"
                     for r in weights.sort_values("expert").itertuples()) or NONE


WEIGHTS = "mixing weights (mean [95% CI])"
DIVERGENCE = "between-task JS divergence, bits (mean [95% CI])"
ONE_EXPERT = "seeds with every task leaning on one expert"
COSINE = "cosine between experts (mean [95% CI])"
RAW = "before Gram–Schmidt"
BY_CONSTRUCTION = "0 by construction"
ACROSS_SEEDS = "baseline: one task across seeds, bits"
_DISPLAY_COLUMNS = ["variant", "task", "experts", "entropy, nats (mean [95% CI])", "log K", "entropy / log K",
                    WEIGHTS, DIVERGENCE, ACROSS_SEEDS, ONE_EXPERT, COSINE, RAW, "n seeds"]


def _display_row(r, weights: pd.DataFrame) -> dict[str, object]:
    """One summary row (:func:`experts_summary_table`) as the report shows it."""
    between = r.task == ALL_TASKS
    return {"variant": r.variant, "task": r.task, "experts": r.experts,
            "entropy, nats (mean [95% CI])": _shown(r.entropy_mean, r.entropy_lo, r.entropy_hi, r.n),
            "log K": num(r.log_k), "entropy / log K": num(r.entropy_share_mean),
            WEIGHTS: _weights_cell(weights[(weights["variant"] == r.variant) & (weights["task"] == r.task)]),
            DIVERGENCE: _shown(r.divergence_mean, r.divergence_lo, r.divergence_hi, r.n) if between else NONE,
            ACROSS_SEEDS: num(getattr(r, "divergence_across_seeds", math.nan)) if between else NONE,
            ONE_EXPERT: f"{int(r.one_expert_seeds)} of {r.n}" if between else NONE,
            COSINE: BY_CONSTRUCTION if r.gram_schmidt else _shown(r.cosine_mean, r.cosine_lo, r.cosine_hi, r.n),
            RAW: _shown(r.cosine_raw_mean, r.cosine_raw_lo, r.cosine_raw_hi, r.n) if r.gram_schmidt else NONE,
            "n seeds": r.n}


def summary_display(summary: pd.DataFrame, weights: pd.DataFrame) -> pd.DataFrame:
    """The report's table of :func:`experts_summary_table` beside :func:`final_weights_table`: formatted cells,
    "—" where a quantity does not exist for the row, MOORE's mixed cosine as "0 by construction" (orthonormal
    outputs: nothing to estimate, so no interval)."""
    return pd.DataFrame([_display_row(r, weights) for r in summary.itertuples()], columns=_DISPLAY_COLUMNS)


def summary_caption() -> str:
    """The caption of :func:`summary_display`'s table: what each column measures and what it does not."""
    return ("Each task mixes K shared experts with its own softmax weights (they start even). Concentration: the "
            "entropy of a task's weights, log K for the even mixture, 0 for one expert alone; the row over every "
            "task is per seed the mean over tasks. Low entropy alone is concentration, not specialization: every "
            "task can concentrate on the same expert. Specialization, the tasks using different experts, is the "
            "between-task divergence: per seed the mean over task pairs of the Jensen–Shannon divergence (base 2) "
            "between two tasks' weights, 0 when the tasks mix the experts alike, 1 when they use disjoint experts, "
            "beside its baseline, the same divergence between one task's weights in two seeds (with Gram–Schmidt "
            "only: without it expert labels switch between seeds and no relabelling gives a fair baseline, so "
            "'n/a'): tasks specialize only as far as they differ by more than a task "
            "differs from itself across seeds; "
            "and the seeds in which every task leans on the same expert: its weight past halfway from the even "
            f"mixture to that expert alone, more than (1 + 1/K)/2 ({leaning_share(2):g} at K = 2, "
            f"{leaning_share(3):.2f} at K = 3; a majority would be the even mixture itself at K = 2). Mixing "
            "weights: with Gram–Schmidt (`moore:K`) the experts are "
            "ordered, expert 0 kept as is and expert k what remains of its output after removing the directions "
            "of experts < k, so a label names the same role in every seed; without it (`moe:K`) expert labels are "
            "arbitrary per seed (label switching), so a per-expert mean over seeds would mix unrelated experts: "
            "the weights are ranked per seed instead (rank 1: the task's largest, at least 1/K by construction). "
            "Cosine: the mean over expert pairs and the task's probe observations of the cosine between two "
            "experts' representations, those the task mixes (with Gram–Schmidt orthonormalized per sample: 0 by "
            "construction, not estimated) and, beside it, the experts' own outputs before Gram–Schmidt (—: the "
            "variant has none, the representations it mixes are the experts' own); near 1, the experts have "
            f"collapsed onto one. Mean over seeds with a 95% Student-t CI (none below {stats.MIN_SEEDS} seeds).")


def mixing_caption(summary: pd.DataFrame, variant: str) -> str:
    """The caption of a variant's mixing-weights figure (:func:`mixing_curve_table`): what its expert labels
    mean, so that per-expert means over seeds are read only where they compare like with like."""
    gram_schmidt = bool(summary.loc[summary["variant"] == variant, "gram_schmidt"].iloc[0])
    labels = ("Expert labels are ordered (Gram–Schmidt in expert order): expert 0 is kept as is and expert k is "
              "what remains of its output after removing the directions of experts < k, the same role in every "
              "seed." if gram_schmidt else
              "Expert labels are arbitrary per seed (label switching: nothing ties one seed's expert 0 to "
              "another's), so the lines are ranks, not experts: rank 1 is the task's largest weight in its seed at "
              "that step, rank 2 the next.")
    return (f"`{variant}`: each task's mixing weight on each expert over training (dotted: the even mixture 1/K), "
            f"95% bands over seeds. {labels}")
