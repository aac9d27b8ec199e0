"""What a distillation is judged by: per-action precision, recall and F1 of the student against its teacher.

Numpy only (no scikit-learn).  The teacher's greedy action is the true label,
the student's the prediction.  Conventions follow scikit-learn's
``classification_report``: a ratio with a zero denominator is 0 (an action
never predicted has precision 0; one never taken by the teacher has recall 0
and support 0); the macro average is over the actions that occur in either
side's actions, the weighted average weights each action by its support;
accuracy is the share of states where both agree.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["classification_report", "report_frame", "report_markdown", "print_report", "share_seen", "holdout_notes"]

REPORT_COLUMNS = ["task", "row", "precision", "recall", "f1", "support"]


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros_like(num, dtype=np.float64), where=den > 0)


def classification_report(y_true: Any, y_pred: Any, num_actions: int) -> dict[str, Any]:
    """Per-action and averaged precision / recall / F1 / support of ``y_pred`` against ``y_true`` (int labels)."""
    y_true = np.asarray(y_true, np.int64).ravel()
    y_pred = np.asarray(y_pred, np.int64).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred differ in length: {y_true.size} vs {y_pred.size}")
    labels = np.arange(num_actions)
    tp = np.array([np.sum((y_true == a) & (y_pred == a)) for a in labels], np.float64)
    support = np.array([np.sum(y_true == a) for a in labels], np.float64)
    predicted = np.array([np.sum(y_pred == a) for a in labels], np.float64)
    precision, recall = _ratio(tp, predicted), _ratio(tp, support)
    f1 = _ratio(2 * precision * recall, precision + recall)
    present = (support + predicted) > 0
    total = support.sum()

    def average(weights: np.ndarray) -> dict[str, float]:
        w = weights / weights.sum() if weights.sum() > 0 else weights
        return {"precision": float(w @ precision), "recall": float(w @ recall), "f1": float(w @ f1),
                "support": int(total)}

    return {
        "actions": [{"action": int(a), "precision": float(precision[a]), "recall": float(recall[a]),
                     "f1": float(f1[a]), "support": int(support[a])} for a in labels],
        "macro avg": average(present.astype(np.float64)),
        "macro_actions": [int(a) for a in labels[present]],  # what the macro average is over (the markdown says)
        "weighted avg": average(support),
        "accuracy": float(np.mean(y_true == y_pred)) if y_true.size else 0.0,
        "n": int(y_true.size),
    }


def share_seen(states: np.ndarray, seen: np.ndarray) -> float:
    """The share of ``states`` (n, ...) that occur exactly, bit for bit, among ``seen`` (m, ...); 0 for n = 0."""
    rows = lambda x: np.ascontiguousarray(x).reshape(len(x), -1)  # noqa: E731
    known = {row.tobytes() for row in rows(seen)}
    return float(np.mean([row.tobytes() in known for row in rows(states)])) if len(states) else 0.0


def holdout_notes(result: dict[str, Any]) -> list[str]:
    """Per task, how far its held-out states are new: the share also in the training buffer at the end, and for
    a task with a fixed start and deterministic dynamics, what that makes of its agreement."""
    notes = []
    for task, r in _tasks_in_order(result):
        if "holdout_in_training" not in r:  # distilled before the share was measured
            continue
        note = (f"{task}: {r['holdout_in_training']:.1%} of the held-out states also occur in the training buffer "
                f"(its last {result['training_states']:,} states).")
        if r.get("fixed_start_deterministic"):
            note += (" Its start is fixed and its dynamics deterministic, so the held-out rollouts retrace the "
                     "training trajectories (only the teacher's epsilon-greedy actions vary them): its agreement "
                     "is measured on the states the student was trained on, not on new ones.")
        notes.append(note)
    return notes


def report_frame(reports: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """One tidy table of every task's report: rows ``action <a>``, ``macro avg``, ``weighted avg``."""
    rows = []
    for task, rep in reports.items():
        for r in rep["actions"]:
            rows.append({"task": task, "row": f"action {r['action']}", **{k: r[k] for k in REPORT_COLUMNS[2:]}})
        for name in ("macro avg", "weighted avg"):
            rows.append({"task": task, "row": name, **rep[name]})
    return pd.DataFrame(rows, columns=REPORT_COLUMNS)


def _tasks_in_order(result: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The result's tasks in the teachers' order (the student's): distill.json keeps its keys sorted, so the
    terminal's table, printed from it, listed them alphabetically where distill_report.md did not."""
    order = [task for teacher in result.get("teachers", []) for task in teacher.get("tasks", [])]
    tasks = result["tasks"]
    return [(t, tasks[t]) for t in order if t in tasks] + [(t, r) for t, r in tasks.items() if t not in order]


def _normalized(r: dict[str, Any]) -> str:
    """(student - random) / (teacher - random); undefined where the teacher does no better than random (below it
    the ratio flips sign: a student worse than a teacher of 11.9 against random's 24.2 read 1.05)."""
    value = r["normalized"]
    if r["teacher_return"] > r["random_return"] and math.isfinite(value):
        return f"{value:.2f}"
    return "— (teacher = random)" if r["teacher_return"] == r["random_return"] else "— (teacher below random)"


def _returns_rows(result: dict[str, Any]) -> list[list[str]]:
    return [[task, f"{r['teacher_return']:.1f} ± {r['teacher_return_std']:.1f}",
             f"{r['student_return']:.1f} ± {r['student_return_std']:.1f}", f"{r['random_return']:.1f}",
             _normalized(r), f"{r['agreement']:.3f}"] for task, r in _tasks_in_order(result)]


# normalized: (student - random) / (teacher - random), the share of the teacher's gain over random the student keeps
RETURNS_HEADER = ["task", "teacher return", "student return", "random return", "normalized", "agreement"]


def _rows(rep: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(label, values) of a report's per-action rows and its two averages."""
    return [(f"action {a['action']}", a) for a in rep["actions"]] + [(n, rep[n]) for n in ("macro avg", "weighted avg")]


def report_markdown(result: dict[str, Any]) -> str:
    """distill_report.md: the returns table, then every task's action report."""
    episodes, holdout = result["eval_episodes"], result["holdout_states"]
    intro = (f"Greedy returns: mean ± std over the same {episodes} episodes for teacher and student (random: a "
             "uniform policy); normalized: (student - random) / (teacher - random); agreement: the share of "
             f"{holdout} held-out teacher states per task where the student takes the teacher's greedy action.\n")
    lines = ["# Distillation: student vs teachers\n", intro, "| " + " | ".join(RETURNS_HEADER) + " |",
             "|" + "---|" * len(RETURNS_HEADER)]
    lines += ["| " + " | ".join(row) + " |" for row in _returns_rows(result)]
    notes = holdout_notes(result)
    if notes:
        lines += ["\nHow new the held-out states are:\n"] + [f"- {note}" for note in notes]
    for task, r in _tasks_in_order(result):
        lines += [f"\n## {task}: student vs teacher actions\n", "| | precision | recall | f1 | support |",
                  "|---|---|---|---|---|"]
        rep = r["report"]
        lines += [f"| {name} | {v['precision']:.3f} | {v['recall']:.3f} | {v['f1']:.3f} | {v['support']} |"
                  for name, v in _rows(rep)]
        lines.append(f"| accuracy | | | {rep['accuracy']:.3f} | {rep['n']} |")
        lines += _macro_note(rep)
    return "\n".join(lines) + "\n"


def _macro_note(rep: dict[str, Any]) -> list[str]:
    """Which actions the macro average leaves out, where it does (a reader averaging the rows above gets
    another number); none for a report made before it was recorded."""
    over = rep.get("macro_actions")
    left = [a["action"] for a in rep["actions"] if over is not None and a["action"] not in over]
    if not left:
        return []
    these = "action " + ", ".join(map(str, left)) if len(left) == 1 else "actions " + ", ".join(map(str, left))
    return [f"\nThe macro average leaves out {these}: neither the teacher nor the student took "
            f"{'it' if len(left) == 1 else 'them'} on these states (scikit-learn's classification_report does the "
            "same).\n"]


def print_report(result: dict[str, Any]) -> None:
    """The same tables on the terminal (rich)."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=120)
    table = Table(*RETURNS_HEADER, title=f"greedy return over {result['eval_episodes']} episodes")
    for row in _returns_rows(result):
        table.add_row(*row)
    console.print(table)
    for note in holdout_notes(result):
        console.print(note, soft_wrap=True)
    for task, r in _tasks_in_order(result):
        rep = r["report"]
        t = Table("", "precision", "recall", "f1", "support", title=f"{task}: student vs teacher actions")
        for name, v in _rows(rep):
            t.add_row(name, f"{v['precision']:.3f}", f"{v['recall']:.3f}", f"{v['f1']:.3f}", str(v["support"]))
        t.add_row("accuracy", "", "", f"{rep['accuracy']:.3f}", str(rep["n"]))
        console.print(t)
