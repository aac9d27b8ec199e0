"""The one exception type users see.

Every check of user input raises :class:`ConfigError` with a single-line
message; the CLI prints it as ``error: <message>`` and exits with status 2 (1 for
:class:`InsufficientResources`, the machine's limits), so scripts and the bad-input tests can rely on one shape
of failure.
"""

from __future__ import annotations

import os
import sys
import warnings

__all__ = ["count", "ConfigError", "CorruptCheckpoint", "DamagedRun", "FolderBusy", "InsufficientResources",
           "InsufficientDisk", "TrainingDiverged", "SearchFailed", "CellsFailed", "MtdqnWarning", "FewUpdatesWarning",
           "RoundedScheduleWarning", "OneStepEpisodesWarning", "LayoutChangedWarning", "UnfinishedEpisodesWarning",
           "Unwritable", "warn_user", "check_number", "check_float32", "check_devices_asked", "check_path"]


class ConfigError(ValueError):
    """Bad user input: unknown task, nonsense hyperparameter, mismatched file."""


class FolderBusy(ConfigError):
    """Another process is writing the folder (a run being trained, a study being run: :func:`mtdqn.io.held`);
    never a reason to start the folder over, as an unreadable checkpoint is."""


class CorruptCheckpoint(ConfigError):
    """A checkpoint that cannot be read: its record or files missing, damaged or disagreeing.  A study trains
    such a cell again from its start; any other refusal of a resume (another setup, your own environment changed
    under its name) fails the cell, its checkpoint kept."""


class DamagedRun(ConfigError):
    """A run's own record (a sweep member's config.json, a sweep's sweep.json) missing, damaged or another run's
    where its population resumes: refused before anything trains, and a search stops on it, its trials untold
    (not failed for good), until the record is put back."""


class InsufficientResources(ConfigError):
    """The run is valid but does not fit this machine now (memory, disk space); retrying elsewhere or later may
    work.  The CLI exits 1 for it, as for other environment problems, not 2."""


class Unwritable(InsufficientResources):
    """A place this machine will not let be written (permissions, a read-only disk): the CLI's exit 1, an
    environment problem; as for a full disk, no smaller program helps (a search's batch is not split for it)."""


class InsufficientDisk(InsufficientResources):
    """Not enough free disk space for the run's checkpoints.  Unlike memory, a smaller program does not help:
    a search's batch is not split for it (its checkpoint kept for a rerun once space is freed)."""


class TrainingDiverged(RuntimeError):
    """A loss or Q-value became non-finite; the message names the step and task."""


class SearchFailed(RuntimeError):
    """`mtdqn tune` ran its trials and none completed (each failed trial's reason is in its report); the CLI
    exits 3, as for a diverged run, after printing the report's path."""


class CellsFailed(RuntimeError):
    """`mtdqn study` ran and some of its cells failed (diverged, or raised): the report is written, those cells
    marked FAILED in it; the CLI exits 3, as for a diverged run, after printing the report's path."""


class MtdqnWarning(UserWarning):
    """A warning of mtdqn's own about what the user asked for; the CLI prints it as one ``warning: <message>``
    line, once."""


class RoundedScheduleWarning(MtdqnWarning):
    """A budget or cadence a run rounds to whole logging windows: a new run's, or a search's trials' (whose
    report states them as asked)."""


class OneStepEpisodesWarning(MtdqnWarning):
    """Your own environment's episodes are cut after one step: ``max_steps_in_episode`` 1, gymnax's
    ``EnvParams`` default, which params that do not set their own inherit."""


class LayoutChangedWarning(MtdqnWarning):
    """A run resumed with its seeds over another number of devices than they trained on (``--devices``): its
    numbers from there on differ from an uninterrupted run's."""


class FewUpdatesWarning(MtdqnWarning):
    """A valid budget that makes so few gradient updates the agent can hardly learn; the CLI prints it as
    ``warning: <message>``."""


class UnfinishedEpisodesWarning(MtdqnWarning):
    """Evaluation episodes that no time limit ended within the evaluation's steps (a Gymnasium env without one, a
    registered env that ignores its own): their returns are NaN."""


def count(n: int, noun: str) -> str:
    """``n`` and its noun, singular for one, for the lines the user reads: "1 seed", "3 seeds" (a study of one seed
    read "1 seeds").  The noun is given in the singular; its plural adds "s"."""
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def warn_user(message: str, category: type[Warning]) -> None:
    """``warnings.warn`` attributed to the first caller outside this package: the user's line (a script's, a
    notebook cell's) whichever entry point and wrappers led here (``mtdqn.train`` passes through
    mtdqn.callables, ``mtdqn.study`` does not), where a fixed ``stacklevel`` named a line of mtdqn's own.  (Python
    3.12's ``skip_file_prefixes``, on 3.11.)  So filter mtdqn's warnings by their category
    (``warnings.filterwarnings("ignore", category=mtdqn.errors.MtdqnWarning)``), not by ``module="mtdqn"``."""
    package = os.path.dirname(os.path.abspath(__file__)) + os.sep
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level + 1)


def check_number(name: str, value: object, least: float, *, integer: bool = True) -> None:
    """A numeric argument of a command or of its Python function (``name`` as the CLI spells it) checked: a
    ConfigError where it is not an integer (``integer``; else a real number) or below ``least``.  The CLI's
    parser types its flags; a Python caller's ``episodes="2"`` met a comparison of str with int instead."""
    kinds = (int,) if integer else (int, float)
    if not isinstance(value, kinds) or isinstance(value, bool):
        raise ConfigError(f"{name}: expected {'an integer' if integer else 'a number'}, got {value!r}")
    if value < least:
        raise ConfigError(f"{name} must be {'> 0' if least == 1 and integer else f'>= {least}'}, got {value}")


FLOAT32_MAX = 3.4028234663852886e38
"""The largest finite float32: the training loop computes in float32, where a larger value is inf."""
FLOAT32_TINY = 1.1754943508222875e-38
"""The smallest normal float32: XLA flushes smaller magnitudes (subnormals) to 0 on CPU and GPU."""


def check_float32(name: str, value: float) -> None:
    """A real hyperparameter the compiled loop reads as float32 checked to survive the cast: a ConfigError where
    it is beyond float32's range (``--lr 1e40`` became inf and the run diverged at its first update) or so
    small it becomes 0 (``--task-weights 1e-50 1e-50`` trained a loss weighted by zeros, silently)."""
    if abs(value) > FLOAT32_MAX or 0 < abs(value) < FLOAT32_TINY:
        raise ConfigError(f"{name} {value:g} is outside float32's range, in which training computes (magnitudes "
                          f"{FLOAT32_TINY:.3g} to {FLOAT32_MAX:.3g}, or 0)")


def check_devices_asked(requested: int, num_seeds: int | None = None) -> None:
    """``--devices`` checked by the rules that need no device: >= 0 (0: as many as the seeds can use) and, given
    the seeds, no more than them; the devices this process has are :func:`mtdqn.devices.seed_devices`' to
    check.  One wording for `train`, a study (its cells, on Ray too) and the Python API."""
    if requested < 0:
        raise ConfigError(f"--devices must be >= 0 (0: as many as the seeds can use), got {requested}")
    if num_seeds is not None and requested > num_seeds:
        raise ConfigError(f"--devices {requested}: more devices than seeds ({num_seeds})")


def check_path(name: str, value: object) -> None:
    """A folder or file given as a path (a str or an os.PathLike) by a Python caller: ``out=123`` raised pathlib's
    TypeError from inside the call, naming no argument."""
    if not isinstance(value, (str, os.PathLike)):
        raise ConfigError(f"{name}: expected a path (str or pathlib.Path), got {value!r}")
