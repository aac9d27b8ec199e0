"""Your own JAX environment as a task: registered by name, or named by an import path.

Any object with gymnax's ``Environment`` API runs in the compiled loop like
the built-in tasks (sharing variants, strategies, studies, transfer, report):
``reset(key, params) -> (obs, state)``, ``step(key, state, action, params)``,
``observation_space(params)``, ``action_space(params)`` and ``default_params``.
Subclassing ``gymnax.environments.environment.Environment`` and writing its
``reset_env`` / ``step_env`` gives all of them.

Two ways to name one:

- ``mtdqn.register_task("MyEnv-v0", factory)`` in this process (a Ray
  cluster's workers do not see it: use an import path there);
- an import path ``module.path:attribute`` as the task (``--tasks
  mypkg.envs:make_my_env``, optionally followed by task options,
  ``mypkg.envs:make_my_env:gamma=0.9``), as Gymnasium's entry points are; any
  process resolves it, so a run's record can be reopened anywhere the module
  imports.

The factory (or the attribute) is a zero-argument callable returning the
environment (a class or a function), or the environment itself.

What is checked, each failure one line before anything is written: the API
methods exist; ``default_params.max_steps_in_episode`` exists (evaluation
rolls episodes out to it); the action space is discrete (``n`` actions, 0..n-1); the
observations are 1-D vectors or (H, W, C) images (:func:`mtdqn.tasks.envs.observation_kind`)
of the shape the observation space declares, images whole numbers in 0..255 (they are stored as uint8); the
factory makes the environment without arguments; and ``step`` returns gymnax >=
1.0's six values ``(obs, state, reward, terminated, truncated, info)`` with
``info["final_observation"]`` (the observation an episode ended in; the
step resets by itself, as gymnax's ``Environment.step`` does) and a state
of reset's structure, shapes and dtypes (the compiled loop carries it).  A five-value
step, gymnax < 1.0's ``(obs, state, reward, done, info)``, is refused: it
does not tell a time limit from a true end, and a truncated transition must
bootstrap where a terminated one must not.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from mtdqn.errors import ConfigError, OneStepEpisodesWarning, warn_user
from mtdqn.tasknames import is_import_path
from mtdqn.tasks.envs import observation_kind

__all__ = ["EnvFacts", "REGISTERED", "register", "lookup", "make", "registration"]

_API = ("reset", "step", "observation_space", "action_space")
_API_LINE = ("gymnax's Environment API: reset(key, params), step(key, state, action, params), "
             "observation_space(params), action_space(params), default_params")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


@dataclass(frozen=True)
class EnvFacts:
    """What the task set needs to know of an environment, read once when it is registered or first named."""

    kind: str
    obs_shape: tuple[int, ...]
    num_actions: int
    max_episode_steps: int


REGISTERED: dict[str, tuple[Callable[[], Any], EnvFacts]] = {}
"""Name -> (factory, facts) of the environments registered in this process (:func:`register`)."""
_REGISTERED_AS: dict[str, int] = {}  # name -> the number of its latest registration in this process
_registrations = 0


def register(name: str, factory: Any, kind: str | None, builtin: Callable[[str], bool]) -> EnvFacts:
    """Check ``factory``'s environment and register it under ``name``; ``builtin`` tells the names taken by
    the package's own tasks.  Registering a name again replaces it (a notebook cell run twice)."""
    if not isinstance(name, str) or not _NAME.match(name) or is_import_path(name):
        raise ConfigError(f"task name {name!r}: use letters, digits and '_.+-' (it names folders and table rows)")
    if builtin(name):
        raise ConfigError(f"task name {name!r} is a built-in task; register your environment under another name")
    make_one = _as_factory(name, factory)
    facts = check_env(name, _made(name, make_one), kind)
    global _registrations
    _registrations += 1
    REGISTERED[name] = (make_one, facts)
    _REGISTERED_AS[name] = _registrations
    return facts


def registration(name: str) -> int | None:
    """Which registration ``name`` currently refers to (a number unique in this process), or None when it is
    not registered: a cache of what is built from task names (:func:`mtdqn.train.agent.make_agent`) keys on
    it, so a name registered again, or removed, is built afresh."""
    return _REGISTERED_AS.get(name) if name in REGISTERED else None


def lookup(name: str) -> EnvFacts | None:
    """The facts of a registered name or an import path (imported and checked once), or None for neither."""
    if name in REGISTERED:
        return REGISTERED[name][1]
    if is_import_path(name):
        return _import_path_facts(name)
    return None


def make(name: str) -> tuple[Any, Any]:
    """(env, default params) of a registered name or an import path."""
    make_one = REGISTERED[name][0] if name in REGISTERED else _as_factory(name, _import(name))
    env = make_one()
    return env, env.default_params


@lru_cache(maxsize=64)
def _import_path_facts(path: str) -> EnvFacts:
    return check_env(path, _made(path, _as_factory(path, _import(path))), None)


def _made(label: str, make_one: Callable[[], Any]) -> Any:
    """The environment ``make_one`` makes; one line where the user's factory fails (it was a traceback, exit 1:
    a factory that needs an argument, a constructor that raises)."""
    try:
        return make_one()
    except Exception as exc:  # the user's code
        raise ConfigError(f"task {label!r}: making the environment fails ({type(exc).__name__}: {_first_line(exc)}); "
                          "the factory must make it with no arguments") from None


def _import(path: str) -> Any:
    """The attribute an import path names; one line naming the module or the attribute that is missing."""
    module_name, _, attribute = path.partition(":")
    try:
        module = _import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = f"no module named {exc.name!r}" if exc.name else _first_line(exc)
        where = (" (searched: the installed packages, PYTHONPATH and the current directory)"
                 if exc.name == module_name.partition(".")[0] else "")  # not a dependency the module imports
        raise ConfigError(f"task {path!r}: cannot import {module_name!r}: {missing}{where}") from None
    except Exception as exc:  # the module itself fails to import
        raise ConfigError(f"task {path!r}: importing {module_name!r} fails: {_first_line(exc)}") from None
    if not hasattr(module, attribute):
        raise ConfigError(f"task {path!r}: module {module_name!r} has no attribute {attribute!r}")
    return getattr(module, attribute)


def _import_module(name: str) -> Any:
    """``importlib.import_module``, and where the module's package is not found, once more with the current
    directory searched last: ``python -m`` and ``python script.py`` search it, the ``mtdqn`` command does not,
    and ``--tasks examples.register_your_env:Chain`` from a checkout should work either way."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        try:
            here = os.getcwd()
        except OSError:  # the current directory was removed
            raise exc from None
        if exc.name != name.partition(".")[0] or here in sys.path or "" in sys.path:
            raise
        sys.path.append(here)
        try:
            return importlib.import_module(name)
        except BaseException:
            sys.path.remove(here)
            raise


def _as_factory(label: str, obj: Any) -> Callable[[], Any]:
    """A zero-argument callable making the environment: a class or function as it is, an environment object
    (it has ``step`` and ``reset``) wrapped; ``label`` names the task in the error."""
    if not isinstance(obj, type) and all(callable(getattr(obj, m, None)) for m in ("reset", "step")):
        return lambda: obj
    if not callable(obj):
        raise ConfigError(f"task {label!r}: {obj!r} is neither an environment nor a callable making one "
                          f"({_API_LINE})")
    return obj


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def check_env(label: str, env: Any, kind: str | None) -> EnvFacts:
    """The facts of ``env`` after every check of the module docstring; a one-line ConfigError naming ``label``
    and what is wrong otherwise."""
    for method in _API:
        if not callable(getattr(env, method, None)):
            raise ConfigError(f"task {label!r}: the environment has no method {method}() ({_API_LINE})")
    if not hasattr(env, "default_params"):
        raise ConfigError(f"task {label!r}: the environment has no default_params ({_API_LINE})")
    params = env.default_params
    max_steps = getattr(params, "max_steps_in_episode", None)
    if isinstance(max_steps, (jax.Array, np.ndarray)) and max_steps.shape == () and jnp.issubdtype(max_steps.dtype,
                                                                                                    jnp.integer):
        max_steps = int(max_steps)  # gymnax's own params hold jnp scalars in places
    if isinstance(max_steps, bool) or not isinstance(max_steps, (int, np.integer)) or max_steps < 1:
        raise ConfigError(f"task {label!r}: default_params.max_steps_in_episode must be a whole number >= 1 (the "
                          f"episode cut-off evaluation rolls out to), got {max_steps!r}")
    if max_steps == 1:
        warn_user(f"task {label!r}: default_params.max_steps_in_episode is 1 (gymnax's EnvParams default, which "
                  "params inherit unless they set their own), so every episode ends after one step: give its "
                  "params a time limit (e.g. max_steps_in_episode: int = 500), unless the task is one step long",
                  OneStepEpisodesWarning)
    num_actions = _num_actions(label, env.action_space(params))
    space = env.observation_space(params)
    shape = tuple(int(d) for d in getattr(space, "shape", ()))
    inferred = observation_kind(f"task {label!r}", shape)
    if kind is not None and kind != inferred:
        raise ConfigError(f"task {label!r}: kind={kind!r}, but its observations {shape} are {inferred} ones "
                          "(1-D: vector, (H, W, C): image)")
    if inferred == "image":
        _check_image_bounds(label, space)
    _check_rollout(label, env, params, shape)
    return EnvFacts(inferred, shape, num_actions, int(max_steps))


def _check_image_bounds(label: str, space: Any) -> None:
    """Image observations are stored as uint8 (replay, acting: :func:`mtdqn.tasks.envs.pad_obs`), so an image
    space must declare values within 0..255.  Its dtype is not read: gymnax's Box defaults to float32 whatever
    the env returns; the observations' own dtype is checked where they are traced (:func:`_check_obs`)."""
    low, high = (np.asarray(getattr(space, bound, value)) for bound, value in (("low", 0), ("high", 255)))
    if low.min() < 0 or high.max() > 255:
        raise ConfigError(f"task {label!r}: image observations are stored as uint8, so they must be whole numbers "
                          f"in 0..255; its observation_space declares [{low.min():g}, {high.max():g}] (scale them "
                          "into 0..255, or flatten them into a 1-D vector task)")


def _num_actions(label: str, space: Any) -> int:
    """The count of a discrete action space of actions 0..n-1; one line for any other."""
    n = getattr(space, "n", None)
    if isinstance(n, (jax.Array, np.ndarray)) and n.shape == () and jnp.issubdtype(n.dtype, jnp.integer):
        n = int(n)  # Discrete(jnp.int32(n)): a whole number, as max_steps_in_episode may be
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or getattr(space, "shape", ()) not in ((), None):
        with_n = "" if n is None else f" with n = {n!r}"
        raise ConfigError(f"task {label!r} has a {type(space).__name__} action space{with_n}; only discrete actions "
                          "(a Discrete(n) space, n a whole number) are supported")
    if n < 1:
        raise ConfigError(f"task {label!r}: its Discrete action space has {n} actions")
    start = getattr(space, "start", 0)
    if int(np.asarray(start)) != 0:  # gymnasium's Discrete(n, start): the agent sends 0..n-1
        raise ConfigError(f"task {label!r}: its Discrete action space starts at {int(np.asarray(start))}; the agent "
                          "sends actions 0..n-1 (shift them in step, or use Discrete(n))")
    return int(n)


def _check_rollout(label: str, env: Any, params: Any, shape: tuple[int, ...]) -> None:
    """Trace one reset and one step (shapes only, nothing runs) and check what they return."""
    key = jax.random.PRNGKey(0)
    try:
        reset = jax.eval_shape(lambda k: env.reset(k, params), key)
    except Exception as exc:  # the user's code, traced
        raise ConfigError(f"task {label!r}: reset(key, params) fails: {_first_line(exc)}") from None
    if not isinstance(reset, (tuple, list)) or len(reset) != 2:
        raise ConfigError(f"task {label!r}: reset(key, params) must return (obs, state)")
    _check_obs(label, "reset", reset[0], shape)
    try:
        out = jax.eval_shape(lambda k, s: env.step(k, s, jnp.int32(0), params), key, reset[1])
    except Exception as exc:
        raise ConfigError(f"task {label!r}: step(key, state, action, params) fails: {_first_line(exc)}") from None
    count = len(out) if isinstance(out, (tuple, list)) else 1
    if count == 5:
        raise ConfigError(f"task {label!r}: step returns 5 values (gymnax < 1.0's obs, state, reward, done, info); "
                          "mtdqn needs gymnax >= 1.0's 6: obs, state, reward, terminated, truncated, info (a "
                          "truncated episode bootstraps from its last observation, a terminated one does not)")
    if count != 6:
        raise ConfigError(f"task {label!r}: step returns {count} value(s); expected gymnax >= 1.0's 6: obs, state, "
                          "reward, terminated, truncated, info")
    obs, state, reward, terminated, truncated, info = out
    _check_obs(label, "step", obs, shape)
    _check_state(label, reset[1], state)
    for what, value in (("reward", reward), ("terminated", terminated), ("truncated", truncated)):
        if tuple(getattr(value, "shape", (None,))) != ():
            raise ConfigError(f"task {label!r}: step's {what} must be a scalar, got shape "
                              f"{getattr(value, 'shape', type(value).__name__)}")
    if not isinstance(info, dict) or "final_observation" not in info:
        raise ConfigError(f"task {label!r}: step's info has no 'final_observation' (the observation the episode "
                          "ended in, before the automatic reset): subclass gymnax's Environment (gymnax >= 1.0) and "
                          "write reset_env and step_env, or add it")
    _check_obs(label, "step's info['final_observation']", info["final_observation"], shape)


def _check_state(label: str, reset_state: Any, step_state: Any) -> None:
    """step's state as reset's, leaf for leaf (structure, shapes, dtypes): the compiled loop carries it from
    step to step, and a change (an auto-reset's jnp.where(done, 0.0, s.pos) on an int32 pos) failed training
    after config.json was written, with JAX's multi-line scan error."""
    if jax.tree.structure(step_state) != jax.tree.structure(reset_state):
        raise ConfigError(f"task {label!r}: step returns a state of another structure than reset's "
                          f"({jax.tree.structure(step_state)} vs {jax.tree.structure(reset_state)})")
    for (path, a), b in zip(jax.tree_util.tree_flatten_with_path(reset_state)[0], jax.tree.leaves(step_state)):
        was, now = (f"{x.dtype}{list(x.shape)}" for x in (a, b))  # eval_shape's ShapeDtypeStructs
        if now != was:
            raise ConfigError(f"task {label!r}: step returns a state whose {jax.tree_util.keystr(path) or 'state'} "
                              f"is {now}, where reset's is {was}; the loop carries the state from step to step, so "
                              "each field keeps its shape and dtype (e.g. jnp.where(done, 0, s.pos).astype(s.pos.dtype))")


def _check_obs(label: str, where: str, obs: Any, shape: tuple[int, ...]) -> None:
    got = tuple(getattr(obs, "shape", ()))
    if got != shape:
        raise ConfigError(f"task {label!r}: {where} returns observations of shape {got}; its observation_space "
                          f"says {shape}")
    dtype = np.dtype(getattr(obs, "dtype", np.float32))
    if len(shape) == 3 and not (np.issubdtype(dtype, np.integer) or dtype == np.bool_):
        raise ConfigError(f"task {label!r}: {where} returns {dtype} image observations; images are stored as uint8, "
                          "so they must be whole numbers in 0..255 (e.g. (obs * 255).astype(jnp.uint8))")
