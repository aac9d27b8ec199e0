"""The compiled distillation: teachers act, their states and Q-values fill per-task buffers, the student learns.

One iteration is one vector step of every teacher in its own tasks' envs
(ε-greedy through the training code's :func:`~mtdqn.train.step.act` and
:func:`~mtdqn.tasks.step_envs`), the visited states written with the teacher's
Q-values into the student's per-task ring buffers, then one Adam step of the
student on ``batch_size`` states of every task.  As in training, iterations
run as ``lax.scan`` chunks compiled once, so the host only draws the progress
bar between chunks.  Teachers differ in networks and task sets, so the loop
over teachers is unrolled at trace time (like the loop over tasks in
``step_envs``); their parameters are arguments, not constants baked in.

Layouts: a teacher's observations are padded to its own task set; the student
stores each task's own observation re-padded to the student's task set, and
the teacher's Q-values of the task's real actions padded with zeros (masked).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import struct

from mtdqn.distill.config import DistillConfig
from mtdqn.distill.teachers import Teacher
from mtdqn.losses import distill_ce, distill_kl, masked_q
from mtdqn.networks import init_params, q_values
from mtdqn.tasks import obs_dtype, pad_obs, reset_envs, step_envs
from mtdqn.train.agent import Agent
from mtdqn.train.loop import chunk_compiler_options
from mtdqn.train.step import act, split_env_step_key
from mtdqn.value_norm import unnormalize

__all__ = ["Rollout", "DistillState", "DistillKeys", "split_distill_key", "Distiller", "make_distiller",
           "student_greedy"]


@struct.dataclass
class Rollout:
    """One teacher's running envs."""

    env_states: tuple[Any, ...]
    obs: jax.Array  # (teacher tasks, envs, *teacher obs shape)
    ep_return: jax.Array  # (teacher tasks, envs) return of the running episode


@struct.dataclass
class DistillState:
    params: Any  # the student's
    opt_state: Any
    obs: jax.Array  # (tasks, capacity, *student obs shape) states the teachers visited
    q: jax.Array  # (tasks, capacity, student actions) the teacher's Q-values there (reward units)
    pos: jax.Array  # next write index, shared by all tasks (all write num_envs states per iteration)
    size: jax.Array
    rollouts: tuple[Rollout, ...]
    key: jax.Array


class DistillKeys(NamedTuple):
    """Every key a distillation draws from its root key."""

    params: jax.Array  # the student's initialization
    env: jax.Array  # the teachers' env resets for the training data
    run: jax.Array  # the state's key, split every iteration
    holdout: jax.Array  # the fresh rollout of held-out states for the action report


def split_distill_key(key: jax.Array) -> DistillKeys:
    return DistillKeys(*jax.random.split(key, 4))


HOLDOUT_ENVS = 32  # envs of the held-out rollout
HOLDOUT_STRIDE = 8  # of which every 8th state is kept
TeacherParams = tuple[tuple[Any, Any], ...]  # per teacher: (params, PopArt statistics or None)


class Distiller(NamedTuple):
    """Compile-once functions of one distillation (``teacher_params`` are arguments: :func:`teacher_params`)."""

    init: Callable[[jax.Array], DistillState]
    run_chunk: Callable[[DistillState, TeacherParams, jax.Array], tuple[DistillState, dict[str, jax.Array]]]
    collect: Callable[[TeacherParams, jax.Array], tuple[jax.Array, jax.Array]]  # held-out (obs, teacher q)
    teacher_params: TeacherParams


def _start_rollouts(teachers: tuple[Teacher, ...], key: jax.Array, num_envs: int) -> tuple[Rollout, ...]:
    out = []
    for t, k in zip(teachers, jax.random.split(key, len(teachers))):
        obs, env_states = reset_envs(t.agent.task_set, k, num_envs)
        out.append(Rollout(env_states, obs, jnp.zeros(obs.shape[:2], jnp.float32)))
    return tuple(out)


def _teacher_step(student: Agent, teachers: tuple[Teacher, ...], tparams: TeacherParams, rollouts: tuple[Rollout, ...],
                  key: jax.Array, eps: float) -> tuple[tuple[Rollout, ...], jax.Array, jax.Array, dict[str, jax.Array]]:
    """Every teacher acts once in all its envs: (rollouts, obs (tasks, envs, ...), q (tasks, envs, actions), stats)
    with the student's task axis; obs and q are those of the states acted in."""
    new, obs_out, q_out, return_sum, episodes = [], [], [], [], []
    for k, (t, (params, value_norm), r) in enumerate(zip(teachers, tparams, rollouts)):
        k_act, k_step = split_env_step_key(jax.random.fold_in(key, k))
        q = q_values(t.agent.arch, params, r.obs)  # (teacher tasks, envs, teacher actions)
        if value_norm is not None:  # PopArt heads are normalized: targets in reward units
            q = unnormalize(value_norm, q)
        actions = act(t.agent, params, r.obs, k_act, jnp.float32(eps))
        env_states, out = step_envs(t.agent.task_set, r.env_states, actions, k_step)
        ep_return = r.ep_return + out.reward
        return_sum.append(jnp.sum(jnp.where(out.done, ep_return, 0.0), axis=1))
        episodes.append(jnp.sum(out.done, axis=1).astype(jnp.int32))
        new.append(Rollout(env_states, out.obs, jnp.where(out.done, 0.0, ep_return)))
        for j, task in enumerate(t.agent.task_set.tasks):
            obs_out.append(pad_obs(r.obs[j, ..., : task.obs_shape[-1]], student.task_set))
            padding = ((0, 0), (0, student.task_set.num_actions - task.num_actions))
            q_out.append(jnp.pad(q[j, :, : task.num_actions], padding))
    stats = {"return_sum": jnp.concatenate(return_sum), "episodes": jnp.concatenate(episodes)}
    return tuple(new), jnp.stack(obs_out), jnp.stack(q_out), stats


def student_greedy(student: Agent, params: Any, obs: jax.Array) -> jax.Array:
    """The student's greedy actions (tasks, batch) on observations (tasks, batch, *obs shape)."""
    return jnp.argmax(masked_q(q_values(student.arch, params, obs), student.action_mask[:, None, :]), axis=-1)


def _losses(student: Agent, cfg: DistillConfig, params: Any, obs: jax.Array, q_teacher: jax.Array):
    """Per-task losses (tasks,) and action agreement on the batch (tasks,)."""
    q_student = q_values(student.arch, params, obs)  # (tasks, batch, actions)
    mask = student.action_mask
    if cfg.loss == "kl":
        losses = jax.vmap(lambda s, t, m: distill_kl(s, t, m, cfg.temperature))(q_student, q_teacher, mask)
    else:
        losses = jax.vmap(distill_ce)(q_student, q_teacher, mask)
    teacher_a = jnp.argmax(masked_q(q_teacher, mask[:, None, :]), axis=-1)
    student_a = jnp.argmax(masked_q(jax.lax.stop_gradient(q_student), mask[:, None, :]), axis=-1)
    return losses, jnp.mean(student_a == teacher_a, axis=1)


def make_distiller(student: Agent, teachers: tuple[Teacher, ...], cfg: DistillConfig) -> Distiller:
    """The compiled pieces of a distillation of ``teachers`` into ``student`` (one seed)."""
    optimizer = optax.adam(cfg.lr)
    t_count = student.num_tasks
    capacity = cfg.buffer_size
    n_iters = student.derived.iters_per_chunk
    learning_starts_iters = student.derived.learning_starts_iters  # the student's record holds the distillation's

    def init(key: jax.Array) -> DistillState:
        keys = split_distill_key(key)
        params = init_params(student.arch, keys.params)
        ts = student.task_set
        return DistillState(
            params=params, opt_state=optimizer.init(params),
            obs=jnp.zeros((t_count, capacity, *ts.obs_shape), obs_dtype(ts)),
            q=jnp.zeros((t_count, capacity, ts.num_actions), jnp.float32),
            pos=jnp.int32(0), size=jnp.int32(0),
            rollouts=_start_rollouts(teachers, keys.env, cfg.num_envs), key=keys.run,
        )

    def update(state: DistillState, key: jax.Array) -> tuple[DistillState, dict[str, jax.Array]]:
        idx = jax.random.randint(key, (t_count, cfg.batch_size), 0, jnp.maximum(state.size, 1))
        take = jax.vmap(lambda buf, i: buf[i])
        obs, q_teacher = take(state.obs, idx), take(state.q, idx)

        def loss_fn(params: Any) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
            losses, agree = _losses(student, cfg, params, obs, q_teacher)
            return jnp.sum(losses), (losses, agree)  # the tasks' losses summed, as the "sum" strategy does

        (_, (losses, agree)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        return state.replace(params=optax.apply_updates(state.params, updates), opt_state=opt_state), \
            {"loss": losses, "agreement": agree}

    def iteration(state: DistillState, tparams: TeacherParams, t: jax.Array):
        k_carry, k_env, k_update = jax.random.split(state.key, 3)
        rollouts, obs, q, stats = _teacher_step(student, teachers, tparams, state.rollouts, k_env,
                                                cfg.teacher_epsilon)
        idx = (state.pos + jnp.arange(cfg.num_envs)) % capacity
        state = state.replace(
            obs=state.obs.at[:, idx].set(obs), q=state.q.at[:, idx].set(q), rollouts=rollouts, key=k_carry,
            pos=(state.pos + cfg.num_envs) % capacity, size=jnp.minimum(state.size + cfg.num_envs, capacity),
        )
        zeros = {"loss": jnp.zeros((t_count,)), "agreement": jnp.zeros((t_count,))}
        due = t >= learning_starts_iters
        state, metrics = jax.lax.cond(due, lambda s: update(s, k_update), lambda s: (s, zeros), state)
        return state, {**stats, **metrics, "updated": due.astype(jnp.float32)}

    def chunk(state: DistillState, tparams: TeacherParams, start: jax.Array):
        ts = start + jnp.arange(n_iters, dtype=jnp.int32)
        state, per_iter = jax.lax.scan(lambda s, t: iteration(s, tparams, t), state, ts)
        n_updates = jnp.maximum(per_iter["updated"].sum(), 1.0)
        episodes = per_iter["episodes"].sum(0)
        return state, {
            "loss": per_iter["loss"].sum(0) / n_updates, "agreement": per_iter["agreement"].sum(0) / n_updates,
            "updates": per_iter["updated"].sum(), "episodes": episodes,
            "teacher_return": jnp.where(episodes > 0, per_iter["return_sum"].sum(0) / jnp.maximum(episodes, 1),
                                        jnp.nan),
        }

    def collect(tparams: TeacherParams, key: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``holdout`` states per task from fresh rollouts of the teachers: (obs, teacher q), task axis first.

        Every HOLDOUT_STRIDE-th state of HOLDOUT_ENVS envs: many episodes at every phase, few near-duplicates
        (4 envs of 500-step CartPole episodes would give 4 episodes' worth of strongly correlated states).
        """
        k_reset, k_run = jax.random.split(key)
        kept = -(-cfg.holdout // HOLDOUT_ENVS)

        def body(rollouts, k):
            rollouts, obs, q, _ = _teacher_step(student, teachers, tparams, rollouts, k, cfg.teacher_epsilon)
            return rollouts, (obs, q)

        start = _start_rollouts(teachers, k_reset, HOLDOUT_ENVS)
        _, (obs, q) = jax.lax.scan(body, start, jax.random.split(k_run, kept * HOLDOUT_STRIDE))

        def flat(x: jax.Array) -> jax.Array:  # (steps, tasks, envs, ...) -> (tasks, holdout, ...)
            x = jnp.moveaxis(x[HOLDOUT_STRIDE - 1 :: HOLDOUT_STRIDE], 0, 1)
            return x.reshape(x.shape[0], kept * HOLDOUT_ENVS, *x.shape[3:])[:, : cfg.holdout]

        return flat(obs), flat(q)

    tparams = tuple((t.params, t.value_norm) for t in teachers)
    options = chunk_compiler_options(student, *(t.agent for t in teachers))  # the networks' XLA options
    return Distiller(jax.jit(init), jax.jit(chunk, donate_argnums=(0,), compiler_options=options),
                     jax.jit(collect, compiler_options=options), tparams)
