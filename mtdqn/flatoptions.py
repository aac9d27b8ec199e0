"""Flat option names (``lr``, ``sharing``, ``batch_size``) for nested configs: the one mapping.

A study file's ``[options]``, the Python API's keyword arguments
(``mtdqn.train(lr=1e-3, sharing="independent")``) and `mtdqn distill`'s
options name a config's fields without their section (``dqn.``,
``network.``).  :func:`option_table` derives the mapping from the config
dataclasses themselves, :func:`coerce` checks a value against the field's
type, :func:`apply_options` builds the nested config and
:func:`config_options` goes back from a config to the options it sets.

JAX-free: a study is read and the CLI plans devices before JAX starts.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any, Iterable, Literal, Union

__all__ = ["option_table", "coerce", "type_name", "unknown_option", "closest_option", "did_you_mean", "meant_name",
           "KNOWN_ALIASES", "SUGGESTION_NOTES", "apply_options", "config_options"]

# Sections of a config that are not options: set by the commands that need them (fine-tuning), never by name.
_NOT_OPTIONS = ("finetune",)


def option_table(cls: type, exclude: Iterable[str] = ()) -> dict[str, tuple[str, Any]]:
    """Flat option name -> (section, resolved type hint) of a config dataclass whose dataclass-typed fields
    are sections ("" for a top-level field); ``exclude``: names that are not options here."""
    table: dict[str, tuple[str, Any]] = {}
    for name, hint in typing.get_type_hints(cls, include_extras=False).items():
        if name in _NOT_OPTIONS or name in exclude:
            continue
        if dataclasses.is_dataclass(hint):
            for sub, sub_hint in typing.get_type_hints(hint).items():
                assert sub not in table, f"option {sub} is ambiguous across config sections"
                table[sub] = (name, sub_hint)
        else:
            assert name not in table, f"option {name} is ambiguous across config sections"
            table[name] = ("", hint)
    return table


def type_name(hint: Any) -> str:
    """A type hint in words, for error messages."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin is tuple:
        return f"a list of {type_name(args[0])}" + (f" ({len(args)} values)" if args[-1] is not Ellipsis else "")
    if origin in (Union, types.UnionType):
        return " or ".join(type_name(a) for a in args if a is not type(None))
    return getattr(hint, "__name__", str(hint))


def coerce(value: Any, hint: Any) -> Any:
    """``value`` checked against a config field's type (lists become tuples); raises TypeError naming the
    expected type."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    ok: Any = dataclasses.MISSING
    if hint is bool and isinstance(value, bool):
        ok = value
    elif hint is int and isinstance(value, int) and not isinstance(value, bool):
        ok = value
    elif hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        ok = float(value)
    elif hint is str and isinstance(value, str):
        ok = value
    elif origin is Literal and value in args:
        ok = value
    elif value is None and type(None) in args:
        ok = None
    elif origin in (Union, types.UnionType):
        for arg in (a for a in args if a is not type(None)):
            try:
                return coerce(value, arg)
            except TypeError:
                pass
    elif origin is tuple and isinstance(value, (list, tuple)):
        item_hints = [args[0]] * len(value) if args[-1] is Ellipsis else list(args)
        if len(item_hints) == len(value):
            ok = tuple(coerce(v, h) for v, h in zip(value, item_hints))
    if ok is dataclasses.MISSING:
        raise TypeError(f"expected {type_name(hint)}, got {value!r}")
    return ok


# Other libraries' names for our options (Stable-Baselines3, CleanRL, PureJaxRL): suggested by meaning, where
# spelling alone suggests the wrong one (learning_rate is closest to learning_starts).  None: a name with no
# counterpart here, whose closest spelling would mislead (gradient_steps, PPO's num_steps: not --n-step).
KNOWN_ALIASES: dict[str, str | None] = {
    "learning_rate": "lr", "total_timesteps": "steps", "n_envs": "num_envs", "num_seeds": "seeds",
    "target_update_interval": "target_update_every", "target_network_frequency": "target_update_every",
    "train_freq": "train_every", "train_frequency": "train_every", "exploration_fraction": "eps_fraction",
    "exploration_initial_eps": "eps_start", "start_e": "eps_start", "exploration_final_eps": "eps_end",
    "end_e": "eps_end", "n_steps": "n_step", "net_arch": "hidden", "gradient_clip": "max_grad_norm",
    "lr_decay": "lr_schedule", "anneal_lr": "lr_schedule", "gradient_steps": None, "num_steps": None,
}


# What a suggestion of these options adds: where other libraries count the same thing in other units (SB3's
# target_update_interval and CleanRL's target_network_frequency count env steps: a ported value would refresh
# the target --train-every times less often).
SUGGESTION_NOTES = {"target_update_every": "counted in gradient updates, not env steps"}


def did_you_mean(option: str, spelled: str) -> str:
    """'did you mean X?' for a suggested ``option`` (its name), written as ``spelled`` (a flag or a keyword), with
    the option's note (:data:`SUGGESTION_NOTES`)."""
    note = SUGGESTION_NOTES.get(option.replace("-", "_"))
    return f"did you mean {spelled}{f' ({note})' if note else ''}?"


def meant_name(name: str, names: Iterable[str]) -> str:
    """"; did you mean 'quick'?" for a mistyped name (a command, a preset) close to one of ``names``, else ""."""
    close = difflib.get_close_matches(name, list(names), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def closest_option(name: str, valid: Iterable[str]) -> str | None:
    """The option of ``valid`` that ``name`` most likely means (another library's name for it, or the closest
    spelling), or None.  Names may be written with dashes (CLI flags) or underscores."""
    valid = list(valid)
    spelled = {v.replace("-", "_"): v for v in valid}
    key = name.replace("-", "_")
    if key in KNOWN_ALIASES:
        alias = KNOWN_ALIASES[key]
        return spelled.get(alias) if alias is not None else None
    close = difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
    return close[0] if close else None


def unknown_option(name: str, valid: Iterable[str]) -> str:
    """The one line for an option name that is none of ``valid``: the closest one suggested, else all listed."""
    valid = list(valid)
    close = closest_option(name, valid)
    hint = did_you_mean(close, repr(close)) if close is not None else f"valid: {', '.join(valid)}"
    return f"unknown option {name!r}; {hint}"


def apply_options(base: Any, options: dict[str, Any], table: dict[str, tuple[str, Any]]) -> Any:
    """A new config with flat ``options`` (names of ``table``) mapped onto their sections; never mutates
    ``base``."""
    parts: dict[str, dict[str, Any]] = {}
    for name, value in options.items():
        parts.setdefault(table[name][0], {})[name] = value
    sections = {s: dataclasses.replace(getattr(base, s), **values) for s, values in parts.items() if s}
    return dataclasses.replace(base, **parts.get("", {}), **sections)


def config_options(cfg: Any, table: dict[str, tuple[str, Any]]) -> dict[str, Any]:
    """The flat options (names of ``table``) in which ``cfg`` differs from its class's defaults: what a user
    set; :func:`apply_options` over the defaults gives ``cfg`` back."""
    default = type(cfg)()
    out = {}
    for name, (section, _) in table.items():
        mine, theirs = ((getattr(getattr(c, section), name) if section else getattr(c, name)) for c in (cfg, default))
        if mine != theirs:
            out[name] = mine
    return out
