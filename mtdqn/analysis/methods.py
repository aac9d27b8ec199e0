"""The report's methods section: what exactly was run, per variant, from the stored records.

Everything comes from each cell's ``config.json`` (config, hash, provenance:
git revision, package versions, host) and ``summary.json`` (architecture,
parameter counts, evaluation protocol, wall time, devices).  Hyperparameters
are listed as the difference to :class:`mtdqn.config.TrainConfig`'s defaults,
so every non-default option of a variant is named and nothing else is.
Older runs that lack a field say "not recorded" rather than guessing.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import pandas as pd

from mtdqn import taskfacts
from mtdqn.config import (TrainConfig, config_diff, config_from_dict, config_to_dict, derive, first_update_iteration,
                          flatten_config)
from mtdqn.errors import ConfigError
from mtdqn.io import changed_package_files, git_revision
from mtdqn.version import __version__

from . import scores
from .fmt import num
from .load import Cell, Study
from .render import Bullets, Section, Table, Text

__all__ = ["methods_table", "methods_section", "config_table", "rounding_notes", "non_default_options",
           "final_definition", "STRATEGY_SCOPE", "WEIGHT_DEFINITIONS", "weight_definitions", "cell_revisions",
           "revision_notes", "cell_platforms"]

STRATEGY_SCOPE = ("Strategies act on the shared parameters' gradients only: per-task adapters and heads get "
                  "their own task's gradient times the static task weight (see Methods for each run's own record).")
_NOT = "not recorded"

WEIGHT_DEFINITIONS = {
    "sum": "w_i, the static task weight (1 unless --task-weights): the shared update is Σ_i w_i g_i",
    "weighted": "w_i, the static task weight: the shared update is Σ_i w_i g_i",
    "pcgrad": "w_k Σ_i C_ik, task k's total coefficient in the update (w_k the static weight, which scales g_k "
              "before the projections): every projected gradient is a combination "
              "g_i^PC = Σ_k C_ik g_k of the original ones, so the update Σ_i g_i^PC = Σ_k (Σ_i C_ik) g_k "
              "(mtdqn/strategies/pcgrad.py); 1 when nothing conflicts. Projecting g_i off a conflicting g_k adds "
              "(−g_i·g_k / ||g_k||²) g_k, so a task with a small gradient gets a large coefficient: a small "
              "gradient scaled up, not a task given more say",
    "cagrad": "task i's coefficient w_i (1/K + λ x_i) in the update d = Σ_i (1/K + λ x_i) w_i g_i (w_i the static "
              "weight; mtdqn/strategies/cagrad.py); a task at weight 0, or with no gradient, takes the dual's whole "
              "mass and d is the mean (its improvement is 0 whatever d)",
    "unit-norm": "w_i / ||g_i||, the coefficient that scales task i's gradient to unit norm (0 for a zero gradient)",
    "gradnorm": "w_i λ_i, the static weight times GradNorm's learned weight (the learned ones sum to K)",
    "uncertainty": "w_i exp(−s_i), the static weight times the learned precision of the task's loss",
    "dwa": "w_k λ_k, the static weight times DWA's weight K softmax_k(r_k / T) (the loss-ratio weights sum to K)",
}
"""What each strategy reports as a task's "applied weight" on the shared gradient (its own file says how)."""


def weight_definitions(study: Study) -> str:
    """The applied weight's definition for each strategy the study's variants with shared parameters ran."""
    used: dict[str, list[str]] = {}
    for v in study.ok_variants:
        s = study.cells[v].summary
        if s.get("params_shared", 1) == 0:
            continue
        used.setdefault(str(s.get("strategy", _NOT)), []).append(f"`{v}`")
    return " ".join(f"Applied weight for {', '.join(vs)} ({name}): "
                    f"{WEIGHT_DEFINITIONS.get(name, 'as the strategy reports it (see its file)')}."
                    for name, vs in used.items())


def non_default_options(config: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(dotted option, value, default) for every option of a stored config that differs from the defaults.

    A key the stored config lacks (a record older than the option) had its default.
    """
    defaults = flatten_config(config_to_dict(TrainConfig(), every_key=True))  # the omitted-at-default keys too
    stored = {**defaults, **flatten_config(config)}
    return [(key, new, old) for key, old, new in config_diff(defaults, stored)]


def final_definition(study: Study) -> str:
    """What "final" means in this study, from the cells' summaries and evaluations."""
    ok = [study.cells[v] for v in study.ok_variants]
    if not ok:
        return "greedy evaluation at the end of training"
    s, evals = ok[0].summary, ok[0].evals
    episodes = s.get("eval_episodes", "?")
    if not all("final_score" in c.summary for c in ok):  # the study's one definition (scores.final_score_key)
        return f"greedy evaluation (epsilon 0) at the end of training, {episodes} episodes per task and seed"
    if s.get("final_score_rule") == "restored-best-final-eval":
        how = "--keep-best" if "keep_best" in s else "early stopping"
        return (f"greedy evaluation (epsilon 0) at the end of training of each seed's best parameters, restored by "
                f"{how}, {episodes} episodes per task and seed")
    made = int(evals["step"].nunique()) if evals is not None else 1
    k = len(s["final_score_steps"]) if "final_score_steps" in s else min(int(s.get("final_score_evals", 1)), made)
    if k <= 1:
        return f"greedy evaluation (epsilon 0) at the end of training, {episodes} episodes per task and seed"
    every = s.get("eval_every_used", s.get("eval_every"))
    return (f"mean of the last {k} greedy evaluations (epsilon 0) during training (only those in its last 20%), "
            "the last at its end, "
            f"{episodes} episodes per task and seed each" + (f", one every {every:,} env steps per task"
                                                            if isinstance(every, int) and every else ""))


def _discounted_clause(study: Study) -> str:
    """How the discounted final score is measured, and whether the report leads with it."""
    if scores.discounted_key(study) is None:
        return ""
    lead = "; the report leads with its" if scores.headline_metric(study) == "final_discounted" else "; beside it its"
    return (f"{lead} discounted return Σ_t γ^t r_t over the same greedy episodes, each task with the γ of its TD "
            "targets (summary.json's task_gamma)")


def _command(record: dict[str, Any]) -> str:
    """The command line that started the study (study.json), or what is known where it was not recorded."""
    if record.get("command"):
        return f"`{record['command']}`"
    return f"a command not recorded (older study; its source: {record.get('source') or _NOT})"


def _hours(seconds: float) -> str:
    return num(seconds / 3600.0) if math.isfinite(seconds) else "n/a"


def _variant_rows(v: str, cell: Cell) -> list[dict[str, str]]:
    s, rec = cell.summary, cell.record
    host = rec.get("host", {})
    packages = rec.get("packages", {})
    wall = float(s.get("wall_time_s", float("nan")))
    cores = host.get("cpu_cores")
    rows = [("architecture", line) for line in s.get("architecture", [f"sharing={s.get('sharing', _NOT)}; "
                                                                         "layer list not recorded (older run)"])]
    rows += [("parameters", f"{int(s['params_total']):,} total, {int(s['params_shared']):,} shared by all tasks")]
    config = rec.get("config")
    if config is None:
        rows.append(("non-default options", _NOT))
    else:
        diff = [(k, n, o) for k, n, o in non_default_options(config) if k != "tasks"]
        rows += [("non-default option", f"{k} = {n!r} (default {o!r})") for k, n, o in diff] or \
                [("non-default options", "none")]
    rows += _schedule_rows(config)
    rows += [
        ("strategy", f"{s.get('strategy', _NOT)}: {s.get('strategy_scope', STRATEGY_SCOPE)}"),
        ("evaluation", f"{s.get('eval_episodes', '?')} greedy episodes per task and seed per evaluation"
                       + _eval_schedule(s)),
        ("seeds", ", ".join(map(str, s.get("seeds", []))) or _NOT),
        ("git revision", str(rec.get("git_revision", _NOT))),
        ("config hash", str(s.get("config_hash", rec.get("config_hash", _NOT)))),
        ("mtdqn version", str(rec.get("mtdqn_version", _NOT))),
        ("packages", ", ".join(f"{k} {val}" for k, val in packages.items()) or _NOT),
        ("Python", str(host.get("python", _NOT))),
        ("hardware", f"{host.get('cpu', _NOT)}, {cores if cores else '?'} CPU core(s) usable, "
                     f"{host.get('platform', _NOT)}; JAX backend {s.get('backend', _NOT)}, "
                     f"{s.get('devices', '?')} device(s) for the seeds"),
        ("wall time", f"{num(wall)} s (compile {num(float(s.get('compile_s', float('nan'))))} s), all seeds in one "
                      "program"),
        ("CPU-hours", f"{_hours(wall * cores)} (wall time x {cores} usable cores: an upper bound)" if cores else
                      f"{_NOT} (core count unknown; wall time {_hours(wall)} h)"),
    ]
    return [{"variant": v, "item": k, "value": val} for k, val in rows]


def _schedule_rows(config: dict[str, Any] | None) -> list[tuple[str, str]]:
    """The training schedule as the loop ran it, derived from the recorded options (``config.derive``): a
    referee had to work out the updates, the batch per task, the replay and where ε and the learning rate end."""
    if config is None:
        return []
    try:
        cfg = config_from_dict(config)
        d = derive(cfg)
    except (ConfigError, TypeError, ValueError, KeyError):
        return [("schedule as run", f"{_NOT} (the recorded options no longer derive one)")]
    q = cfg.dqn
    per_update = f"{q.batch_size} transitions of every task (a batch of {q.batch_size * d.num_tasks})"
    lr = (f"decayed linearly from {q.lr:g} to 0 over the {d.total_updates:,} updates" if q.lr_schedule == "linear"
          else f"constant {q.lr:g}")
    return [
        ("env steps per task", f"{d.env_steps:,} ({d.total_iters:,} vector steps of {cfg.num_envs} envs per task)"),
        ("updates", f"{d.total_updates:,}: one every {d.train_every_iters * cfg.num_envs} env steps per task, the "
                    f"first after env step {(first_update_iteration(d) + 1) * cfg.num_envs:,}; each samples "
                    f"{per_update}"),
        ("replay", f"one ring buffer per task of {q.buffer_size:,} transitions (the last {q.buffer_size:,} of that "
                   f"task), sampled uniformly{'; ' + str(q.n_step) + '-step targets' if q.n_step > 1 else ''}"),
        ("exploration", f"ε from {q.eps_start:g} to {q.eps_end:g} linearly over the first "
                        f"{d.eps_decay_iters * cfg.num_envs:,} env steps per task, then {q.eps_end:g}"),
        ("learning rate", lr),
        ("env steps/s (wall time)", "all tasks and seeds together: (env steps per task × tasks × seeds) / the wall "
                                    "time of the training chunks (the first compile and the evaluations during "
                                    "training excluded; writing tables and checkpoints included)"),
    ]


def _eval_schedule(s: dict[str, Any]) -> str:
    """The evaluation interval as run (``eval_every_used``), and the request when it was rounded."""
    asked, used = s.get("eval_every"), s.get("eval_every_used", s.get("eval_every"))
    if not used:
        return ", once at the end of training"
    rounded = f" (asked for every {asked:,}, rounded up to whole logging chunks)" if asked and asked != used else ""
    return f", every {used:,} env steps per task{rounded}"


def rounding_notes(study: Study) -> list[str]:
    """One note per variant whose evaluation interval was rounded from the study's request: from what to what."""
    notes = []
    for v in study.ok_variants:
        s = study.cells[v].summary
        asked, used = s.get("eval_every"), s.get("eval_every_used")
        if asked and used and asked != used:
            notes.append(f"`{v}`: the evaluation interval was asked as every {asked:,} env steps per task and ran "
                         f"every {used:,}: evaluations happen at logging-chunk boundaries (log_every), so the "
                         "request was rounded up to whole chunks. Final scores and curves use the evaluations as run.")
    return notes


def config_table(study: Study) -> pd.DataFrame:
    """Every resolved option of every ok variant, grouped (network, dqn, run), with its default.

    One row per option and a column per variant; a value that differs from the default ends in " *". A record
    older than an option had its default.
    """
    # every field, those config.json leaves out at their default included
    defaults = flatten_config(json.loads(json.dumps(dataclasses.asdict(TrainConfig()))))
    defaults.pop("tasks")
    stored = {v: study.cells[v].record.get("config") for v in study.ok_variants}
    rows = []
    for key, default in defaults.items():
        group, _, name = key.rpartition(".")
        row = {"group": group or "run", "option": name, "default": repr(default)}
        for v, config in stored.items():
            if config is None:
                row[v] = _NOT
                continue
            value = {**defaults, **flatten_config(config)}[key]
            row[v] = repr(value) + (" *" if value != default else "")
        rows.append(row)
    df = pd.DataFrame(rows, columns=["group", "option", "default", *stored])
    order = {"run": 0, "network": 1, "dqn": 2}
    return df.sort_values("group", key=lambda c: c.map(lambda g: order.get(g, 3)), kind="stable").reset_index(
        drop=True)


def methods_table(study: Study) -> pd.DataFrame:
    """Tidy rows (variant, item, value) of every ok variant's methods."""
    rows = [r for v in study.ok_variants for r in _variant_rows(v, study.cells[v])]
    return pd.DataFrame(rows, columns=["variant", "item", "value"])


def cell_revisions(study: Study) -> dict[str, list[str]]:
    """{git revision: the ok variants trained at it}, from each cell's own record (in study order)."""
    out: dict[str, list[str]] = {}
    for v in study.ok_variants:
        out.setdefault(str(study.cells[v].record.get("git_revision", _NOT)), []).append(v)
    return out


def _revisions_text(study: Study) -> str:
    """'' when every cell trained at one revision; else a warning naming which cell ran which code."""
    revs = cell_revisions(study)
    if len(revs) <= 1:
        only = next(iter(revs), "")
        study_rev = str(study.record.get("git_revision", _NOT))
        return "" if not only or only == study_rev else f" Every cell trained at revision {only}."
    each = "; ".join(f"{', '.join(f'`{v}`' for v in vs)} at {rev[:12]}" for rev, vs in revs.items())
    return (f" **The cells trained at {len(revs)} different git revisions** ({each}): "
            f"{_code_change(list(revs))} Each cell's revision is in its Methods table.")


REPORT_ONLY = "analysis/"
"""The part of the package that writes reports from run directories (tests/test_imports.py: ``analysis`` never
imports ``train``); a change there cannot change what a run records unless it is in USED_IN_TRAINING."""
USED_IN_TRAINING = ("analysis/stats.py", "analysis/curves.py", "analysis/cka.py", "analysis/ranges.py",
                    "analysis/anchors.py", "analysis/groups.py", "analysis/group_scores.py")
"""The analysis modules code outside the reports runs (and those they import): the CKA a run writes
(``diagnostics``: cka), a tune's pruning objective (stats, curves, anchors, ranges), early stopping's validation
score (anchors), a groups study's choice of partitions (groups, group_scores).  tests/test_imports.py keeps the
list complete."""


def _code_change(revisions: list[str]) -> str:
    """What changed under mtdqn/ between the first revision and each other one, read from this checkout's git:
    a referee could not tell whether the revisions' difference touched training (it did not), so the report
    says so, or warns as before where git cannot tell."""
    changed: set[str] = set()
    for other in revisions[1:]:
        files = changed_package_files(revisions[0], other)
        if files is None:
            return ("a difference between variants trained at different revisions can come from the code change "
                    "as well as from the variant (this checkout cannot compare the revisions).")
        changed.update(files)
    training = sorted(f for f in changed if not f.startswith(REPORT_ONLY) or f in USED_IN_TRAINING)
    if not changed:
        return ("nothing under mtdqn/ differs between them, so the trained committed code is the same (changes "
                "not committed when a cell trained are not recorded).")
    if not training:
        return (f"between them only the report's code changed ({len(changed)} file(s) under mtdqn/{REPORT_ONLY} "
                "that nothing outside the reports runs), so every cell trained the same committed code (changes "
                "not committed when a cell trained are not recorded).")
    shown = ", ".join(training[:8]) + (f" and {len(training) - 8} more" if len(training) > 8 else "")
    return (f"between them the code that trains changed (mtdqn/: {shown}), so a difference between variants "
            "trained at different revisions can come from the code change as well as from the variant.")


def _environments(study: Study) -> str:
    """Whose implementation of each task ran (a referee could not tell gymnax's port from Gymnasium's, whose
    reward thresholds the anchors cite)."""
    return "Environments: " + "; ".join(f"{t}: {taskfacts.implementation(t)}" for t in study.tasks) + "."


def _report_packages() -> str:
    """The versions of what computed this report's statistics and figures (training's are per variant)."""
    from importlib import metadata

    names = ("numpy", "pandas", "scipy", "rliable", "matplotlib")
    found = []
    for name in names:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            found.append(f"{name} {_NOT}")
    return f"This report's statistics and figures: {', '.join(found)}."


def revision_notes(study: Study) -> list[str]:
    """The Notes' lines when the cells trained at different git revisions or on different platforms (else
    none)."""
    revisions = [t.strip().replace("**", "")] if len(cell_revisions(study)) > 1 and (t := _revisions_text(study)) \
        else []
    return revisions + ([t.strip().replace("**", "")] if (t := _platforms_text(study)) else [])


PLATFORM_PACKAGES = ("jax", "jaxlib", "flax", "optax", "numpy")
"""The packages whose versions, with the JAX backend, say which platform computed a cell's numbers."""


def cell_platforms(study: Study) -> dict[str, list[str]]:
    """{platform: the ok variants trained on it}: each cell's JAX backend and training packages' versions, from
    its own summary and record (in study order)."""
    out: dict[str, list[str]] = {}
    for v in study.ok_variants:
        cell = study.cells[v]
        packages = cell.record.get("packages", {}) if isinstance(cell.record.get("packages"), dict) else {}
        recorded = cell.summary.get("backend")
        backend = str(recorded).split(" ")[0] if recorded else f"a backend {_NOT}"  # "gpu (NVIDIA H200)": gpu
        versions = ", ".join(f"{name} {packages[name]}" for name in PLATFORM_PACKAGES if name in packages)
        out.setdefault(f"{backend}{' with ' + versions if versions else ''}", []).append(v)
    return out


def _platforms_text(study: Study) -> str:
    """'' when every cell trained on one platform; else a warning naming which cell ran where (a referee found
    MT5's reference trained on a GPU with newer JAX, every other cell on the CPU, and the report silent)."""
    platforms = cell_platforms(study)
    if len(platforms) <= 1:
        return ""
    each = "; ".join(f"{', '.join(f'`{v}`' for v in vs)} on {where}" for where, vs in platforms.items())
    return (f" **The cells trained on {len(platforms)} different platforms** ({each}): a difference between "
            "cells of different platforms can come from the platform (its floating-point arithmetic, its "
            "libraries' code) as well as from the variant. Each cell's packages and hardware are in its Methods "
            "table.")


def budget_text(study: Study) -> str:
    """The study's env steps per task, and what the cells trained where whole logging windows rounded it up
    (the report's header and its Methods say the same)."""
    trained = sorted({int(study.cells[v].summary["env_steps"]) for v in study.ok_variants
                      if "env_steps" in study.cells[v].summary})
    asked = f"{study.steps:,} env steps per task"
    if not trained or trained == [study.steps]:
        return asked
    return f"{asked} asked, {' / '.join(f'{n:,}' for n in trained)} trained (rounded up to whole logging windows)"


def methods_section(study: Study, table: pd.DataFrame, config: pd.DataFrame) -> Section:
    """Evaluation protocol, then one table per variant."""
    rec = study.record
    blocks: list = [Text(
        f"Evaluation protocol: every headline number is the final score, {final_definition(study)}"
        f"{_discounted_clause(study)}. "
        f"Seeds {', '.join(map(str, study.seeds))} for every variant; each variant's seeds train together as "
        f"one vmapped program. Budget {budget_text(study)}. Study revision "
        f"{rec.get('git_revision', _NOT)}, mtdqn {rec.get('mtdqn_version', _NOT)}, started by "
        f"{_command(rec)}. This report was written by mtdqn {__version__} at git revision {git_revision()} "
        "(`mtdqn report STUDY_DIR` writes it again)." + _revisions_text(study) + _platforms_text(study))]
    total = sum(float(study.cells[v].summary.get("wall_time_s", 0.0)) for v in study.ok_variants)
    blocks.append(Bullets((f"Total training wall time of the ok cells: {num(total)} s.", _environments(study),
                           _report_packages())))
    for v in study.ok_variants:
        g = table[table["variant"] == v][["item", "value"]].reset_index(drop=True)
        blocks.append(Table(f"Methods: `{v}`", g))
    if study.ok_variants:
        blocks.append(Table("Resolved hyperparameters", config,
                            "Every option of every variant as run (tasks aside), grouped; * marks a value that "
                            "differs from the default."))
    return Section("Methods", tuple(blocks))
