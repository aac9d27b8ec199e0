"""Imports a dependency makes at its import but uses only later, if ever: deferred to their first use.

gymnax's ``environments`` package imports every environment it ships, and with them what their ``render``
methods draw with: Pong imports seaborn (and so scipy.stats), Catch and others matplotlib.pyplot.  mtdqn never
calls those renderers, yet every process that steps a task paid ~1.9 s for them (of ~5.2 s to import the
training stack on a 2-core AMD EPYC, 2026-12-06): each `mtdqn` command, each test worker and subprocess, each
Ray worker.  :func:`deferred_imports` hands the importing code a stand-in that imports the real module on its
first attribute access, and takes the stand-in out of ``sys.modules`` when the block ends, so that no one
else ever sees it: a later ``import seaborn`` (yours) imports the real module as usual.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["deferred_imports"]


class _Deferred(types.ModuleType):
    """Stands in for a module not yet imported; the first attribute looked up imports it (or takes the one
    imported since) and is read from it, as is every later one.  Its ``__spec__`` is the module's own, so that
    ``importlib.util.find_spec`` (an optional-dependency check) answers as it would."""

    def __init__(self, spec: importlib.machinery.ModuleSpec) -> None:
        super().__init__(spec.name)
        self.__spec__ = spec

    def __getattr__(self, attr: str) -> object:  # only for attributes not in the stand-in's own __dict__
        real = self.__dict__.get("_deferred_module")
        if real is None:
            if sys.modules.get(self.__name__) is self:
                del sys.modules[self.__name__]
            real = importlib.import_module(self.__name__)
            self.__dict__["_deferred_module"] = real
        return getattr(real, attr)


def _spec(name: str) -> importlib.machinery.ModuleSpec | None:
    try:
        return importlib.util.find_spec(name)
    except (ImportError, ValueError):  # a parent package missing
        return None


@contextmanager
def deferred_imports(*names: str) -> Iterator[None]:
    """Within the block, ``import NAME as x`` and ``from PARENT import LAST`` of each of ``names`` not yet imported
    (and found: :func:`importlib.util.find_spec`) give a stand-in that imports the module on first use; after
    it, ``sys.modules`` holds only real modules again.  (A plain dotted ``import a.b`` binds ``a``, whose
    attribute ``b`` the stand-in never sets: gymnax imports the two modules in the forms above.)"""
    specs = {name: _spec(name) for name in names if name not in sys.modules}
    stand_ins = {name: _Deferred(spec) for name, spec in specs.items() if spec is not None}
    sys.modules.update(stand_ins)
    try:
        yield
    finally:
        for name, stand_in in stand_ins.items():
            if sys.modules.get(name) is stand_in:
                del sys.modules[name]
