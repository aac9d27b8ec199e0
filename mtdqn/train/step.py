"""The pure pieces of training: act, one gradient update, one vector step.

The compiled loop (``loop.py``) and evaluation both call these; nothing here
touches the host.  Per-task gradients on the shared parameters come from one
``vmap`` over the task axis (each task's loss sees the shared weights plus its
own slice of the per-task weights), which costs about one ordinary backward
pass and hands every strategy the ``(tasks, ...)`` gradients it needs.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from mtdqn.finetune import is_finetuned, trains_now
from mtdqn.losses import masked_q, q_taken, td_error_loss, td_target
from mtdqn.networks import Dropout, merge_shared, one_task_q_values, q_values, split_shared
from mtdqn.replay import Transition, replay_add, replay_sample, replay_sample_n_step
from mtdqn.strategies.base import StrategyHypers, task_gram
from mtdqn.tasks import EnvStep, step_envs
from mtdqn.train.affinity import lookahead_affinity, measures_affinity
from mtdqn.train.agent import Agent, TrainState
from mtdqn.train.hypers import Hypers
from mtdqn.value_norm import popart_step, sigma, unnormalize

__all__ = ["IterationKeys", "split_iteration_key", "split_env_step_key", "epsilon", "act", "sample_batch",
           "one_step_discounts", "td_targets", "has_dropout", "loss_weights", "task_gradients", "task_affinity",
           "shared_trains_now", "trainable_shared", "strategy_losses", "update",
           "record_transition", "env_step", "iteration", "grad_diagnostics"]


class IterationKeys(NamedTuple):
    """The keys one training iteration uses, split from the state's key (the host loop splits the same way)."""

    carry: jax.Array  # becomes the state's key for the next iteration
    env: jax.Array  # acting and stepping the envs (:func:`split_env_step_key`)
    update: jax.Array  # sampling the batch and the strategy's randomness


def split_iteration_key(key: jax.Array) -> IterationKeys:
    return IterationKeys(*jax.random.split(key, 3))


def split_env_step_key(key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(acting key, env-stepping key) of one vector step; host envs use only the first."""
    k_act, k_step = jax.random.split(key)
    return k_act, k_step


def epsilon(agent: Agent, t: jax.Array, hp: Hypers | None = None) -> jax.Array:
    """Linear epsilon schedule over ``eps_fraction`` of the run's iterations.

    ``hp``: the traced hyperparameters of the compiled loop; None: the config's own (here, and in every function
    below that takes them)."""
    hp = agent.hypers if hp is None else hp
    frac = jnp.clip(t / hp.eps_decay_iters, 0.0, 1.0)
    return hp.eps_start + frac * (hp.eps_end - hp.eps_start)


def act(agent: Agent, params: Any, obs: jax.Array, key: jax.Array, eps: jax.Array) -> jax.Array:
    """Epsilon-greedy actions (tasks, envs); random actions are uniform over the task's own actions."""
    q = masked_q(q_values(agent.arch, params, obs), agent.action_mask[:, None, :])
    greedy = jnp.argmax(q, axis=-1)
    k_explore, k_random = jax.random.split(key)
    n_actions = jnp.asarray([t.num_actions for t in agent.task_set.tasks])[:, None]
    random_actions = jax.random.randint(k_random, greedy.shape, 0, n_actions)
    explore = jax.random.uniform(k_explore, greedy.shape) < eps
    return jnp.where(explore, random_actions, greedy).astype(jnp.int32)


def sample_batch(agent: Agent, state: TrainState, key: jax.Array,
                 hp: Hypers | None = None) -> tuple[Transition, jax.Array]:
    """A mixed-task batch and its discounts d_t (tasks, batch): the task's gamma, 0 at termination (truncation
    bootstraps); with ``--n-step`` n > 1, n-step transitions and gamma^steps (:func:`replay_sample_n_step`)."""
    d = agent.cfg.dqn
    hp = agent.hypers if hp is None else hp
    if d.n_step > 1:
        return replay_sample_n_step(state.replay, key, d.batch_size, d.n_step, agent.cfg.num_envs, hp.gammas)
    batch = replay_sample(state.replay, key, d.batch_size)
    return batch, one_step_discounts(agent, batch, hp)


def one_step_discounts(agent: Agent, batch: Transition, hp: Hypers | None = None) -> jax.Array:
    """d_t (tasks, batch) of 1-step transitions: each task's gamma, 0 where the transition terminated."""
    gammas = (agent.hypers if hp is None else hp).gammas[:, None]  # (tasks, 1)
    return gammas * (1.0 - batch.terminated.astype(jnp.float32))


def td_targets(agent: Agent, state: TrainState, batch: Transition, d_t: jax.Array | None = None) -> jax.Array:
    """TD targets (tasks, batch) from the target network, with the discounts of :func:`sample_batch` (None:
    ``batch`` holds 1-step transitions with the config's gammas, :func:`one_step_discounts`)."""
    if d_t is None:
        d_t = one_step_discounts(agent, batch)
    q_t_target = q_values(agent.arch, state.target_params, batch.next_obs)
    if agent.cfg.value_norm == "popart":  # targets in reward units; argmaxes are unchanged by sigma > 0
        q_t_target = unnormalize(state.value_norm, q_t_target)
    q_t_online = q_values(agent.arch, state.params, batch.next_obs) if agent.cfg.dqn.double else q_t_target
    target_fn = jax.vmap(td_target, in_axes=(0, 0, 0, 0, 0, None))
    return target_fn(batch.reward, d_t, q_t_target, q_t_online, agent.action_mask, agent.cfg.dqn.double)


def has_dropout(agent: Agent) -> bool:
    """Whether the loss's forward pass has dropout: a property of the program (``--dropout`` > 0), its rate a
    traced value (``Hypers.dropout_keep``).  A sweep's members all have it or none do: a run at rate 0 put
    through dropout keeps every unit, yet XLA optimizes that program otherwise, and its last bits differ."""
    return agent.cfg.dqn.dropout > 0


def loss_weights(agent: Agent, hp: Hypers | None = None) -> jax.Array:
    """The static loss weights w_i (tasks,): ``hp``'s, traced, when the config sets ``--task-weights``; else
    the literal 1s every run had before weights could be traced.

    Why not always traced: XLA compiles ``sum``'s weighted sum differently when the weights are literals
    (measured: the same run's parameters then differ in their last bits), and runs without --task-weights,
    nearly all of them, keep their numbers this way.  A sweep over weights sets them in every member's
    config (:func:`mtdqn.sweepspec.member_configs`), so a member and its run alone both trace them.  Runs
    with --task-weights made before the weights were traced computed ``sum`` with literals: continued now,
    they differ from then in the last bits (the other strategies compute their coefficients, and are
    unchanged)."""
    if agent.cfg.task_weights is None:
        return jnp.asarray(agent.derived.task_weights, jnp.float32)  # a literal [1, ...], as it always was
    return jnp.asarray((agent.hypers if hp is None else hp).task_weights)


def _task_loss(agent: Agent, shared: Any, task_params: Any, batch: Transition, target: jax.Array, task_id: jax.Array,
               dropout_key: jax.Array | None, keep: jax.Array):
    """One task's TD loss; called under vmap over tasks (no task axis in the arguments)."""
    dropout = None if dropout_key is None or not has_dropout(agent) else Dropout(keep=keep, key=dropout_key)
    q_tm1 = one_task_q_values(agent.arch, shared, task_params, batch.obs, task_id, dropout)  # (batch, actions)
    q_sa = q_taken(q_tm1, batch.action)
    return td_error_loss(q_sa, target, agent.cfg.dqn.loss), jnp.mean(q_sa)


def task_gradients(agent: Agent, params: Any, batch: Transition, targets: jax.Array,
                   dropout_key: jax.Array | None = None, hp: Hypers | None = None):
    """Per-task TD losses (tasks,), mean Q (tasks,) and gradients: on the shared parameters (leading task
    axis, each task's own loss) and on the per-task ones, from one vmap over the task axis.

    With ``--dropout`` > 0 (:func:`has_dropout`) and a ``dropout_key``, the online Q-values of the loss (only
    they) see dropout at ``hp``'s rate, each task its own masks; without a key (the gradient probe) the whole
    network."""
    keep = (agent.hypers if hp is None else hp).dropout_keep
    shared, per_task = split_shared(agent.arch, params)
    grad_fn = jax.value_and_grad(lambda s, p, b, y, i, k: _task_loss(agent, s, p, b, y, i, k, keep), argnums=(0, 1),
                                 has_aux=True)
    task_ids = jnp.arange(agent.num_tasks)
    keys = None if dropout_key is None else jax.random.split(dropout_key, agent.num_tasks)  # rate 0: unused
    (losses, q_mean), (g_shared, g_task) = jax.vmap(grad_fn, in_axes=(None, 0, 0, 0, 0, 0))(
        shared, per_task, batch, targets, task_ids, keys
    )
    return losses, q_mean, g_shared, g_task


def task_affinity(agent: Agent, params: Any, batch: Transition, targets: jax.Array, g_shared: Any,
                  lr: jax.Array, dropout_key: jax.Array | None = None, hp: Hypers | None = None) -> jax.Array:
    """TAG's lookahead affinity Z (tasks i, tasks j) on one minibatch (:mod:`mtdqn.train.affinity`): each
    task's loss exactly as :func:`task_gradients` took it (same batch, same fixed TD targets, same dropout
    masks), the shared parameters stepped by ``-lr`` times each task's shared gradient ``g_shared``."""
    keep = (agent.hypers if hp is None else hp).dropout_keep
    shared, per_task = split_shared(agent.arch, params)
    task_ids = jnp.arange(agent.num_tasks)
    keys = None if dropout_key is None else jax.random.split(dropout_key, agent.num_tasks)  # as task_gradients

    def losses(s: Any) -> jax.Array:  # (tasks,): every task's loss with shared parameters s
        return jax.vmap(lambda p, b, y, i, k: _task_loss(agent, s, p, b, y, i, k, keep)[0])(
            per_task, batch, targets, task_ids, keys)

    return lookahead_affinity(losses, shared, g_shared, lr)


def _affinity_metrics(agent: Agent, state: TrainState, batch: Transition, targets: jax.Array, g_trained: Any,
                      dropout_key: jax.Array, measure: jax.Array | bool, hp: Hypers) -> dict[str, jax.Array]:
    """The update's affinity measurement when ``measure`` (zeros else), its lookahead a step of ``--lr`` itself
    (:mod:`mtdqn.train.affinity`: not the schedule's decayed rate).

    ``measure`` is un-batched over seeds (:func:`mtdqn.train.affinity.measures_affinity`), so the
    ``lax.cond`` stays a branch under vmap: an update that does not measure skips the forward passes.
    Frozen shared leaves have a zero gradient here, so they do not move in the lookahead either."""
    lr = hp.lr
    t = agent.num_tasks
    z = jax.lax.cond(measure, lambda: task_affinity(agent, state.params, batch, targets, g_trained, lr, dropout_key,
                                                    hp),
                     lambda: jnp.zeros((t, t), jnp.float32))
    return {"affinity": z, "affinity_measured": jnp.asarray(measure, jnp.float32)}


def shared_trains_now(agent: Agent, params: Any, updates: jax.Array) -> Any:
    """Per shared leaf (the layout of :func:`task_gradients`' shared gradients), whether the update with count
    ``updates`` moves it: ``frozen`` leaves never, ``trunk-until``'s before its unfreeze not
    (:func:`mtdqn.finetune.trains_now`); every leaf of a run without fine-tuning settings."""
    if not is_finetuned(agent.cfg.finetune):
        return jax.tree.map(lambda _: True, split_shared(agent.arch, params)[0])
    cfg = agent.cfg
    moves = trains_now(cfg.finetune, agent.arch, agent.derived, cfg.num_envs, params, updates)
    return split_shared(agent.arch, moves)[0]


def trainable_shared(g_shared: Any, moves: Any) -> Any:
    """Per-task shared gradients with the leaves no update moves now zeroed (:func:`shared_trains_now`): what
    the strategy, the Gram matrix and the diagnostics see.  A zero leaf adds nothing to any dot product, so
    this is the same as leaving it out; with every leaf zeroed every g_i is 0 and so is the combination."""
    def keep(g: jax.Array, m: Any) -> jax.Array:
        if m is True:  # trains: the gradient itself, bit for bit
            return g
        return jnp.zeros_like(g) if m is False else jnp.where(m, g, jnp.zeros_like(g))

    return jax.tree.map(keep, g_shared, moves)


def _gated_for_the_moments(combined: Any, whole: Any, moves: Any) -> Any:
    """``trunk-until``'s trunk: the strategy's combination of the whole shared gradients (``whole``: as if every
    leaf trained).  Once it opens that is what the strategy returned there; before, the strategy saw it zeroed,
    and this gives the optimizer its gradient anyway (the gate still zeroes the update), so Adam's moments are
    warm when it opens.  (The coefficients the strategy applied to the zeroed leaves would not do: unit-norm's
    guard gives a zero gradient 0, and its moments stayed cold.)  Every other leaf as combined."""
    return jax.tree.map(lambda c, g, m: c if isinstance(m, bool) else g, combined, whole, moves)


def strategy_losses(agent: Agent, state: TrainState, losses: jax.Array) -> jax.Array:
    """The task losses the strategy reads.  Under ``--value-norm popart`` the loss is taken on normalized values, in
    units of sigma_i that PopArt's statistics move as they learn the targets' scale, so a rule reading training
    rates (:attr:`~mtdqn.strategies.base.StrategySpec.loss_rates`: gradnorm's L_i(t) / L_i(0), dwa's window
    ratios) gets sigma_i^2 times it, the loss in reward units (for ``mse`` exactly the squared TD error's; for
    ``huber`` the Huber loss of the TD error with its threshold scaled by sigma_i): else a task whose sigma grew
    since would read as one that learned.  Every other rule, and the gradients, keep the loss that is trained."""
    if agent.cfg.value_norm == "popart" and agent.strategy.loss_rates:
        return losses * sigma(state.value_norm) ** 2
    return losses


def grad_diagnostics(gram: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Per-task gradient norms (tasks,) and pairwise cosine similarities (tasks, tasks) from the Gram matrix."""
    norms = jnp.sqrt(jnp.clip(jnp.diag(gram), 0.0))
    cosine = gram / jnp.maximum(norms[:, None] * norms[None, :], 1e-12)
    return norms, cosine


def update(agent: Agent, state: TrainState, key: jax.Array, measure_affinity: jax.Array | bool = False,
           hp: Hypers | None = None) -> tuple[TrainState, dict[str, jax.Array]]:
    """Sample a mixed-task batch, take per-task gradients, combine, step the optimizer.

    With ``--affinity-every`` set, the metrics also hold the lookahead affinity on this update's batch and
    targets when ``measure_affinity`` (zeros and a 0 flag else).  ``hp``: the traced hyperparameters (lr, the
    gammas, tau, the task weights, the strategy's numbers, dropout's rate); None: the config's own."""
    hp = agent.hypers if hp is None else hp
    # Three named keys; with JAX's partitionable Threefry (the default) split(key, 3)[:2] == split(key, 2), so
    # the batch and strategy keys, and every number of a run without dropout, are those of the two-way split.
    k_sample, k_strategy, k_dropout = jax.random.split(key, 3)
    batch, d_t = sample_batch(agent, state, k_sample, hp)
    targets = td_targets(agent, state, batch, d_t)
    if agent.cfg.value_norm == "popart":  # new statistics, heads rescaled to preserve Q, normalized targets
        value_norm, params, target_params, targets = popart_step(
            state.value_norm, state.params, state.target_params, targets
        )
        state = state.replace(value_norm=value_norm, params=params, target_params=target_params)
    losses, q_mean, g_shared, g_task = task_gradients(agent, state.params, batch, targets, k_dropout, hp)
    if agent.cfg.value_norm == "popart":
        q_mean = unnormalize(state.value_norm, q_mean)  # report Q in reward units
    w = loss_weights(agent, hp)  # (tasks,)
    g_task = jax.tree.map(lambda g: g * w.reshape(-1, *([1] * (g.ndim - 1))), g_task)
    moves = shared_trains_now(agent, state.params, state.updates)
    g_trained = trainable_shared(g_shared, moves)  # frozen leaves (and trunk-until's before it opens) zeroed
    gram = task_gram(g_trained, agent.num_tasks)  # (tasks, tasks), once: the strategy and the diagnostics share it
    read, hypers = strategy_losses(agent, state, losses), StrategyHypers(w, hp.strategy)
    combined, strategy_state, strategy_metrics = agent.strategy.combine(
        g_trained, gram, read, state.strategy_state, k_strategy, hypers)
    if any(not isinstance(m, bool) for m in jax.tree.leaves(moves)):  # trunk-until: its gated trunk for the moments
        whole, _, _ = agent.strategy.combine(g_shared, task_gram(g_shared, agent.num_tasks), read,
                                             state.strategy_state, k_strategy, hypers)
        combined = _gated_for_the_moments(combined, whole, moves)
    grads = merge_shared(combined, g_task)
    updates, opt_state = agent.optimizer_at(hp).update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    n_updates = state.updates + 1
    refresh = (n_updates % agent.cfg.dqn.target_update_every) == 0
    tau = hp.tau
    target_params = jax.tree.map(
        lambda new, old: jnp.where(refresh, tau * new + (1.0 - tau) * old, old), params, state.target_params
    )
    if is_finetuned(agent.cfg.finetune):  # weights this update left alone (frozen, or trunk-until's before it
        # opens): the target copy is the online one, bit for bit (a Polyak mix of two equal values drifts by rounding)
        moves = trains_now(agent.cfg.finetune, agent.arch, agent.derived, agent.cfg.num_envs, params, state.updates)
        target_params = jax.tree.map(lambda t, p, m: t if m is True else p if m is False else jnp.where(m, t, p),
                                     target_params, params, moves)
    norms, cosine = grad_diagnostics(gram)
    metrics = {
        "loss": losses,
        "q_mean": q_mean,
        "grad_norm": jnp.broadcast_to(norms, losses.shape),
        "weight": strategy_metrics["weights"],
        "cosine": jnp.broadcast_to(cosine, (agent.num_tasks, agent.num_tasks)),
        "conflict": jnp.broadcast_to(cosine < 0, (agent.num_tasks, agent.num_tasks)).astype(jnp.float32),
    }
    if agent.cfg.affinity_every:  # measured before the step, at the parameters the gradients were taken at
        metrics |= _affinity_metrics(agent, state, batch, targets, g_trained, k_dropout, measure_affinity, hp)
    new_state = state.replace(
        params=params, target_params=target_params, opt_state=opt_state,
        strategy_state=strategy_state, updates=n_updates,
    )
    return new_state, metrics


def empty_update_metrics(agent: Agent) -> dict[str, jax.Array]:
    """Zeros shaped like :func:`update`'s metrics, for iterations without an update."""
    t = agent.num_tasks
    z = jnp.zeros((t,), jnp.float32)
    zz = jnp.zeros((t, t), jnp.float32)
    affinity = {"affinity": zz, "affinity_measured": jnp.float32(0.0)} if agent.cfg.affinity_every else {}
    return {"loss": z, "q_mean": z, "grad_norm": z, "weight": z, "cosine": zz, "conflict": zz, **affinity}


def record_transition(
    agent: Agent, state: TrainState, actions: jax.Array, out: EnvStep
) -> tuple[TrainState, dict[str, jax.Array]]:
    """Store one vector step's transitions and track episode returns.

    Shared by the compiled loop (:func:`env_step`) and the Gymnasium host loop.
    """
    scaled = out.reward * agent.reward_scales[:, None]
    done = out.done if agent.cfg.dqn.n_step > 1 else None  # n-step windows stop at episode ends
    replay = replay_add(state.replay, Transition(state.obs, actions, scaled, out.next_obs, out.terminated, done))
    ep_return = state.ep_return + out.reward
    ep_length = state.ep_length + 1
    stats = {
        "return_sum": jnp.sum(jnp.where(out.done, ep_return, 0.0), axis=1),
        "length_sum": jnp.sum(jnp.where(out.done, ep_length, 0), axis=1).astype(jnp.float32),
        "episodes": jnp.sum(out.done, axis=1).astype(jnp.int32),
    }
    new_state = state.replace(
        replay=replay, obs=out.obs,
        ep_return=jnp.where(out.done, 0.0, ep_return), ep_length=jnp.where(out.done, 0, ep_length),
        iteration=state.iteration + 1,
    )
    return new_state, stats


def env_step(agent: Agent, state: TrainState, key: jax.Array, eps: jax.Array) -> tuple[TrainState, dict[str, jax.Array]]:
    """Act in every env of every task, store the transitions, track episode returns."""
    k_act, k_step = split_env_step_key(key)
    actions = act(agent, state.params, state.obs, k_act, eps)
    env_states, out = step_envs(agent.task_set, state.env_states, actions, k_step)
    return record_transition(agent, state.replace(env_states=env_states), actions, out)


def iteration(agent: Agent, state: TrainState, t: jax.Array,
              hp: Hypers | None = None) -> tuple[TrainState, dict[str, jax.Array]]:
    """One vector step of all tasks, then an update when due.

    ``t`` is the global iteration index passed in un-batched (the same for all
    vmapped seeds), so the update condition stays a real branch under vmap.
    ``hp``: the seed's traced hyperparameters (:mod:`mtdqn.train.hypers`).
    """
    hp = agent.hypers if hp is None else hp
    keys = split_iteration_key(state.key)
    state = state.replace(key=keys.carry)
    eps = epsilon(agent, t, hp)
    state, stats = env_step(agent, state, keys.env, eps)
    due = (t >= agent.derived.learning_starts_iters) & (t % agent.derived.train_every_iters == 0)
    state, metrics = jax.lax.cond(
        due,
        lambda s: update(agent, s, keys.update, measures_affinity(agent.derived, agent.cfg.affinity_every, t), hp),
        lambda s: (s, empty_update_metrics(agent)),
        state,
    )
    return state, {**stats, **metrics, "updated": due.astype(jnp.float32), "epsilon": eps}
