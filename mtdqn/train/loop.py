"""The compiled training program: ``init(keys)`` and ``run_chunk(states, start)``.

PureJaxRL's shape: the whole loop is ``lax.scan`` over iterations, and
``jax.jit(jax.vmap(...))`` trains every seed in one program, compiled once.
Training is cut into equal chunks (one logging window each) so the host can
draw a progress bar, write metrics and checkpoint between them; every chunk
runs the same compiled function.  The seed axis is split over local devices
(``mtdqn.devices``): on a multi-core CPU each core trains its share of seeds.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from mtdqn.devices import Population, over_members, over_seeds, population_layout
from mtdqn.networks import init_params
from mtdqn.replay import replay_init
from mtdqn.tasks import obs_dtype, reset_envs
from mtdqn.train.agent import Agent, TrainState
from mtdqn.train.hypers import Hypers, stack_hypers
from mtdqn.train.step import has_dropout, iteration
from mtdqn.value_norm import popart_init

__all__ = ["Trainer", "RootKeys", "split_root", "make_trainer", "make_population_trainer", "program_agent",
           "chunk_compiler_options", "MOORE_COMPILER_OPTIONS",
           "population_keys", "init_state", "fresh_state", "seed_keys", "summarize_chunk"]


def seed_keys(seeds: list[int]) -> jax.Array:
    """One root key per seed: seeds differ in init, exploration and env streams."""
    return jnp.stack([jax.random.PRNGKey(s) for s in seeds])


class RootKeys(NamedTuple):
    """Every key a seed's run draws from its root key; both loops split it here and nowhere else."""

    params: jax.Array  # network initialization
    env: jax.Array  # env resets (compiled loop) or the Gymnasium env seeds (host loop)
    strategy: jax.Array  # reserved: strategies are deterministic at init
    run: jax.Array  # the state's key: every iteration splits it (:func:`mtdqn.train.step.split_iteration_key`)


def split_root(key: jax.Array) -> RootKeys:
    return RootKeys(*jax.random.split(key, 4))


def init_state(agent: Agent, key: jax.Array) -> TrainState:
    """Fresh state for one seed, from the named parts of its root key."""
    keys = split_root(key)
    obs, env_states = reset_envs(agent.task_set, keys.env, agent.cfg.num_envs)
    return fresh_state(agent, keys.params, keys.run, obs, env_states)


def fresh_state(agent: Agent, k_params: jax.Array, k_run: jax.Array, obs: jax.Array, env_states: Any) -> TrainState:
    """A new learner around given first observations and env states (the host loop passes none)."""
    params = init_params(agent.arch, k_params)
    t = agent.num_tasks
    return TrainState(
        params=params,
        target_params=params,
        opt_state=agent.optimizer.init(params),
        strategy_state=agent.strategy.init(t),
        value_norm=popart_init(t) if agent.cfg.value_norm == "popart" else (),
        replay=replay_init(t, agent.cfg.dqn.buffer_size, agent.task_set.obs_shape, obs_dtype(agent.task_set),
                           with_done=agent.cfg.dqn.n_step > 1),
        env_states=env_states,
        obs=obs,
        ep_return=jnp.zeros((t, agent.cfg.num_envs), jnp.float32),
        ep_length=jnp.zeros((t, agent.cfg.num_envs), jnp.int32),
        key=k_run,
        iteration=jnp.int32(0),
        updates=jnp.int32(0),
    )


def summarize_chunk(per_iter: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """Reduce per-iteration outputs (iters, ...) to one row of metrics per task."""
    episodes = per_iter["episodes"].sum(0)
    n_updates = jnp.maximum(per_iter["updated"].sum(0), 1.0)
    mean_upd = lambda x: x.sum(0) / n_updates  # noqa: E731  (padding rows are zeros)
    safe = jnp.maximum(episodes, 1)
    return {**_affinity_summary(per_iter),
        "episode_return": jnp.where(episodes > 0, per_iter["return_sum"].sum(0) / safe, jnp.nan),
        "episode_length": jnp.where(episodes > 0, per_iter["length_sum"].sum(0) / safe, jnp.nan),
        "episodes": episodes,
        "loss": mean_upd(per_iter["loss"]),
        "q_mean": mean_upd(per_iter["q_mean"]),
        "grad_norm": mean_upd(per_iter["grad_norm"]),
        "weight": mean_upd(per_iter["weight"]),
        "cosine": mean_upd(per_iter["cosine"]),
        "conflict": mean_upd(per_iter["conflict"]),  # share of updates whose pair gradients conflict
        "max_abs_loss": jnp.max(jnp.abs(per_iter["loss"]), axis=0),
        "updates": per_iter["updated"].sum(0),
        "epsilon": per_iter["epsilon"][-1],
    }


def _affinity_summary(per_iter: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """The mean affinity (tasks, tasks) over the window's measurements and their count ({} when not measured)."""
    if "affinity" not in per_iter:
        return {}
    measured = per_iter["affinity_measured"].sum(0)
    return {"affinity": per_iter["affinity"].sum(0) / jnp.maximum(measured, 1.0), "affinity_measurements": measured}


class Trainer(NamedTuple):
    agent: Agent
    init: Callable[[jax.Array], TrainState]  # (seeds, 2) keys -> batched state
    chunk: Callable[[TrainState, Hypers, Any], tuple[TrainState, dict[str, jax.Array]]]  # jitted, hypers traced
    hypers: Hypers  # each seed's (population entry's) hyperparameters, leading axis the seed
    devices: int = 1  # local devices the seed axis is split over
    population: Population | None = None  # a sweep's layout (None: the agent's seeds)

    def run_chunk(self, state: TrainState, start: Any) -> tuple[TrainState, dict[str, jax.Array]]:
        """One logging window of every seed from iteration ``start``, with the trainer's hyperparameters."""
        return self.chunk(state, self.hypers, start)


def _one_seed_chunk(agent: Agent) -> Callable[[TrainState, Hypers, jax.Array], tuple[TrainState, dict]]:
    """The algorithm: one seed's logging window, a ``lax.scan`` of :func:`iteration` with its hyperparameters."""
    n = agent.derived.iters_per_chunk

    def chunk(state: TrainState, hp: Hypers, start: jax.Array) -> tuple[TrainState, dict[str, jax.Array]]:
        ts = start + jnp.arange(n, dtype=jnp.int32)
        state, per_iter = jax.lax.scan(lambda s, t: iteration(agent, s, t, hp), state, ts)
        return state, summarize_chunk(per_iter)

    return chunk


MOORE_COMPILER_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"}
"""XLA:CPU's library (YNNPACK) fusions for ``moore``'s training program: matmuls only, without reductions."""


def chunk_compiler_options(*agents: Agent) -> dict[str, str] | None:
    """XLA options for a training program that runs the networks of ``agents`` (None: XLA's own).

    jaxlib 0.10's XLA:CPU hands reductions to YNNPACK (its default library fusions: single matmuls and
    reductions), one library call each.  ``moore``'s Gram–Schmidt is dozens of reductions over one sample's
    features (K(K+1)/2 dot products and norms, forward and backward, per task), each too small to repay the
    call: with reductions left to XLA's own loops, ``moore:3`` on the classic set trains 1.45-1.5x faster per
    update (3.18/3.24 -> 2.15/2.20 ms), while the networks without it gain nothing or lose a little
    (CartPole alone 0.196-0.203 -> 0.209 ms), so it is ``moore``'s alone (README, "Experts";
    ``benchmarks/moore_gram_schmidt.py`` compares both).  The option is part of the program, so every way
    of training a config that compiles this loop (the CLI, the Python API, a study cell, a Ray worker, a
    sweep) compiles the same one and trains the same numbers; the host loop's update and a distillation
    with a ``moore`` student or teacher take it too.  Evaluations (forward passes only) keep XLA's defaults.
    The option is XLA:CPU's; on a GPU it has not been tried (XLA's debug options are one message for every
    backend, so it should be accepted and unused).  It is an *experimental* XLA option: a jaxlib that renames
    it fails every ``moore`` compile, which tests/test_experts.py catches.
    """
    return dict(MOORE_COMPILER_OPTIONS) if any(a.arch.orthogonal for a in agents) else None


def make_trainer(agent: Agent, devices: int = 0) -> Trainer:
    """Compile-once functions over all seeds: ``init`` and ``run_chunk(states, start_iter)``.

    One seed's chunk is the algorithm (:func:`_one_seed_chunk`), its
    hyperparameters passed as traced values like a sweep member's;
    :func:`mtdqn.devices.over_seeds` lays it out over the seeds and local
    devices (``devices``, 0: as many as the seeds can use).
    """
    init, run_chunk, n_devices = over_seeds(lambda k: init_state(agent, k), _one_seed_chunk(agent),
                                            len(agent.seeds), devices, chunk_compiler_options(agent))
    return Trainer(agent, init, run_chunk, stack_hypers([agent.hypers] * len(agent.seeds)), n_devices)


def make_population_trainer(agent: Agent, member_hypers: Sequence[Hypers], devices: int = 0) -> Trainer:
    """One compiled program for a sweep: every member (``member_hypers``) with the agent's seeds.

    ``devices`` is a member's run alone's choice; the layout
    (:func:`mtdqn.devices.population_layout`) keeps its blocks, so a member's
    numbers are its run alone's bit for bit.  ``init`` takes
    :func:`population_keys`; state and metrics hold every entry of the
    population axis, dummies included (``population.member_entries``).
    """
    layout = population_layout(len(member_hypers), len(agent.seeds), devices)
    init, run_chunk = over_members(lambda k: init_state(agent, k), _one_seed_chunk(agent), layout,
                                   chunk_compiler_options(agent))
    entry_member = np.minimum(np.arange(layout.size) // layout.per_member, layout.members - 1)  # dummies: any
    hypers = stack_hypers([member_hypers[m] for m in entry_member])
    return Trainer(agent, init, run_chunk, hypers, layout.devices, layout)


def program_agent(agents: Sequence[Agent]) -> Agent:
    """The agent whose program trains a sweep's members (their agents): they differ only in traced values
    (:mod:`mtdqn.sweepspec`), and agree on what the program decides from the config beside them: whether
    the loss has dropout (:func:`mtdqn.train.step.has_dropout`) and whether the task weights are traced
    (:func:`mtdqn.train.step.loss_weights`); :func:`mtdqn.sweepspec.member_configs` makes sure."""
    if len({a.cfg.task_weights is None for a in agents}) > 1:
        raise ValueError("a sweep's members must all set --task-weights or all leave them out")
    if len({has_dropout(a) for a in agents}) > 1:
        raise ValueError("a sweep's members must all have dropout or none")
    return agents[0]


def population_keys(seeds: list[int], layout: Population) -> jax.Array:
    """Root keys of every population entry: each member its seeds' keys, the dummies keys of their own."""
    dummies = jax.random.split(jax.random.PRNGKey(2**31 - 1), layout.size)
    member = jnp.concatenate([seed_keys(seeds), dummies[: layout.per_member - len(seeds)]])
    keys = jnp.concatenate([member] * layout.members)
    return jnp.concatenate([keys, dummies[: layout.size - len(keys)]])
