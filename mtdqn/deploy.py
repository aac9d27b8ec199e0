"""Acting from a trained run: only the Q-network is loaded, no optimizer, replay, envs or compiled loop.

    agent = mtdqn.load_agent("runs/my-run")
    actions = agent.act("CartPole-v1", observations)   # (batch,) greedy actions

The checkpoint's files are verified first (sizes and checksums, as resume
does), then only the ``params`` subtree of the saved state is read (orbax
partial restore): a run with a 100k-transition replay loads in the memory of
its network.  Observations are a task's own (unpadded) shape; the agent pads
them as training did.

An observation the network cannot act on is refused with one line naming its
rows: NaN or inf anywhere, or a value outside the bounds of the task's
observation space where they are finite (CarOnHill's position and speed,
CartPole's cart position and pole angle, MinAtar's 0/1 grids, ...).
``clip=True`` (``mtdqn act --clip True``) clips out-of-bounds values into the space
instead; non-finite values are refused either way.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from mtdqn.checkpoint import check_shapes, quiet_abandoned_reads, read_latest
from mtdqn.config import TrainConfig
from mtdqn.errors import ConfigError, check_path
from mtdqn.networks import Architecture, make_architecture, one_task_q_values, param_shapes, split_shared
from mtdqn.rundir import RunDir
from mtdqn.tasknames import index_of_task
from mtdqn.tasks import TaskSet, make_task_set, pad_obs
from mtdqn.tasks.registry import Task, observation_bounds
from mtdqn.value_norm import popart_init, unnormalize

__all__ = ["LoadedAgent", "load_agent", "check_observations"]


@dataclass(frozen=True, eq=False)
class LoadedAgent:
    """A trained multi-task Q-network, one set of parameters per seed of its run."""

    run_dir: Path
    task_set: TaskSet
    arch: Architecture
    params: Any  # leaves with a leading seed axis
    seeds: tuple[int, ...]
    value_norm: Any = None  # PopArt statistics per seed (runs with --value-norm popart), else None
    iteration: int | None = None  # the checkpoint's (a run still training has moved on since: `play`'s note says it)

    @property
    def tasks(self) -> tuple[str, ...]:
        return self.task_set.names

    def __repr__(self) -> str:  # the dataclass's would print every parameter array
        return f"LoadedAgent({str(self.run_dir)!r}, tasks={list(self.tasks)}, seeds={list(self.seeds)})"

    def q_values(self, task: str, obs: Any, seed: int | None = None, clip: bool = False, *,
                 check_bounds: bool = True) -> np.ndarray:
        """Q-values (batch, actions of ``task``) for observations (batch, *obs_shape) or one (*obs_shape).

        Non-finite observations are refused, and so are values outside the
        observation space's finite bounds unless ``clip`` clips them into it
        (:func:`check_observations`).  ``check_bounds=False`` takes them as
        they are, as training did: observations the task's own environment
        gave (`mtdqn play`), whose space's bounds it may not keep.
        """
        i = self._task_index(task)
        obs, single = self._batch(i, obs, clip, check_bounds)
        s = self._seed_index(seed)
        q = _task_q(self.arch, jax.tree.map(lambda x: x[s], self.params), jnp.asarray(obs), i)
        if self.value_norm is not None:  # PopArt heads are normalized: Q in reward units, as training reports it
            stats = jax.tree.map(lambda x: x[s, i:i + 1], self.value_norm)
            q = unnormalize(stats, q[None])[0]
        q = np.asarray(q)[:, : self.task_set.tasks[i].num_actions]
        return q[0] if single else q

    def act(self, task: str, obs: Any, seed: int | None = None, clip: bool = False, *,
            check_bounds: bool = True) -> np.ndarray:
        """Greedy actions (batch,) of the seed's policy (default: the run's first seed) for ``task``; ``clip``
        and ``check_bounds`` as for :meth:`q_values`."""
        return np.argmax(self.q_values(task, obs, seed, clip, check_bounds=check_bounds), axis=-1)

    def of_seed(self, seed: int) -> LoadedAgent:
        """This agent with only ``seed``'s network (one line if the run has no such seed): what acts by default
        (:meth:`act` without ``seed``) is then that seed's policy."""
        s = self._seed_index(seed)
        norm = None if self.value_norm is None else jax.tree.map(lambda x: x[s:s + 1], self.value_norm)
        return dataclasses.replace(self, params=jax.tree.map(lambda x: x[s:s + 1], self.params), seeds=(seed,),
                                   value_norm=norm)

    def _task_index(self, task: str) -> int:
        return index_of_task(self.task_set.names, task)

    def _seed_index(self, seed: int | None) -> int:
        if seed is None:
            return 0
        if isinstance(seed, bool) or seed not in self.seeds:  # True == 1: acted with seed 1
            raise ConfigError(f"seed {seed!r} is not one of this run's seeds: {', '.join(map(str, self.seeds))}")
        return self.seeds.index(seed)

    def _batch(self, i: int, obs: Any, clip: bool, check_bounds: bool = True) -> tuple[np.ndarray, bool]:
        """Observations as (batch, *padded shape), checked (or clipped), and whether a single one was given."""
        task = self.task_set.tasks[i]
        obs = np.asarray(obs)
        given = obs.shape  # as the caller gave it, not as batched
        single = obs.shape == task.obs_shape
        if single:
            obs = obs[None]
        real = obs.dtype.kind in "biuf"  # bool, integers, floats: not complex, datetimes, text or objects
        if obs.ndim != len(task.obs_shape) + 1 or obs.shape[1:] != task.obs_shape or not real or not len(obs):
            shape = ", ".join(map(str, task.obs_shape))
            raise ConfigError(f"observations for {task.spec} must have shape (batch, {shape}) with batch >= 1, "
                              f"or {task.obs_shape}, of real numbers; got {given} of {obs.dtype}")
        obs = check_observations(task, obs, clip, check_bounds)
        return np.asarray(pad_obs(jnp.asarray(obs), self.task_set)), single


def _rows(bad: np.ndarray) -> str:
    """'row 3' or 'rows 0, 2, 5' (the first ten, then how many in all) for a (batch,) bool mask."""
    rows = np.flatnonzero(bad).tolist()
    shown = ", ".join(map(str, rows[:10])) + (f", ... ({len(rows)} of {len(bad)} rows)" if len(rows) > 10 else "")
    return f"row{'s' if len(rows) > 1 else ''} {shown}"


def check_observations(task: Task, obs: np.ndarray, clip: bool = False, check_bounds: bool = True) -> np.ndarray:
    """``obs`` (batch, *task.obs_shape) if every value is finite and inside the observation space's finite
    bounds; with ``clip``, out-of-bounds values clipped into them; without ``check_bounds`` (and ``clip``),
    taken as they are.  Anything else: a one-line ConfigError naming the rows."""
    values = np.asarray(obs, np.float64).reshape(len(obs), -1)
    not_finite = ~np.isfinite(values).all(-1)
    if not_finite.any():
        raise ConfigError(f"observations for {task.spec} hold NaN or inf in {_rows(not_finite)}; "
                          "a network cannot act on them")
    fraction = values != np.round(values) if task.kind == "image" else np.zeros((0, 0), bool)
    if fraction.any():  # stored as uint8: 0.6 of a MinAtar grid would reach the network as 0
        fractional, (row, dim) = fraction.any(-1), np.argwhere(fraction)[0]
        raise ConfigError(f"observations for {task.spec} are images, whole numbers (the network reads them as "
                          f"bytes), but {_rows(fractional)} hold fractions (row {row}: {values[row, dim]:g}); "
                          "give the environment's own values (frames scaled to [0, 1]: times 255)")
    if not (check_bounds or clip):
        return obs
    low, high = (b.reshape(-1) for b in observation_bounds(task))
    outside = (values < low) | (values > high)
    if not outside.any():
        return obs
    if clip:
        return np.clip(values, low, high).reshape(obs.shape)
    row, dim = np.argwhere(outside)[0]
    where = np.unravel_index(dim, task.obs_shape)
    index = where[0] if len(where) == 1 else tuple(map(int, where))
    raise ConfigError(
        f"observations for {task.spec} lie outside its observation space in {_rows(outside.any(-1))} "
        f"(row {row}, index {index}: {values[row, dim]:g} not in [{low[dim]:g}, {high[dim]:g}]); "
        "clip them into it with --clip True (clip=True)")


@partial(jax.jit, static_argnums=(0, 3))
def _task_q(arch: Architecture, params: Any, obs: jax.Array, i: int) -> jax.Array:
    """Q-values (batch, max actions) of task ``i`` alone: its slice of the per-task parts, as training takes it."""
    shared, per_task = split_shared(arch, params)
    return one_task_q_values(arch, shared, jax.tree.map(lambda x: x[i], per_task), obs, jnp.asarray(i))


def load_agent(run_dir: Path | str) -> LoadedAgent:
    """Load a run's Q-network for acting; a missing, damaged or foreign checkpoint is a one-line ConfigError.

    A run still training may replace its checkpoint while it is read: the new one is read instead
    (:func:`mtdqn.checkpoint.read_latest`)."""
    check_path("run_dir", run_dir)  # load_agent(5) met pathlib's TypeError
    run_dir = Path(run_dir)
    cfg = RunDir(run_dir).runnable_config()  # a folder without a run, a task unknown here: one line
    RunDir(run_dir).require_checkpoint()  # one line, naming a population's member's checkpoint
    task_set = make_task_set(cfg.tasks)
    arch = make_architecture(task_set, cfg.network, cfg.finetune.lora_rank)
    seeds = tuple(cfg.seed + i for i in range(cfg.seeds))
    abstract = {"params": param_shapes(arch)}  # one seed's (traced once per architecture in a process)
    if cfg.value_norm == "popart":
        abstract["value_norm"] = jax.eval_shape(lambda: popart_init(len(task_set)))
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])  # acting needs one device, whatever trained it
    target = jax.tree.map(lambda x: jax.ShapeDtypeStruct((len(seeds), *x.shape), x.dtype, sharding=device), abstract)
    restored, iteration = read_latest(run_dir, cfg, lambda meta: (
        _restore_network(run_dir / "checkpoints" / meta["path"], target, cfg), meta["iteration"]))
    return LoadedAgent(run_dir, task_set, arch, restored["params"], seeds, restored.get("value_norm"), iteration)


def _restore_network(path: Path, target: Any, cfg: TrainConfig) -> Any:
    """The subtrees of ``target`` (its shapes, dtypes and device) from the checkpoint at ``path``, nothing else;
    ``cfg``: the run's, which names its tasks where their shapes no longer fit (:func:`check_shapes`)."""
    path = path.absolute()
    check_shapes(path, target, cfg)
    try:
        with ocp.PyTreeCheckpointer() as checkpointer:
            restore_args = ocp.checkpoint_utils.construct_restore_args(target)  # onto this one device
            return checkpointer.restore(path, args=ocp.args.PyTreeRestore(
                item=target, restore_args=restore_args, partial_restore=True))
    except Exception as exc:  # orbax raises many types for a damaged or mismatched tree
        quiet_abandoned_reads()  # the failed read's coroutines would each print a traceback as they end
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"checkpoint {path} holds no usable network: {first}") from None
