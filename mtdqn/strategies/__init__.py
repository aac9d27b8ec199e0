"""Multi-task gradient strategies: one module each, registered by name."""

from mtdqn.strategies import cagrad as _cagrad  # noqa: F401  (registers)
from mtdqn.strategies import dwa as _dwa  # noqa: F401
from mtdqn.strategies import gradnorm as _gradnorm  # noqa: F401
from mtdqn.strategies import pcgrad as _pcgrad  # noqa: F401
from mtdqn.strategies import sum as _sum  # noqa: F401
from mtdqn.strategies import uncertainty as _uncertainty  # noqa: F401
from mtdqn.strategies import unit_norm as _unit_norm  # noqa: F401
from mtdqn.strategies.base import (
    REGISTRY, SCOPE, Strategy, StrategySpec, make_strategy, parse_strategy_args, register, updates_as_sum,
)

__all__ = ["REGISTRY", "SCOPE", "Strategy", "StrategySpec", "make_strategy", "parse_strategy_args", "register",
           "updates_as_sum"]
