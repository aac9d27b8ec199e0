"""MiniGrid tasks (Chevalier-Boisvert et al., the ``minigrid`` package) as JAX environments in the compiled loop.

``core.py`` is MiniGrid's world (cells, the occluded egocentric view, the
seven actions), ``layouts.py`` each task's layout generator, ``env.py`` the
gymnax ``Environment`` and the tasks we have (:data:`SPECS`).  Each is checked
against the package in ``tests/test_minigrid.py``.
"""

from mtdqn.tasks.minigrid.core import EnvParams, EnvState
from mtdqn.tasks.minigrid.env import SPECS, MiniGrid, MiniGridSpec

__all__ = ["SPECS", "MiniGrid", "MiniGridSpec", "EnvState", "EnvParams"]
