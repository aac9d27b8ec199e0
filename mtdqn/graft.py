"""Starting a run from a trained run's network: the source loaded and checked, its weights grafted.

Below :mod:`mtdqn.train.run`, which calls :func:`start_from_source` when a
new run's config carries a :class:`~mtdqn.config.FinetuneConfig`; the
commands that make such configs (`mtdqn finetune`, `mtdqn extend`) are in
:mod:`mtdqn.transfer`, above it.

The source run's checkpoint is verified and only its network is read
(:func:`mtdqn.load_agent`, orbax partial restore).  The new run's network
shape is the source's, its optimizer is partitioned by :mod:`mtdqn.finetune`,
and when it starts the pretrained weights are grafted onto its fresh state:

- the shared trunk layers (kernel and bias) of seed i come from the source's
  seed ``i mod n`` (its n seeds; a source fine-tuned with LoRA gives W + A B);
  LoRA factors start fresh (B = 0);
- with ``keep_heads``, every task the source trained keeps its adapter, head,
  mixing weights (a mixture of experts) and per-task trunk layers (the overlap of the padded shapes: a task's own
  inputs and actions, so its Q-function is the source's exactly); other
  tasks' start fresh.

Then the start is evaluated greedily (the same episodes as the final
evaluation) and written to start.json.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Callable

import jax
import numpy as np

from mtdqn.config import FinetuneConfig, NetworkConfig, TrainConfig, check_new_run, config_hash, hash_change
from mtdqn.deploy import LoadedAgent, load_agent
from mtdqn.errors import ConfigError, check_float32, count
from mtdqn.evaluate import EvalStream, eval_seed, evaluate_params
from mtdqn.finetune import count_trainable, parse_freeze, trunk_layers
from mtdqn.networks import lora_layers, make_architecture, param_shapes, shared_mask
from mtdqn.rundir import RunDir
from mtdqn.tasknames import find_task
from mtdqn.tasks import make_task_set
from mtdqn.train.agent import Agent

__all__ = ["Source", "load_source", "finetune_config", "start_from_source", "check_transfer", "graft"]


@dataclasses.dataclass(frozen=True)
class Source:
    """A trained run to start from: its directory, config and network (one set per seed)."""

    path: Path
    cfg: TrainConfig
    net: LoadedAgent


def load_source(run: Path | str) -> Source:
    """Read a run's config and verified network; a missing, damaged or foreign checkpoint is one line."""
    run = Path(run)
    run_dir = RunDir(run)
    run_dir.require_run("--from")  # a sweep or a study given for a run: the message names the runs it holds
    cfg = run_dir.config()  # its tasks checked by load_agent
    return Source(run, cfg, load_agent(run))


def finetune_config(base: TrainConfig, source: Path | str, source_cfg: TrainConfig, freeze: str = "none",
                    trunk_lr: float = 0.0, lora_rank: int = 0, keep_heads: bool = False) -> TrainConfig:
    """``base`` (tasks, budget, DQN options) with the network shape of the run ``source`` (made with
    ``source_cfg``; it need not exist yet: a study's pretraining cell) and the fine-tuning section."""
    if base.network != NetworkConfig():
        given = [f"--{k.replace('_', '-')}" for k, v in dataclasses.asdict(base.network).items()
                 if v != getattr(NetworkConfig(), k)]
        raise ConfigError(f"the network's shape comes from {source}; drop {', '.join(given)}")
    ft = FinetuneConfig(source=str(Path(source).absolute()), source_config_hash=config_hash(source_cfg),
                        freeze=freeze, trunk_lr=trunk_lr, lora_rank=lora_rank, keep_heads=keep_heads)
    return dataclasses.replace(base, network=source_cfg.network, finetune=ft)


def start_from_source(cfg: TrainConfig, episodes: int) -> Callable[[Agent, Any], tuple[Any, dict[str, Any]]]:
    """How :func:`mtdqn.train.run.train` starts a new fine-tuned run: its source loaded and checked (it must
    still be the run the config was made from), then grafted onto the fresh state."""
    source = load_source(cfg.finetune.source)
    if config_hash(source.cfg) != cfg.finetune.source_config_hash:
        why = hash_change(source.cfg)  # the same run, its hash moved by this code: said, not "another run"
        raise ConfigError(f"{source.path} now holds a run with config hash {config_hash(source.cfg)}, not the "
                          f"{cfg.finetune.source_config_hash} this fine-tuning was set up from"
                          + (f" (its hash moved with {why})" if why else ""))
    check_transfer(cfg, source)
    return lambda agent, state: graft(agent, source, episodes, state)


def _kinds(names: tuple[str, ...], kind: str) -> str:
    return f"{kind} tasks ({', '.join(names)})"


def check_transfer(cfg: TrainConfig, source: Source) -> None:
    """Everything that makes ``source``'s trunk unusable for ``cfg``, as one line, before anything is written."""
    check_new_run(cfg)
    ft = cfg.finetune
    new_tasks, src_tasks = make_task_set(cfg.tasks), source.net.task_set
    if new_tasks.kind != src_tasks.kind:
        raise ConfigError(f"a trunk trained on {_kinds(src_tasks.names, src_tasks.kind)} cannot take "
                          f"{_kinds(new_tasks.names, new_tasks.kind)}: vector trunks are MLPs, image trunks "
                          "convolutions")
    src_arch = source.net.arch
    if src_arch.conditioned:
        raise ConfigError(f"{source.path} is a conditioned network (one-hot task ids of its "
                          f"{src_arch.num_tasks} tasks): its trunk cannot take other tasks")
    if not trunk_layers(src_arch):
        raise ConfigError(f"{source.path} shares no trunk layer (--sharing {src_arch.sharing}): nothing to transfer")
    freeze = parse_freeze(ft.freeze)
    n_trunk = len(trunk_layers(src_arch))
    if freeze.kind == "bottom" and freeze.value > n_trunk:
        raise ConfigError(f"--freeze bottom:{freeze.value}: the pretrained trunk has {count(n_trunk, 'layer')}")
    if freeze.kind == "trunk-until" and freeze.value >= cfg.steps:
        raise ConfigError(f"--freeze trunk-until:{freeze.value} is not before the end of --steps {cfg.steps}; "
                          "use --freeze trunk")
    if not (math.isfinite(ft.trunk_lr) and ft.trunk_lr >= 0):
        raise ConfigError(f"--trunk-lr must be a finite number >= 0 (0: --lr), got {ft.trunk_lr}")
    check_float32("--trunk-lr", ft.trunk_lr)
    if ft.trunk_lr and (freeze.kind == "trunk" or (freeze.kind == "bottom" and freeze.value == n_trunk)):
        raise ConfigError(f"--trunk-lr {ft.trunk_lr:g} sets the rate of trunk layers that train, and --freeze "
                          f"{ft.freeze} freezes the whole trunk: drop one of them")
    if ft.trunk_lr and ft.lora_rank:
        raise ConfigError(f"--trunk-lr {ft.trunk_lr:g} sets the rate of trunk layers that train, and --lora freezes "
                          "the trunk (its low-rank factors train at --lr): drop --trunk-lr")
    if ft.keep_heads and all(find_task(src_tasks.names, t) is None for t in new_tasks.names):  # kept none
        raise ConfigError(f"--keep-heads True keeps the heads of the tasks {source.path} trained "
                          f"({', '.join(src_tasks.names)}), and none of {', '.join(new_tasks.names)} is one of them: "
                          "drop --keep-heads")
    if ft.keep_heads and source.cfg.value_norm == "popart":
        raise ConfigError(f"{source.path} normalizes its heads (PopArt): keeping them without their statistics "
                          "would change their Q-values; `mtdqn finetune` without --keep-heads starts fresh heads "
                          "(`mtdqn extend` keeps them, so it cannot start from this run)")
    arch = make_architecture(new_tasks, cfg.network)
    new = param_shapes(arch)
    for name in trunk_layers(src_arch):
        for leaf, value in new["torso"][name].items():
            have = source.net.params["torso"][name][leaf].shape[1:]  # without the source's seed axis
            if have != value.shape and new_tasks.kind == "image" and new_tasks.obs_shape != src_tasks.obs_shape:
                raise ConfigError(f"{source.path}'s trunk reads images of shape {src_tasks.obs_shape} "
                                  f"({', '.join(src_tasks.names)}); {', '.join(new_tasks.names)} give "
                                  f"{new_tasks.obs_shape}: fine-tune on tasks of the source's observation shape")
            if have != value.shape:
                raise ConfigError(f"{source.path}'s trunk layer {name} {leaf} is {have}, these tasks need "
                                  f"{value.shape} ({', '.join(new_tasks.names)})")
    _check_lora(ft, arch, new)


def _check_lora(ft: FinetuneConfig, arch: Any, abstract: Any) -> None:
    if ft.lora_rank == 0:
        return
    if arch.experts:
        raise ConfigError(f"--lora is not supported on a mixture of experts (--sharing {arch.sharing}): fine-tune "
                          "its experts with --freeze and --trunk-lr instead")
    if parse_freeze(ft.freeze).kind != "none":
        raise ConfigError(f"--lora trains low-rank updates of a frozen trunk; drop --freeze {ft.freeze}")
    layers = [name for name, lora in zip(shared_mask(arch)["torso"], lora_layers(dataclasses.replace(
        arch, lora_rank=ft.lora_rank))) if lora]
    if not layers:
        raise ConfigError("--lora: the pretrained trunk has no dense layer")
    for name in layers:
        shape = abstract["torso"][name]["kernel"].shape
        if ft.lora_rank > min(shape):
            raise ConfigError(f"--lora {ft.lora_rank} is larger than trunk layer {name} ({shape[0]} -> {shape[1]}): "
                              f"at most {min(shape)}")


def _per_task_parts(arch: Any, params: dict) -> list[dict]:
    """The per-task subtrees (leading task axis after the seed axis): adapters, heads, per-task trunk layers
    (and a mixture of experts' mixing weights)."""
    mask = shared_mask(arch)
    parts = [params[p] for p in mask if p != "torso" and not mask[p]]
    return parts + [params["torso"][n] for n, s in mask["torso"].items() if not s]


def _copy_task(dst: np.ndarray, src: np.ndarray, j: int, k: int, seeds: np.ndarray) -> None:
    """dst[:, j] <- src[seeds, k] over the overlap of their padded shapes (a task's own inputs and actions)."""
    region = tuple(slice(0, min(a, b)) for a, b in zip(dst.shape[2:], src.shape[2:]))
    dst[(slice(None), j, *region)] = src[seeds][(slice(None), k, *region)]


def graft(agent: Agent, source: Source, episodes: int, state: Any) -> tuple[Any, dict[str, Any]]:
    """The fresh ``state`` with the source's trunk (and kept heads) in params and target params, and the
    record of this start: what came from where, trainable parameters and the greedy returns it starts with."""
    ft, arch = agent.cfg.finetune, agent.arch
    src = jax.tree.map(np.asarray, source.net.params)
    seeds = np.arange(len(agent.seeds)) % len(source.net.seeds)
    params = jax.tree.map(np.array, state.params)  # writable host copies, (seeds, ...) each
    for name in trunk_layers(arch):
        for leaf, value in _folded(src["torso"][name]).items():  # kernel, bias: new LoRA factors stay fresh
            params["torso"][name][leaf] = value[seeds]
    found = {t: find_task(source.net.tasks, t) for t in agent.task_set.names} if ft.keep_heads else {}
    kept = [t for t, k in found.items() if k is not None]  # however either run spells it
    for task in kept:
        j, k = agent.task_set.names.index(task), found[task]
        for dst_part, src_part in zip(_per_task_parts(arch, params), _per_task_parts(source.net.arch, src)):
            for leaf in jax.tree_util.tree_leaves_with_path(dst_part):
                path = leaf[0]
                _copy_task(_at(dst_part, path), _at(src_part, path), j, k, seeds)
    put = lambda new, old: jax.device_put(new, old.sharding)  # noqa: E731  (keep the seed layout)
    state = state.replace(params=jax.tree.map(put, params, state.params),
                          target_params=jax.tree.map(put, params, state.target_params))
    returns = evaluate_params(agent, state.params, eval_seed(agent.cfg.seed, EvalStream.FINAL_GREEDY), episodes)
    names = agent.task_set.names
    trainable, total = count_trainable(ft, arch, jax.tree.map(lambda x: x[0], params))
    record = {
        "source": ft.source, "source_config_hash": ft.source_config_hash, "source_tasks": list(source.net.tasks),
        "kept_tasks": kept, "seed_map": {str(s): source.net.seeds[i] for s, i in zip(agent.seeds, seeds)},
        "freeze": ft.freeze, "trunk_lr": ft.trunk_lr, "lora_rank": ft.lora_rank,
        "trainable_params": trainable, "params_total": total,
        "start_eval": {n: returns.total[:, i].mean(-1).tolist() for i, n in enumerate(names)},
        "start_eval_discounted": {n: returns.discounted[:, i].mean(-1).tolist() for i, n in enumerate(names)},
        "eval_episodes": episodes,
        "source_checkpoint": RunDir(source.path).checkpoint_id(),  # which weights: a study redoes a cell if they change
        # env steps per task the source's checkpoint had trained (a stopped or still training source's is not its
        # end: the note after the command names it); a keep-best or early-stopped source's checkpoint holds each
        # seed's best evaluation's weights, whose steps its summary's keep_best / early_stop best_step gives
        "source_step": None if source.net.iteration is None else source.net.iteration * source.cfg.num_envs,
    }
    return state, record


def _folded(layer: dict) -> dict:
    """A source trunk layer as kernel and bias; a source fine-tuned with LoRA gives its W + A B."""
    if "lora_a" not in layer:
        return layer
    return {"kernel": layer["kernel"] + np.matmul(layer["lora_a"], layer["lora_b"]), "bias": layer["bias"]}


def _at(tree: dict, path: tuple) -> np.ndarray:
    for key in path:
        tree = tree[key.key]
    return tree
