"""The `mtdqn` entry point: parse with tyro, set up JAX for the command, dispatch, and turn every user error
into one line on stderr with its exit status."""

from __future__ import annotations

import atexit
import difflib
import errno
import os
import re
import select
import shlex
import signal
import sys
import time
import warnings
from pathlib import Path
from typing import Any, NoReturn

import tyro

from mtdqn.cli.commands import Extend, Finetune, Study, Train, Tune, command_flags, given_options
from mtdqn.cli.handlers import COMMANDS
from mtdqn.errors import (CellsFailed, ConfigError, FewUpdatesWarning, InsufficientResources, MtdqnWarning,
                          SearchFailed, TrainingDiverged)
from mtdqn.flatoptions import closest_option, did_you_mean
from mtdqn.interrupts import redeliver_swallowed_interrupts
from mtdqn.tasknames import split_task_list

__all__ = ["main"]

_LIST_FLAGS = ("--tasks", "--task-weights", "--teachers", "--add-tasks")
_COMMAND_ALIASES = {"watch": "play", "render": "play", "gif": "play", "deploy": "act", "eval": "evaluate",
                    "search": "tune", "sweep": "train"}
"""Commands named by what they do (the README's *Watching* section plays, never `watch`s), as suggestions."""


def _split_commas(argv: list[str]) -> list[str]:
    """Let list options take ``a,b,c`` as well as ``a b c`` (:func:`mtdqn.tasknames.split_task_list`: a task
    spec's own options stay with it)."""
    out: list[str] = []
    expect = False
    for arg in argv:
        if expect and not arg.startswith("--") and "," in arg:
            out.extend(split_task_list(arg))
        else:
            out.append(arg)
        expect = arg in _LIST_FLAGS or (expect and not arg.startswith("--"))
    return out


class _Rejected(Exception):
    """A command line tyro rejected, as the one line we print."""


def _rejection(event: object, command: str | None = None) -> str:
    """One line from tyro's parse-error event (``command``: the one the command line names, if any).

    ``tyro._errors.on_parse_error`` is tyro's one structured hook for parse
    failures (private and experimental, so pyproject.toml pins tyro exactly);
    it hands us the failure's parts instead of its boxed drawing.  An event
    type this version does not know gets a generic line, never a traceback.
    """
    from tyro import _errors as tyro_errors

    if isinstance(event, tyro_errors.InstantiationFailure):
        where = f"{event.argument.display_name()}: " if event.argument is not None else ""
        return f"{where}{_one_reason(event.message)}"
    if isinstance(event, tyro_errors.InvalidChoice):
        return f"{event.argument.display_name()}: invalid choice {event.value!r}. Expected one of {event.choices}"
    prog = f"mtdqn {command}" if command else getattr(event, "prog", "mtdqn")
    if isinstance(event, tyro_errors.UnrecognizedArgs):
        if command is None and event.tokens and not event.tokens[0].startswith("-"):  # `mtdqn trian`
            close = ([_COMMAND_ALIASES[event.tokens[0]]] if event.tokens[0] in _COMMAND_ALIASES else
                     difflib.get_close_matches(event.tokens[0], COMMANDS, n=1, cutoff=0.6))
            meant = f"; did you mean `mtdqn {close[0]}`?" if close else ""
            return f"unknown command {event.tokens[0]!r}{meant} (commands: {', '.join(COMMANDS)})"
        suggested = _did_you_mean(event.tokens, command)
        return f"Unrecognized options: {' '.join(event.tokens)}{suggested} (see `{prog} --help`)"
    if isinstance(event, tyro_errors.MissingArgs):  # a positional argument by its metavar, as --help shows it
        names = ", ".join(a.arg.display_name() if a.arg.display_name().startswith("-") else
                          str(a.arg.lowered.metavar or a.arg.display_name()) for a in event.missing_arguments)
        return f"Missing required arguments: {names} (see `{prog} --help`)"
    if isinstance(event, tyro_errors.MissingSubcommand):
        return f"expected a command: {', '.join(COMMANDS)} (see `mtdqn --help`)"
    if isinstance(event, tyro_errors.BadValue):
        name = event.argument.display_name()
        if event.reason == "too_few_values":
            return f"{name}: expected {event.argument.lowered.metavar}"
        return f"{name}: takes no value, got {event.offending_value!r}"
    return f"invalid arguments for `{getattr(event, 'prog', 'mtdqn')}` (see its --help)"


OTHER_COMMANDS_FLAGS = {("extend", "--keep-heads"): "extend keeps the run's heads for its own tasks, always",
                        ("extend", "--tasks"): "extend trains the run's own tasks plus --add-tasks",
                        ("act", "--agent-seed"): "did you mean --seed (the seed whose network acts)?"}
"""What an unrecognized flag that another command takes means here, where a spelling suggestion would mislead
(``extend --keep-heads`` was asked whether it meant --keep-best)."""


def _did_you_mean(tokens: list[str], command: str | None) -> str:
    """"; --hiden: did you mean --hidden?" for each unrecognized flag close to one of ``command``'s flags (or
    another library's name for one: --learning-rate means --lr); a flag of another command says so
    (:data:`OTHER_COMMANDS_FLAGS`: what it means here); "" where none is.  tyro's hook reports the tokens without
    its own suggestions."""
    if command not in COMMANDS:
        return ""
    names = [flag.removeprefix("--") for flag in command_flags(COMMANDS[command][0])]
    said = []
    for flag in (token.split("=", 1)[0] for token in tokens if token.startswith("--")):
        if (command, flag) in OTHER_COMMANDS_FLAGS:
            owners = [f"`mtdqn {other}`" for other, (cls, _) in COMMANDS.items()
                      if other != command and flag in command_flags(cls)]
            said.append(f"; {flag} is a flag of {' and '.join(owners)}: {OTHER_COMMANDS_FLAGS[command, flag]}")
        elif (close := closest_option(flag[2:], names)) is not None:
            said.append(f"; {flag}: {did_you_mean(close, '--' + close)}")
    return "".join(said)


def _one_reason(message: str) -> str:
    """tyro's message for a value no type of an optional flag takes (``int | None``: "no type matching
    {None}|INT could be instantiated from ['abc']", then one "- <class ...>: why" line per type) as the
    reason of its types other than None, the line a plain ``int`` flag gives; any other message's first line."""
    reasons = [line.split(">: ", 1)[1] for line in message.splitlines()
               if line.startswith("- <class ") and ">: " in line and not line.startswith("- <class 'NoneType'>")]
    return "; ".join(_plain_reason(r) for r in reasons) if reasons else _plain_reason(message.strip().splitlines()[0])


def _plain_reason(reason: str) -> str:
    """Python's words for a number that is none ("invalid literal for int() with base 10: 'abc'", "could not
    convert string to float: 'fast'") in a user's: "expected an integer, got 'abc'"; any other reason as it is."""
    for pattern, kind in ((r"invalid literal for int\(\) with base 10: (.*)", "an integer"),
                          (r"could not convert string to float: (.*)", "a number")):
        if (found := re.fullmatch(pattern, reason)) is not None:
            return f"expected {kind}, got {found.group(1)}"
    return reason


def _reader_gone() -> bool:
    """Whether standard output is a pipe its reader has closed (``| head`` having read its lines): a broken pipe
    there is the reader's choice, not an error to report; one elsewhere (a Ray worker's socket) still is."""
    try:
        poll = select.poll()
        poll.register(sys.stdout.fileno(), select.POLLERR)
        return bool(poll.poll(0))
    except (OSError, ValueError, AttributeError):  # no file descriptor (a notebook's stream), no poll
        return False


def _parse(argv: list[str]) -> object:
    from tyro import _errors as tyro_errors

    try:
        command = argv[0] if argv and argv[0] in COMMANDS else None  # tyro reports unknown flags at the root

        def reject(event: object) -> None:
            raise _Rejected(_rejection(event, command))

        with tyro_errors.on_parse_error(reject):
            return tyro.extras.subcommand_cli_from_dict(
                {name: cls for name, (cls, _) in COMMANDS.items()},
                args=_split_commas(argv),
                prog="mtdqn",
                config=(tyro.conf.OmitArgPrefixes, tyro.conf.FlagConversionOff),
            )
    except _Rejected as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _flags_given(argv: list[str]) -> dict[str, str]:
    """The options written on the command line, as ``{"lr": "5e-4"}`` (the flag's name with underscores, its
    first value as written): the library sees only the options that differ from their defaults, so ``--sweep
    lr=1e-3,1e-4 --lr 5e-4`` (the default) would go unseen there."""
    given = {}
    for i, arg in enumerate(argv):
        if arg.startswith("--") and len(arg) > 2:
            name, eq, value = arg[2:].partition("=")
            following = argv[i + 1] if i + 1 < len(argv) else ""
            given[name.replace("-", "_")] = value if eq else following
    return given


def _check_before_jax(cmd: object, argv: list[str] | None = None) -> None:
    """A new run's task names (:func:`mtdqn.tasknames.check_task_names`), its config's rules and budget
    (:func:`mtdqn.config.check_new_run` then :func:`mtdqn.budget.check_train_budget`, in the run's order: none
    refused, few warned) and its run directory (:meth:`mtdqn.rundir.RunDir.check_new`: ``--out``, or the
    default :func:`mtdqn.api.default_train_out`, already holding a run), all JAX-free and reading only, checked
    before JAX and the training stack are imported (~3 s on a 2-core machine): a mistyped flag or task, a budget
    that cannot learn or a reused folder is answered in about a second.  Then the sharing's and the strategy's
    options (:func:`mtdqn.api.check_sharing_and_strategy`: JAX imported, not started), before the budget's
    warning is shown: a refused run prints its error alone.  The same checks run again where the
    run is built, so nothing is skipped (a warning is printed once: :func:`_show_warning`); there a task's
    options are checked too (the registry needs JAX), and a sweep's members each by their own values."""
    if not isinstance(cmd, Train):
        return
    if cmd.sweep and argv is not None:
        from mtdqn.sweepspec import check_not_also_given, parse_sweep

        check_not_also_given(parse_sweep(cmd.sweep), _flags_given(argv))
    if cmd.resume is not None and cmd.out is not None:
        raise ConfigError(f"--resume continues {cmd.resume} in place; drop --out")
    if cmd.resume is None and not cmd.sweep:
        from mtdqn.api import check_sharing_and_strategy, default_train_out
        from mtdqn.budget import check_train_budget
        from mtdqn.config import check_new_run
        from mtdqn.rundir import RunDir
        from mtdqn.tasknames import check_task_names

        check_task_names(cmd.cfg.tasks)
        check_new_run(cmd.cfg)
        with warnings.catch_warnings(record=True) as said:  # a budget's warning is said once nothing refused the run
            warnings.simplefilter("always")
            check_train_budget(cmd.cfg, strategy_rules=False)  # the strategy's own warning (JAX) is the run's
        RunDir(cmd.out if cmd.out is not None else default_train_out(cmd.cfg)).check_new(cmd.force)
        check_sharing_and_strategy(cmd.cfg)  # imports JAX (~2 s) without starting it: reached by runs valid so far
        for w in said:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def _start_jax(cmd: object) -> None:
    """Set up this process's JAX before anything computes: CPU devices and threads, and the RNG lowering.

    Both are process-wide, so they are chosen here, once, by the program that
    owns the process (see mtdqn.devices) — never as a side effect of building
    a trainer.  The straight-line Threefry lowering is on for every command
    (the same bits, ~5-10% faster iterations), unless the environment keeps
    JAX's default (:func:`mtdqn.devices.unroll_cpu_threefry`).
    """
    from mtdqn.devices import unroll_cpu_threefry, use_cpu_cores

    use_cpu_cores(*_cpu_plan(cmd))
    unroll_cpu_threefry()


def _cpu_plan(cmd: object) -> tuple[int, int] | tuple[()]:
    """(devices, threads) for the command, or () for one device per core.

    ``train`` knows its seeds and tasks (from the command, or from the run it
    resumes), a local ``study`` or ``tune`` from its spec (every cell or
    trial has its tasks and seeds); other commands get one device per core.
    """
    from mtdqn.devices import cpu_plan

    if isinstance(cmd, Study) and cmd.ray_address is None:
        from mtdqn.studies.presets import study_seeds_and_tasks  # as written: validating it would start JAX

        written = study_seeds_and_tasks(cmd.study, {"seeds": cmd.seeds,
                                                    "tasks": list(cmd.tasks) if cmd.tasks is not None else None})
        return cpu_plan(*written, cmd.devices) if written else ()  # else _run_study says what is wrong
    if isinstance(cmd, Tune) and cmd.ray_address is None:
        from mtdqn.tune.presets import resolve_tune_spec  # JAX-free: every trial has the spec's seeds and tasks

        try:
            spec = resolve_tune_spec(cmd.spec)
        except ConfigError:  # _run_tune says what is wrong in one line
            return ()
        return cpu_plan(spec.seeds, list(spec.tasks), 0)
    if not isinstance(cmd, Train):
        return ()
    if cmd.resume is None:
        return cpu_plan(cmd.cfg.seeds, cmd.cfg.tasks, cmd.options.devices or 0)
    from mtdqn.checkpoint import resumed_layout  # plain JSON: does not start JAX

    try:  # the latest checkpoint's record: the config and layout the resumed run continues with
        seeds, tasks, devices = resumed_layout(cmd.resume, given_options(cmd.options))
    except (ConfigError, KeyError, TypeError, ValueError):  # no usable record: _run_train says so in one line
        return ()
    return cpu_plan(seeds, tasks, devices)


_SHOWN: set[str] = set()
"""The lines of our warnings this command has printed: the same check runs before JAX starts and again where the
run is built, from another module, which Python's ``once`` filter counts apart (its registry is the warning's
module's, and is emptied whenever a library imported in between changes the filters)."""


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    """Our own warnings as one line ``warning: ...`` on stderr, once each; others as Python prints them."""
    if issubclass(category, MtdqnWarning):
        text = f"warning: {' '.join(str(message).split())}"
        if text not in _SHOWN:
            _SHOWN.add(text)
            print(text, file=sys.stderr)
    else:
        _python_show_warning(message, category, filename, lineno, file, line)


_python_show_warning = warnings.showwarning


def _interrupted_line(cmd: Any) -> str:
    """The line a Ctrl-C ends a command with: how to go on, where the command can (a study's rerun said only
    'already finished, skipped' and 'running' of what it resumed, after a bare 'interrupted')."""
    if isinstance(cmd, (Study, Tune)):
        kept = "finished cells" if isinstance(cmd, Study) else "finished trials"
        return f"error: interrupted; the same command goes on where it stopped ({kept} are kept)"
    if isinstance(cmd, Train) and cmd.resume is not None:
        return "error: interrupted; the same command goes on from the run's latest checkpoint"
    started = isinstance(cmd, (Finetune, Extend)) and cmd.run.out is not None  # an ordinary run once started
    if started or isinstance(cmd, Train) and (cmd.out is not None or not cmd.sweep):
        from mtdqn.api import default_train_out

        out = (Path(cmd.run.out) if started else Path(cmd.out) if cmd.out is not None else
               default_train_out(cmd.cfg))
        try:  # a checkpoint this command wrote (under --force, an older run's is still there until it is replaced)
            written = (out / "checkpoints" / "latest.json").stat().st_mtime >= _STARTED[0]
        except OSError:
            written = False
        if written:
            return (f"error: interrupted; `mtdqn train --resume {shlex.quote(str(out))}` goes on from its latest "
                    "checkpoint")
    return "error: interrupted"


_STARTED = [time.time()]
"""When this command started (:func:`main` sets it): what it wrote is newer."""


def _exit_interrupted(line: str = "error: interrupted") -> NoReturn:
    """End this command's process after a Ctrl-C: the one line, the exit handlers, then death by SIGINT (exit
    status 130 in a shell, which then stops a loop of commands as it would for any program Ctrl-C ends; Python
    ends this way too), skipping the rest of the interpreter's shutdown.  Ctrl-C leaves what XLA was doing on its
    own threads running (a compile, a chunk: JAX stops waiting, not the work), and the shutdown ends such threads
    in a way their C++ does not survive ("FATAL: exception not rethrown", "pure virtual method called", a
    segfault).  The exit handlers still run: Ray's shuts down a local cluster the command started, however far it
    got; a second Ctrl-C meanwhile ends the process at once.  What the command wrote is already whole: files are
    renamed into place, and a checkpoint completes before Ctrl-C is taken
    (:func:`mtdqn.interrupts.interrupts_deferred`)."""
    signal.signal(signal.SIGINT, lambda signum, frame: _die_by_sigint())
    print(line, file=sys.stderr)
    atexit._run_exitfuncs()  # CPython's own exit runs them this way; there is no public equivalent
    _die_by_sigint()


def _die_by_sigint() -> NoReturn:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # a flush interrupted mid-write by the second Ctrl-C: what is buffered is lost
            pass
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGINT)
    os._exit(130)  # where the signal does not end the process


class _ReaderMayLeave:
    """Standard output for a command's work: once its reader has gone (`mtdqn train ... | head -1`), what is
    written goes to /dev/null and the work carries on.  A training run ended at the broken pipe of its progress
    line, written as training finished and before its final checkpoint: without --checkpoint-every, all of it
    was lost.  Everything else is the stream's own."""

    def __init__(self, stream: Any):
        self._stream = stream
        self.gone = False

    def write(self, text: str) -> int:
        if not self.gone:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self._reader_left()
        return len(text)

    def flush(self) -> None:
        if not self.gone:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._reader_left()

    def _reader_left(self) -> None:
        self.gone = True
        try:  # the exit's flush would raise again
            os.dup2(os.open(os.devnull, os.O_WRONLY), self._stream.fileno())
        except (OSError, ValueError):  # no descriptor to point elsewhere: the writes above stop here anyway
            pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _run_past_a_closed_pipe(handler: Any, cmd: object) -> None:
    """``handler(cmd)`` with :class:`_ReaderMayLeave` as sys.stdout; exit 141 after it where its reader left
    (as a tool SIGPIPE ends, `yes | head`), the work done: the run's files are complete, and say what it
    would have printed."""
    stdout = sys.stdout
    if stdout is None:  # started with standard output closed (`>&-`): print writes nothing, as it always did
        handler(cmd)
        return
    sys.stdout = tolerant = _ReaderMayLeave(stdout)
    try:
        handler(cmd)
    finally:
        sys.stdout = stdout
    if tolerant.gone:
        raise SystemExit(128 + signal.SIGPIPE)


def _silence_stderr() -> None:
    """Standard error to /dev/null from here on, for a process ending on an error it has reported."""
    sys.stderr.flush()
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stderr.fileno())


def _quiet_full_disk_in_threads() -> None:
    """A background thread that fails on a full disk (orbax saves a checkpoint in one) reports nothing: the main
    thread meets the same disk and says so in one line (three tracebacks came around it).  Anything else is
    reported as before."""
    import threading

    before = threading.excepthook

    def hook(args: Any) -> None:
        if not (isinstance(args.exc_value, OSError) and args.exc_value.errno in (errno.ENOSPC, errno.EDQUOT)):
            before(args)

    threading.excepthook = hook


def main(argv: list[str] | None = None) -> None:
    """Entry point: parse, dispatch, turn user errors into one line (exit 2; diverged or no trial completed 3;
    I/O, memory, disk 1).  ``argv`` None: this process's own command line (the ``mtdqn`` script, ``python -m
    mtdqn.cli``), so the process is the command's, and Ctrl-C ends it (:func:`_exit_interrupted`); given (a test,
    a notebook), Ctrl-C is ``SystemExit(130)``."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    command_line = argv is None
    if command_line:
        redeliver_swallowed_interrupts()
        _quiet_full_disk_in_threads()
    warnings.showwarning = _show_warning
    warnings.simplefilter("once", FewUpdatesWarning)  # a study validates each cell's budget more than once
    _SHOWN.clear()
    _STARTED[0] = time.time()
    cmd = None
    try:
        args = sys.argv[1:] if argv is None else argv
        cmd = _parse(args)
        handler = next(fn for cls, fn in COMMANDS.values() if isinstance(cmd, cls))
        _check_before_jax(cmd, args)
        _start_jax(cmd)
        if command_line:
            _run_past_a_closed_pipe(handler, cmd)
        else:
            handler(cmd)
    except (ConfigError, TrainingDiverged, SearchFailed, CellsFailed) as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        code = 1 if isinstance(exc, InsufficientResources) else 2 if isinstance(exc, ConfigError) else 3
        raise SystemExit(code) from None
    except OSError as exc:  # disk full or a folder that became unwritable mid-run
        if isinstance(exc, BrokenPipeError) and _reader_gone():  # `mtdqn train --help | head`: nothing to say
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the exit's flush would raise again
            raise SystemExit(128 + signal.SIGPIPE) from None  # 141, as a tool SIGPIPE ends (`yes | head`)
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"error: cannot write results: {exc.strerror or exc}{where}", file=sys.stderr)
        if command_line:  # the one line said: what a full disk does to orbax's saving thread and tensorboardX's
            _silence_stderr()  # exit handlers next would print their tracebacks under it
        raise SystemExit(1) from None
    except SystemExit as exc:  # rich's Console ends a broken pipe itself (`mtdqn tasks | head`): it points stdout
        if exc.code == 1 and isinstance(exc.__context__, BrokenPipeError):  # at /dev/null, then SystemExit(1)
            raise SystemExit(128 + signal.SIGPIPE) from None  # 141, as above
        raise
    except KeyboardInterrupt:
        if command_line:
            _exit_interrupted(_interrupted_line(cmd))
        print(_interrupted_line(cmd), file=sys.stderr)
        raise SystemExit(130) from None
    finally:
        _SHOWN.clear()  # a later warning in this process (e.g. mtdqn.train in a notebook) is printed again
