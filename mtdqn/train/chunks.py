"""The chunk protocol: what the run driver needs of a training loop, and the two loops that provide it.

A run is trained one logging window (chunk) at a time, so the driver can
check, write and checkpoint between chunks.  The compiled loop
(:class:`CompiledChunks`) and the Gymnasium host loop
(:class:`mtdqn.train.host_loop.HostChunk`) both are a :class:`ChunkRunner`;
:func:`make_runner` picks the one an agent's tasks need.
"""

from __future__ import annotations

import functools
import time
from typing import Any, Protocol

import jax
import jax.numpy as jnp

from mtdqn.devices import seed_devices
from mtdqn.train.agent import Agent
from mtdqn.train.loop import Trainer, make_trainer

__all__ = ["ChunkRunner", "CompiledChunks", "make_runner"]


class ChunkRunner(Protocol):
    """What the driver needs of a training loop."""

    resumable: bool  # can a checkpoint restore its whole state (env states included)?

    def start(self, keys: jax.Array) -> tuple[Any, float]:
        """A fresh state for ``keys`` and the seconds spent compiling."""

    def __call__(self, state: Any, start_iter: int) -> tuple[Any, dict[str, Any]]:
        """One logging window of iterations from ``start_iter``: (state, per-seed chunk metrics)."""

    def close(self) -> None:
        """Release what the loop holds outside JAX (host environments)."""


class CompiledChunks:
    """The compiled loop as a :class:`ChunkRunner`: ``run_chunk`` compiled once, on a fresh state."""

    resumable = True

    def __init__(self, trainer: Trainer):
        self.trainer = trainer
        self.compiled: Any = None

    def start(self, keys: jax.Array) -> tuple[Any, float]:
        """A fresh state and the compiled chunk: JAX keeps what ``trainer.chunk`` lowered and compiled, so a
        later run of the same trainer in this process (:func:`make_runner`) takes ~0 seconds here."""
        state = self.trainer.init(keys)
        t0 = time.perf_counter()
        # Lowered on the fresh state, so a resumed run runs the very same program.
        self.compiled = self.trainer.chunk.lower(state, self.trainer.hypers, jnp.int32(0)).compile()
        return state, time.perf_counter() - t0

    def __call__(self, state: Any, start_iter: int) -> tuple[Any, dict[str, Any]]:
        return self.compiled(state, self.trainer.hypers, jnp.int32(start_iter))

    def close(self) -> None:
        pass


def make_runner(agent: Agent, devices: int) -> tuple[Trainer, ChunkRunner]:
    """The trainer (pure ``init``, for checkpoint templates) and the chunk runner of the agent's loop.

    The compiled loop's pair is built once per agent and layout in a process
    (:func:`mtdqn.train.agent.make_agent` gives one agent per config; the 4
    used last are kept), so running a config again reuses its traced and
    compiled program and its ``compile_s`` is ~0; the host loop holds live
    environments and is built anew each time.
    """
    if agent.task_set.backend == "gymnasium":  # host envs cannot be stepped by the compiled loop
        from mtdqn.train.host_loop import make_host_trainer  # imported late: gymnasium and ale-py are slow

        return make_host_trainer(agent)
    return _compiled_runner(agent, seed_devices(len(agent.seeds), devices))  # keyed by the layout itself


@functools.lru_cache(maxsize=4)
def _compiled_runner(agent: Agent, devices: int) -> tuple[Trainer, CompiledChunks]:
    trainer = make_trainer(agent, devices)
    return trainer, CompiledChunks(trainer)
