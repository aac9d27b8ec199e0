"""`mtdqn distill`: from teacher run directories to a student run directory with its report.

Order matters for bad input: every check (options, teachers' checkpoints,
observation kinds, tasks taught twice, the student's config, the output
folder) runs before the first byte is written to ``--out``; teachers are only
read.  The student's directory is an ordinary run directory (``config.json``
with a :class:`~mtdqn.config.TrainConfig` and an orbax checkpoint of a full
training state), so `mtdqn evaluate`, `mtdqn act` and :func:`mtdqn.load_agent`
work on it; beside them ``distill.json``, ``distill_report.csv`` and
``distill_report.md`` hold the student-vs-teacher comparison.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from mtdqn.checkpoint import save_checkpoint
from mtdqn.config import check_new_run, config_hash, config_to_dict
from mtdqn.budget import check_train_budget
from mtdqn.distill.config import DistillConfig, validate_distill
from mtdqn.distill.loop import make_distiller, split_distill_key, student_greedy
from mtdqn.distill.report import classification_report, report_frame, report_markdown, share_seen
from mtdqn.distill.teachers import Teacher, load_teachers, student_config, teacher_slices
from mtdqn.errors import ConfigError, TrainingDiverged
from mtdqn.evaluate import EvalStream, eval_seed, evaluate_params
from mtdqn.io import provenance
from mtdqn.losses import masked_q
from mtdqn.tasknames import short_name
from mtdqn.networks import merge_shared, split_shared
from mtdqn.rundir import RunDir
from mtdqn.runoptions import RunOptions
from mtdqn.tasks.control_env import fixed_start_deterministic
from mtdqn.train.agent import Agent, make_agent, state_bytes
from mtdqn.train.loop import make_trainer, seed_keys

__all__ = ["DistillResult", "distill", "student_view"]


@dataclass
class DistillResult:
    out_dir: Path
    result: dict[str, Any]  # what distill.json holds
    params: Any  # the student's parameters (no seed axis)


def _check_out(out: Path, teacher_dirs: list[Path]) -> None:
    for d in teacher_dirs:
        if out.resolve() == Path(d).resolve():
            raise ConfigError(f"--out {out} is the teacher run {d}; write the student to another directory")


def distill(teacher_dirs: list[Path] | tuple[Path, ...], out_dir: Path, cfg: DistillConfig = DistillConfig(), *,
            force: bool = False, progress: bool = True) -> DistillResult:
    """Distil the teachers (run directories) into one student written to ``out_dir``.

    Everything is checked before ``out_dir`` is touched (a ConfigError, one
    line); ``force`` replaces a run already there (never a teacher).  Returns
    what distill.json holds and the student's parameters.  Called from Python
    rather than the CLI, see :func:`mtdqn.train.run.train` on setting up JAX's devices first.
    """
    t_start = time.perf_counter()
    validate_distill(cfg)
    out = Path(out_dir)
    _check_out(out, list(teacher_dirs))
    teachers = load_teachers(list(teacher_dirs), cfg.teacher_seed)
    student_cfg = student_config(teachers, cfg)
    check_new_run(student_cfg)
    # the student's record holds the distillation's steps and learning_starts; it updates once per vector step
    check_train_budget(student_cfg, f"vector step of --num-envs {student_cfg.num_envs} env steps per task")
    student = make_agent(student_cfg)
    trainer = make_trainer(student, devices=1)  # the checkpoint is a training state of the student's config
    run_dir = RunDir(out)
    ckpt_bytes = state_bytes(jax.eval_shape(trainer.init, seed_keys(student.seeds)))
    run_dir.check_space(ckpt_bytes)
    options = RunOptions(eval_episodes=cfg.eval_episodes, devices=1)
    teachers_record = [{"run": str(t.run_dir), "seed": t.seed, "tasks": list(t.tasks)} for t in teachers]
    with run_dir.trained_here():  # one writer per folder: --force over a run still training is refused
        run_dir.create({"config": config_to_dict(student_cfg), "config_hash": config_hash(student_cfg), **provenance(),
                        "seeds": student.seeds, "derived": student.derived.__dict__, **options.record(),
                        "distill": {"teachers": teachers_record, "options": dataclasses.asdict(cfg)}}, force)

        distiller = make_distiller(student, teachers, cfg)
        key = jax.random.PRNGKey(cfg.seed)
        state = distiller.init(key)
        t0 = time.perf_counter()
        run_chunk = distiller.run_chunk.lower(state, distiller.teacher_params, jnp.int32(0)).compile()
        compile_s = time.perf_counter() - t0
        state, history = _run(student, run_chunk, state, distiller.teacher_params, progress)
        params = state.params

        one = jax.tree.map(lambda x: x[None], params)
        saved = trainer.init(seed_keys(student.seeds)).replace(params=one, target_params=one)
        save_checkpoint(run_dir.path, trainer.agent.cfg, saved, student.derived.num_chunks, options.record())
        tasks = _compare(student, params, teachers, cfg, distiller, split_distill_key(key).holdout,
                         np.asarray(state.obs[:, : int(state.size)]))
        result = {
            "teachers": teachers_record, "options": dataclasses.asdict(cfg), "loss": cfg.loss,
            "eval_episodes": cfg.eval_episodes, "holdout_states": cfg.holdout, "env_steps": student.derived.env_steps,
            "training_states": int(state.size),
            "updates": int(sum(h["updates"] for h in history[:: student.num_tasks])), "compile_s": compile_s,
            "wall_time_s": time.perf_counter() - t_start, "tasks": tasks, "history": history,
        }
        run_dir.write_distill(result, report_frame({t: r["report"] for t, r in tasks.items()}), report_markdown(result))
        return DistillResult(run_dir.path, result, params)


def _run(student: Agent, run_chunk: Any, state: Any, tparams: Any, progress: bool) -> tuple[Any, list[dict]]:
    """Every chunk, with a progress bar; (final state, one history row per chunk and task)."""
    d = student.derived
    steps_per_chunk = d.iters_per_chunk * student.cfg.num_envs
    names = student.task_set.names
    history: list[dict] = []
    columns = (TextColumn("[bold]distill"), BarColumn(), TextColumn("{task.completed:,}/{task.total:,} steps"),
               TextColumn("{task.fields[stats]}"), TimeRemainingColumn())
    with Progress(*columns, disable=not progress) as bar:
        bar_id = bar.add_task("distill", total=d.env_steps, stats="")
        for chunk in range(d.num_chunks):
            state, m = run_chunk(state, tparams, jnp.int32(chunk * d.iters_per_chunk))
            m = jax.tree.map(np.asarray, m)
            step = (chunk + 1) * steps_per_chunk
            if not np.all(np.isfinite(m["loss"])):
                raise TrainingDiverged(f"distillation diverged: non-finite loss by env step {step}; lower --lr "
                                       "(or raise --temperature with --loss kl)")
            history += [{"step": step, "task": n, "loss": float(m["loss"][i]), "agreement": float(m["agreement"][i]),
                         "teacher_return": float(m["teacher_return"][i]), "updates": int(m["updates"])}
                        for i, n in enumerate(names)]
            stats = " ".join(f"{short_name(n)} agree={m['agreement'][i]:.2f}" for i, n in enumerate(names))
            bar.update(bar_id, completed=step, stats=f"loss={m['loss'].sum():.3f} {stats}")
    return state, history


def student_view(student: Agent, params: Any, idx: tuple[int, ...]) -> tuple[Agent, Any]:
    """The student restricted to tasks ``idx`` (in that order): an agent whose task set is those tasks, padded
    as the student pads them, and the matching slice of its per-task parameters.

    Rolled out by :func:`mtdqn.evaluate.evaluate_params` with a teacher's seed
    and task order, it meets exactly the teacher's episodes (the env keys
    depend only on the task count and position).
    """
    ts = student.task_set
    view_ts = dataclasses.replace(ts, tasks=tuple(ts.tasks[i] for i in idx))
    view_arch = dataclasses.replace(student.arch, num_tasks=len(idx))
    shared, per_task = split_shared(student.arch, params)
    per_task = jax.tree.map(lambda x: x[jnp.asarray(idx)], per_task)
    return dataclasses.replace(student, task_set=view_ts, arch=view_arch), merge_shared(shared, per_task)


def _compare(student: Agent, params: Any, teachers: tuple[Teacher, ...], cfg: DistillConfig, distiller: Any,
             k_holdout: jax.Array, trained_on: np.ndarray) -> dict[str, dict[str, Any]]:
    """Per task: teacher and student greedy returns on the same episodes, a random policy's, and the action report
    on held-out teacher states, with the share of those states also in ``trained_on`` (tasks, states, ...: the
    training buffer at the end) and whether the task's start and dynamics are fixed (then they repeat)."""
    seed = eval_seed(cfg.seed, EvalStream.DISTILL)
    obs, q_teacher = distiller.collect(distiller.teacher_params, k_holdout)  # (tasks, holdout, ...)
    teacher_a = np.asarray(jnp.argmax(masked_q(q_teacher, student.action_mask[:, None, :]), axis=-1))
    student_a = np.asarray(student_greedy(student, params, obs))
    batch = lambda tree: jax.tree.map(lambda x: x[None], tree)  # noqa: E731  (a seed axis of one)
    out: dict[str, dict[str, Any]] = {}
    for t, idx in zip(teachers, teacher_slices(teachers)):
        view, view_params = student_view(student, params, idx)
        teacher_r = evaluate_params(t.agent, batch(t.params), seed, cfg.eval_episodes, 0.0).total[0]
        student_r = evaluate_params(view, batch(view_params), seed, cfg.eval_episodes, 0.0).total[0]
        random_r = evaluate_params(t.agent, batch(t.params), seed, cfg.eval_episodes, 1.0).total[0]
        for j, i in enumerate(idx):
            task = student.task_set.tasks[i]
            rep = classification_report(teacher_a[i], student_a[i], task.num_actions)
            tr, sr, rr = (float(x[j].mean()) for x in (teacher_r, student_r, random_r))
            out[task.spec] = {
                "teacher": str(t.run_dir), "teacher_seed": t.seed,
                "teacher_return": tr, "teacher_return_std": float(teacher_r[j].std()),
                "student_return": sr, "student_return_std": float(student_r[j].std()), "random_return": rr,
                # the share of the teacher's gain over random the student keeps: none to share where it has none
                "normalized": (sr - rr) / (tr - rr) if tr > rr else float("nan"),
                "teacher_returns": teacher_r[j].tolist(), "student_returns": student_r[j].tolist(),
                "agreement": rep["accuracy"], "report": rep,
                "holdout_in_training": share_seen(np.asarray(obs[i]), trained_on[i]),
                "fixed_start_deterministic": task.backend == "gymnax" and fixed_start_deterministic(task.make()[0]),
            }
    return out
