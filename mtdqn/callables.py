"""Package modules that are also functions of the public API: ``mtdqn.train(...)`` calls :func:`mtdqn.api.train`.

``mtdqn.train``, ``mtdqn.finetune``, ``mtdqn.distill`` and ``mtdqn.tune`` each
name both a part of the package (``mtdqn/train/``, ``finetune.py``,
``distill/``, ``tune/``) and a
function of the Python API.  Python sets a submodule as an attribute of its
parent whenever it is imported, so a function of that name in
``mtdqn/__init__.py`` would be replaced by the module as soon as training
code imports it.  Instead, each of these modules is made callable: calling
it calls the API function of its name (imported then), whose signature and
docstring ``inspect`` and ``help(mtdqn.train.__wrapped__)`` show; everything
else about it stays a module's (its submodules, ``import mtdqn.train.run``,
monkeypatching).
"""

from __future__ import annotations

import sys
import types
from importlib import import_module
from typing import Any, Callable

__all__ = ["APIModule", "callable_as_api"]


class APIModule(types.ModuleType):
    """A module that, called, calls the function of its own name in :mod:`mtdqn.api`."""

    @property
    def __wrapped__(self) -> Callable[..., Any]:
        return getattr(import_module("mtdqn.api"), self.__name__.rpartition(".")[2])

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.__wrapped__(*args, **kwargs)


def callable_as_api(module_name: str) -> None:
    """Make the (already imported) module ``module_name`` callable as its API function."""
    sys.modules[module_name].__class__ = APIModule
