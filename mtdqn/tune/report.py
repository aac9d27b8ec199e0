"""The tune report: TUNE/report/tune.md, its figures and trials.csv, built from the storage and the trials' runs.

It leads with the best configuration and its score's spread over the seeds
behind it, then says what the best of K trials is not: an unbiased estimate.
The maximum of K noisy scores is biased upward (the winner's curse), so the
report names the command that retrains the best configuration with fresh
seeds (``--confirm N``) and shows that run's score once it exists.  Then each
hyperparameter's importance (Optuna's fANOVA evaluator: the share of the
score's variance over the space each one explains, from a random forest fit
to the complete trials), the optimization history, a parallel-coordinate plot
and the table of every trial.

Reads stored results only (the storage, run directories); never trains.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import optuna  # noqa: E402
import pandas as pd  # noqa: E402

from mtdqn.analysis import fmt, stats  # noqa: E402
from mtdqn.analysis.plots import to_png  # noqa: E402
from mtdqn.errors import ConfigError, count  # noqa: E402
from mtdqn.io import atomic_write, read_json  # noqa: E402
from mtdqn.results import Run  # noqa: E402
from mtdqn.rundir import RUN_SUMMARY  # noqa: E402
from mtdqn.tune.objective import (  # noqa: E402
    DESCRIPTIONS, objective_bounds, objective_of_run, per_seed, reduce, seed_interval,
)
from mtdqn.tune.search import best_trial, confirmed_trial, trial_dir  # noqa: E402
from mtdqn.tune.batches import BATCH_ATTR  # noqa: E402
from mtdqn.tune.spec import TuneSpec, schedule_note  # noqa: E402

__all__ = ["build_tune_report", "trials_table", "importances", "seed_scores"]

TrialState = optuna.trial.TrialState


def trials_table(study: optuna.Study, out: Path) -> pd.DataFrame:
    """One row per trial: number, state, score, each searched option, the note, the run directory (empty for a
    trial that failed before writing one) and the batch it trained in (empty: alone)."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        run = trial_dir(out, t.number)
        rows.append({"trial": t.number, "state": t.state.name.lower(), "score": t.value if t.value is not None
                     else float("nan"), **{f"param:{k}": v for k, v in t.user_attrs.get("options", {}).items()},
                     "last_step": _last_step(t, run), "note": t.user_attrs.get("note", ""),
                     "run": str(run.relative_to(out)) if run.is_dir() else "",
                     "batch": t.user_attrs.get(BATCH_ATTR, "")})
    return pd.DataFrame(rows)


def _last_step(trial: optuna.trial.FrozenTrial, run: Path) -> int | None:
    """The env step per task a trial trained to: a finished run's (its summary), else its last report (the
    evaluations during training stop before the end, whose score is the trial's value)."""
    try:
        steps = read_json(run / RUN_SUMMARY).get("env_steps") if trial.state == TrialState.COMPLETE else None
    except (ConfigError, OSError, AttributeError):
        steps = None
    return steps if isinstance(steps, int) else max(trial.intermediate_values, default=None)


def importances(study: optuna.Study) -> tuple[dict[str, float], str]:
    """(option -> fANOVA importance, '') or ({}, why there are none)."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) < 2:
        return {}, f"needs at least two complete trials ({len(complete)} so far)"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            found = optuna.importance.get_param_importances(
                study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
    except (RuntimeError, ValueError) as exc:  # e.g. every complete trial has the same parameters
        return {}, str(exc).splitlines()[0].rstrip(".")
    return dict(found), ""


def _run_matrix(objective: str, run_dir: Path) -> np.ndarray:
    run = Run(run_dir)
    return objective_of_run(objective, run.evals, run.summary)


def seed_scores(objective: str, run_dir: Path) -> tuple[float, list[float]]:
    """(the objective over every seed, each seed's own) of a finished run."""
    matrix = _run_matrix(objective, run_dir)
    return reduce(objective, matrix), per_seed(objective, matrix)


def _scored(objective: str, run_dir: Path, stored: float | None = None) -> str:
    """A run's score with its interval over seeds (of the same statistic) and each seed's own; ``stored``: the
    storage's score, shown alone when the run directory is gone."""
    if not (run_dir / "summary.json").is_file():
        return f"{fmt.num(stored)} (no finished run in {run_dir.name}: the seeds' scores are not available)"
    matrix = _run_matrix(objective, run_dir)
    bounds = objective_bounds(objective, tuple(Run(run_dir).summary["tasks"]))
    e = seed_interval(objective, matrix, bounds)
    seeds = per_seed(objective, matrix)
    within = f", within its range [{fmt.num(bounds[0])}, {fmt.num(bounds[1])}]" if np.isfinite(bounds).all() else ""
    if len(seeds) < stats.MIN_SEEDS:  # "over 1 seeds (a 95% percentile bootstrap ...)" named an interval it lacked
        return (f"{fmt.num(e.value)} over {count(len(seeds), 'seed')} (no interval: one needs "
                f"{stats.MIN_SEEDS} seeds); each seed's own: {fmt.values(seeds)}")
    return (f"{fmt.estimate(e.value, e.lo, e.hi)} over {len(seeds)} seeds (a 95% percentile bootstrap over seeds of "
            f"this same score{within}, from {stats.MIN_SEEDS} seeds on); each seed's own: {fmt.values(seeds)}")


def _history(study: optuna.Study) -> plt.Figure:
    """Each trial's score in order, the best so far as a step line; pruned trials at their last report."""
    fig, ax = plt.subplots(figsize=(6, 3.6))
    best, xs, ys = -math.inf, [], []
    for t in study.get_trials(deepcopy=False):
        if t.state == TrialState.COMPLETE:
            ax.plot(t.number, t.value, "o", color="C0")
            best = max(best, t.value)
        elif t.state == TrialState.PRUNED and t.intermediate_values:
            ax.plot(t.number, t.intermediate_values[max(t.intermediate_values)], "x", color="C3")
        if best > -math.inf:
            xs.append(t.number)
            ys.append(best)
    ax.step(xs, ys, where="post", color="C1", label="best so far")
    ax.plot([], [], "o", color="C0", label="complete")
    ax.plot([], [], "x", color="C3", label="pruned (last report)")
    ax.set(xlabel="trial", ylabel="score", title="optimization history")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _axis_values(values: list[Any], log: bool = False) -> tuple[np.ndarray, list[str]]:
    """A column of a parallel-coordinate plot scaled to [0, 1] (categories spread evenly; ``log``: a dimension
    sampled on a log scale, drawn on one) and its tick labels."""
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        x = np.asarray(values, dtype=np.float64)
        lo, hi = float(x.min()), float(x.max())
        logged = log and lo > 0
        y = np.log(x) if logged else x
        span = float(y.max() - y.min()) or 1.0
        return (y - y.min()) / span, [fmt.num(lo), fmt.num(hi)] + (["(log)"] if logged else [])
    labels = sorted({str(v) for v in values})
    pos = {s: i / max(len(labels) - 1, 1) for i, s in enumerate(labels)}
    return np.array([pos[str(v)] for v in values]), labels


def _parallel(table: pd.DataFrame, log: frozenset[str] = frozenset()) -> plt.Figure | None:
    """Complete trials as lines across the searched options (each axis min to max, on a log scale for the
    options in ``log``, as they were sampled), coloured by score."""
    if table.empty:  # no trial yet: the table has no columns
        return None
    done = table[table["state"] == "complete"]
    params = [c for c in table.columns if c.startswith("param:")]
    if len(done) < 1 or not params:
        return None
    columns = [_axis_values(done[c].tolist(), c.removeprefix("param:") in log) for c in params] + \
        [_axis_values(done["score"].tolist())]
    fig, ax = plt.subplots(figsize=(1.6 * len(columns) + 2, 3.6))
    scores = done["score"].to_numpy(dtype=np.float64)
    span = np.ptp(scores) or 1.0
    cmap = plt.get_cmap("viridis")
    for i in range(len(done)):
        ax.plot(range(len(columns)), [col[0][i] for col in columns], color=cmap((scores[i] - scores.min()) / span),
                alpha=0.8)
    ax.set_xticks(range(len(columns)), [c.removeprefix("param:") for c in params] + ["score"])
    for j, (_, labels) in enumerate(columns):
        ax.text(j, -0.08, " / ".join(labels), ha="center", va="top", fontsize=7)
    ax.set_ylim(-0.2, 1.05)
    ax.set_yticks([])
    ax.set_title("parallel coordinates (complete trials; each axis min to max, colour: score)")
    fig.tight_layout()
    return fig


def _importance_figure(found: dict[str, float]) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(5, 0.5 * len(found) + 1.2))
    names = list(found)[::-1]
    ax.barh(names, [found[n] for n in names], color="C2")
    ax.set(xlabel="fANOVA importance", title="hyperparameter importance")
    fig.tight_layout()
    return fig


def _write_figure(path: Path, fig: plt.Figure | None) -> bool:
    if fig is None:
        return False
    png = to_png(fig)
    plt.close(fig)
    atomic_write(path, lambda p: p.write_bytes(png))
    return True


def _markdown_table(frame: pd.DataFrame) -> str:
    cols = list(frame.columns)
    lines = ["| " + " | ".join(c.removeprefix("param:") for c in cols) + " |", "|" + "---|" * len(cols)]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(_cell(v) for v in row) + " |")
    return "\n".join(lines)


def _cell(v: Any) -> str:
    """A table cell: floats to three significant digits (a learning rate of 0.00125 stays 0.00125)."""
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.3g}"
    return "" if v is None else str(v).replace("|", "/")


def build_tune_report(spec: TuneSpec, study: optuna.Study, out: Path, command: str,
                      confirmed: list[Path]) -> Path:
    """Write TUNE/report/tune.md (and its figures, trials.csv); ``command``: the tune's command line, to which
    the confirmation's ``--confirm N`` is added; ``confirmed``: confirmation runs made so far."""
    where = out / "report"
    note = schedule_note(spec)
    table = trials_table(study, out)
    counts = table["state"].value_counts().to_dict() if len(table) else {}
    lines = [f"# Tune `{spec.name}`", "",
             f"Tasks {', '.join(spec.tasks)}; {spec.steps:,} env steps per task, {count(spec.seeds, 'seed')} per "
             "trial; "
             f"sampler {spec.sampler}, pruner {spec.pruner}"
             + (f" on a greedy evaluation every {spec.eval_every:,} steps" if spec.eval_every else "") + ".",
             *([f"As run: {note.split(': ', 1)[1]}."] if note else []),
             f"Objective (maximized): {DESCRIPTIONS[spec.objective]}.",
             f"Trials: {len(table)} ({', '.join(f'{n} {s}' for s, n in sorted(counts.items())) or 'none'}).", ""]
    best = best_trial(study)
    lines += ["## Best configuration", ""]
    if best is None:
        lines += ["No complete trial yet.", ""]
    else:
        lines += [f"Trial {best.number} (`{trial_dir(out, best.number).relative_to(out)}`), score "
                  f"{_scored(spec.objective, trial_dir(out, best.number), best.value)}.", "",
                  "| option | value |", "|---|---|",
                  *(f"| {k} | {_cell(v)} |" for k, v in best.user_attrs.get("options", {}).items()), "",
                  f"This score is the best of {int(counts.get('complete', 0))} complete trials, and a maximum over "
                  "noisy scores is biased upward: it is not what this configuration scores on other seeds. "
                  "Retrain it with fresh seeds (after the trials' own) to measure that:", "",
                  f"    {command} --confirm 10", ""]
        if spec.objective == "iqm":
            lines += ["(The IQM trims the lowest and highest quarter of the pooled seed x task scores, a whole "
                      "number of them, so its expectation moves a little with the number of seeds: a "
                      "confirmation with more seeds than the search reads its score to a few hundredths, not "
                      "exactly.)", ""]
        of_best = [p for p in confirmed if confirmed_trial(p) == best.number]
        earlier = [p for p in confirmed if confirmed_trial(p) not in (None, best.number)]  # None: not one of ours
        for path in of_best:
            lines += [f"Confirmation `{path.relative_to(out)}`: {_scored(spec.objective, path)}.", ""]
        if earlier:  # trials run after a confirmation may have found a better one: what it confirmed is not this
            lines += ["Earlier confirmations, of trials that were the best when they ran and no longer are:", "",
                      *(f"- `{p.relative_to(out)}` (trial {confirmed_trial(p)}): {_scored(spec.objective, p)}."
                        for p in earlier), ""]
    found, why = importances(study)
    log = frozenset(name for name, dim in spec.space.items() if dim.kind == "log")
    lines += ["## Hyperparameter importance (fANOVA)", ""]
    if found:
        complete = int(counts.get("complete", 0))
        left_out = ("pruned and failed trials are left out, so the forest is fit to the pruner's survivors, a "
                    "narrower sample than the space" if spec.pruner != "none" else "failed trials are left out")
        scale = (f" Optuna's fANOVA measures each option on its own linear scale, the log-sampled ones included "
                 f"({', '.join(sorted(log))}), so an effect within their lowest decade weighs less than it was "
                 "sampled." if log else "")
        lines += ["| option | importance |", "|---|---|", *(f"| {k} | {v:.3f} |" for k, v in found.items()), "",
                  f"From {count(complete, 'complete trial')}: {left_out}, and with few trials the shares are mostly "
                  f"noise (they sum to 1 whatever the score depends on).{scale}", "",
                  "![importance](importance.png)", ""]
        _write_figure(where / "importance.png", _importance_figure(found))
    else:
        lines += [f"Not computed: {why}.", ""]
    _write_figure(where / "history.png", _history(study))
    lines += ["## Optimization history", "", "![history](history.png)", ""]
    if _write_figure(where / "parallel.png", _parallel(table, log)):
        lines += ["## Parallel coordinates", "", "![parallel](parallel.png)", ""]
    lines += ["## Trials", "", "Each trial is a run directory; a finished one works with `mtdqn evaluate` and "
              "`load_agent`. A trial pruned alone is an unfinished run stopped at its last step (`mtdqn train "
              "--resume` finishes it). One pruned in a batch (the `batch` column) trained on with its batch, a "
              "compiled program that cannot drop a member: its run is finished, though Optuna holds it as pruned "
              "(its note says so), unless every trial of the batch was pruned; that batch stopped, and its runs "
              "are unfinished, with no checkpoint of their own (the batch's is in `batches/`), and train no "
              "further.", "",
              _markdown_table(table) if len(table) else "No trials yet.", ""]
    atomic_write(where / "trials.csv", lambda p: table.to_csv(p, index=False))
    atomic_write(where / "tune.md", lambda p: p.write_text("\n".join(lines)))
    return where / "tune.md"
