"""Ctrl-C stops a command once and cleanly (mtdqn/interrupts.py, the CLI's exit).

Before: an interrupt raised in JAX's gc callback (tracing and compiling collect
often) was printed as "Exception ignored" and the command ran on to its end;
one pressed while XLA compiled on its own threads ended, after "error:
interrupted", in an abort ("pure virtual method called") or a segfault as
the interpreter's exit tore JAX's client down under them; one pressed during a
checkpoint's save left orbax's threads running into the exit (a traceback).
"""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import orbax.checkpoint as ocp
import pytest
from helpers import TINY

from mtdqn.checkpoint import save_checkpoint, verify_checkpoint
from mtdqn import interrupts
from mtdqn.interrupts import interrupts_deferred, redeliver_swallowed_interrupts

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def sigint_raises(monkeypatch):
    """SIGINT handled as in a command's process (a test worker may ignore it), the unraisable hook restored."""
    monkeypatch.setattr(sys, "unraisablehook", sys.unraisablehook)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_an_interrupt_during_a_deferred_block_arrives_when_it_ends(sigint_raises):
    finished = []
    with pytest.raises(KeyboardInterrupt):
        with interrupts_deferred():
            signal.raise_signal(signal.SIGINT)
            time.sleep(0.01)  # a handler that raised would stop the block here
            finished.append(True)
    assert finished == [True]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with interrupts_deferred():  # nothing pressed: nothing raised after
        pass
    with pytest.raises(KeyboardInterrupt):  # a second Ctrl-C is not held: it stops a save that does not end
        with interrupts_deferred():
            signal.raise_signal(signal.SIGINT)
            signal.raise_signal(signal.SIGINT)
            time.sleep(0.01)
            finished.append(True)
    assert finished == [True]
    with pytest.raises(OSError):  # an error leaving the block is not replaced by a Ctrl-C held meanwhile
        with interrupts_deferred():
            signal.raise_signal(signal.SIGINT)
            raise OSError("disk full")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_an_interrupt_swallowed_by_a_gc_callback_is_delivered_again(sigint_raises, monkeypatch):
    def raising_callback(phase: str, info: dict) -> None:
        if phase == "start":
            gc.callbacks.remove(raising_callback)
            raise KeyboardInterrupt  # what Python's SIGINT handler does when the signal lands in JAX's callback

    redeliver_swallowed_interrupts()
    redeliver_swallowed_interrupts()  # installed once, however often called
    # The worker's garbage collected first (tests/conftest.py makes collections rare): a collection of a long-lived
    # worker's heap ran finalizers for long enough that the interrupt redelivered 50 ms later landed in one that
    # swallows every exception, once in a full suite (2026-12-07: the sleep ran its 30 s)
    gc.collect()
    scheduled = []  # each redelivery the hook schedules (a failure says whether it was reached, and how often)
    schedule = interrupts._interrupt_main_soon
    monkeypatch.setattr(interrupts, "_interrupt_main_soon", lambda: (scheduled.append(1), schedule())[1])
    gc.callbacks.append(raising_callback)
    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        gc.collect()  # Python ignores the callback's exception: without the hook, the sleep runs its 30 s
        time.sleep(30)
    assert time.monotonic() - start < 10, f"redeliveries scheduled: {len(scheduled)}"
    assert raising_callback not in gc.callbacks


def test_ctrl_c_during_a_checkpoint_save_stops_the_command_once_it_is_written(tmp_path, monkeypatch, sigint_raises):
    save = ocp.StandardCheckpointer.save

    def pressed_while_saving(self, *args, **kwargs):  # pressed as orbax starts its threads
        signal.raise_signal(signal.SIGINT)
        return save(self, *args, **kwargs)

    monkeypatch.setattr(ocp.StandardCheckpointer, "save", pressed_while_saving)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path, TINY, {"w": np.arange(3.0)}, chunk=1)
    assert verify_checkpoint(tmp_path, TINY)["chunk"] == 1  # written whole, the record switched to it


# A command's process interrupted while XLA compiles on its own threads (as Ctrl-C during a run's compile leaves
# it: JAX stops waiting, the compile goes on), then pressed again while its exit handlers run: `mtdqn tasks` with
# its handler replaced by one that starts a compile and is interrupted, the CLI's entry point as it runs.
INTERRUPTED_WHILE_COMPILING = """
import atexit, os, signal, sys, threading, time
import jax, jax.numpy as jnp
from mtdqn.cli import entry

def big(x):
    for i in range(400):
        x = jnp.sin(x) @ x + i
    return x

def compiling(_):
    threading.Thread(target=lambda: jax.jit(big).lower(jnp.ones((64, 64))).compile(), daemon=True).start()
    time.sleep(1.0)
    raise KeyboardInterrupt

def slow_exit_handler():  # a local Ray cluster's shutdown, say, and Ctrl-C pressed again
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(60)

atexit.register(slow_exit_handler)
entry.COMMANDS["tasks"] = (entry.COMMANDS["tasks"][0], compiling)
sys.argv = ["mtdqn", "tasks"]
entry.main()
"""


@pytest.mark.slow
def test_an_interrupted_command_dies_by_sigint_with_one_line_while_xla_compiles():
    # before: "error: interrupted", then the interpreter's exit tore JAX's client down under the compile (abort),
    # a second Ctrl-C in an exit handler printed its traceback, and the exit status (130, not a death by SIGINT)
    # let a shell loop of commands go on
    # compiled as users compile, and not read from the suite's cache: still compiling when interrupted
    env = {k: v for k, v in os.environ.items() if k not in ("JAX_COMPILATION_CACHE_DIR", "XLA_FLAGS",
                                                          "JAX_DISABLE_MOST_OPTIMIZATIONS")}
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-c", INTERRUPTED_WHILE_COMPILING], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env={**env, "JAX_PLATFORMS": "cpu"})
    assert (done.returncode, done.stderr) == (-signal.SIGINT, "error: interrupted\n")
    assert time.monotonic() - start < 50  # the second Ctrl-C ended the exit handler's 60 s


def test_an_interrupted_command_says_how_to_go_on(tmp_path, monkeypatch):
    """A study's Ctrl-C said 'error: interrupted' alone, and its rerun 'running' of the cell it resumed."""
    from mtdqn.cli.commands import Study, Train, Tune
    from mtdqn.cli.entry import _interrupted_line

    assert _interrupted_line(Study("quick")) == ("error: interrupted; the same command goes on where it stopped "
                                                 "(finished cells are kept)")
    assert _interrupted_line(Tune("classic-shared")).endswith("(finished trials are kept)")
    assert _interrupted_line(Train(out=tmp_path)) == "error: interrupted"  # no checkpoint yet: nothing to resume
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "latest.json").write_text("{}")
    os.utime(tmp_path / "checkpoints" / "latest.json", (1.0, 1.0))  # an older run's (--force, not yet replaced)
    assert _interrupted_line(Train(out=tmp_path)) == "error: interrupted"
    (tmp_path / "checkpoints" / "latest.json").write_text("{}")  # this command's
    assert _interrupted_line(Train(out=tmp_path)) == (f"error: interrupted; `mtdqn train --resume {tmp_path}` goes "
                                                      "on from its latest checkpoint")
    from mtdqn.api import default_train_out

    monkeypatch.chdir(tmp_path)  # no --out: the default folder, as the run's
    default = default_train_out(Train().cfg)
    (default / "checkpoints").mkdir(parents=True)
    (default / "checkpoints" / "latest.json").write_text("{}")
    assert _interrupted_line(Train()).startswith(f"error: interrupted; `mtdqn train --resume {default}` goes on")
    assert _interrupted_line(None) == "error: interrupted"  # before the command was read
    from mtdqn.cli.commands import Finetune, StartedRun

    started = Finetune(Path("src"), run=StartedRun(out=tmp_path))  # a fine-tuning is an ordinary run once started
    assert _interrupted_line(started).startswith(f"error: interrupted; `mtdqn train --resume {tmp_path}` goes on")
