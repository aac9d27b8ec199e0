"""Ctrl-C that stops a command, once, cleanly.

Python turns SIGINT into a ``KeyboardInterrupt`` raised in whatever Python
code the main thread runs next.  Two places there swallow it or cut work in
half:

- **a gc callback or a ``__del__``** (JAX registers one that runs on every
  collection, and tracing and compiling collect often): an exception there
  cannot propagate, so Python prints "Exception ignored in ..." and the
  command runs on as if Ctrl-C had never been pressed.
  :func:`redeliver_swallowed_interrupts` delivers such an interrupt again;
- **a checkpoint being written**: orbax writes on its own threads, and an
  interrupt while the main thread waits for them leaves them running into the
  interpreter's shutdown (a traceback, "cannot schedule new futures after
  shutdown", or an abort).  :func:`interrupts_deferred` holds the interrupt
  until the save has finished.

Either way the files stay whole (a checkpoint is switched to only once it is
complete); what these fix is a command that ignores Ctrl-C or ends in a
traceback.  How a command's process ends once interrupted (without the
interpreter's shutdown, which aborts under a compile XLA is still running) is
the CLI's: ``mtdqn.cli.entry._exit_interrupted``.
"""

from __future__ import annotations

import _thread
import signal
import sys
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator

__all__ = ["redeliver_swallowed_interrupts", "interrupts_deferred"]

REDELIVERY_PAUSE_S = 0.05


def redeliver_swallowed_interrupts() -> None:
    """From now on, a ``KeyboardInterrupt`` that Python had to ignore (raised in a gc callback, a ``__del__`` or a
    weakref callback) is raised again in the main thread, at its next Python instruction outside such a callback;
    every other unraisable exception goes to the hook that was installed.  For a command's process (the CLI):
    a library should not replace a process-wide hook."""
    previous = sys.unraisablehook
    if getattr(previous, "_redelivers_interrupts", False):
        return

    def hook(unraisable: Any) -> None:
        if unraisable.exc_type is not None and issubclass(unraisable.exc_type, KeyboardInterrupt):
            _interrupt_main_soon()
        else:
            previous(unraisable)

    hook._redelivers_interrupts = True  # type: ignore[attr-defined]
    sys.unraisablehook = hook


def _interrupt_main_soon() -> None:
    """Run SIGINT's handler in the main thread again once this hook has returned: from another thread, after a
    pause (raised in the hook itself, the interrupt would be swallowed again, this time for good)."""
    main = threading.main_thread().ident

    def deliver() -> None:
        time.sleep(REDELIVERY_PAUSE_S)
        if hasattr(signal, "pthread_kill"):  # a real signal: it also wakes a main thread blocked in a system call
            signal.pthread_kill(main, signal.SIGINT)
        else:
            _thread.interrupt_main()

    while True:
        try:
            threading.Thread(target=deliver, name="mtdqn-interrupt", daemon=True).start()
            return
        except KeyboardInterrupt:  # delivered before the hook returned (a loaded machine): deliver it again
            continue


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold a Ctrl-C pressed while the block runs and deliver it when the block has ended; a second one is not
    held (a save stuck on a network disk can still be stopped).  Only the main thread receives signals, so
    elsewhere (and where SIGINT is ignored or left to the OS) the block runs as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    if not callable(previous):  # SIG_IGN (a background job), SIG_DFL, or a handler not set from Python
        yield
        return
    caught: list[int] = []

    def hold(signum: int, frame: Any) -> None:
        caught.append(signum)
        signal.signal(signal.SIGINT, previous)

    signal.signal(signal.SIGINT, hold)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:  # (an exception leaving the block is not replaced by the interrupt)
        signal.raise_signal(signal.SIGINT)
