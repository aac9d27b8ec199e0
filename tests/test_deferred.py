"""Deferred imports (mtdqn.deferred): gymnax's renderers' imports wait for their first use, unseen by others."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mtdqn.deferred import deferred_imports

ROOT = Path(__file__).resolve().parent.parent


def test_a_deferred_module_runs_on_first_use_once_and_leaves_no_stand_in(tmp_path, monkeypatch):
    (tmp_path / "slow_to_import.py").write_text(
        "from pathlib import Path\n"
        "marks = Path(__file__).with_name('imported')\n"
        "marks.write_text(marks.read_text() + 'x' if marks.exists() else 'x')\n"
        "value = 42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "slow_to_import", raising=False)
    with deferred_imports("slow_to_import"):
        import slow_to_import as early  # what gymnax's module holds
    assert not (tmp_path / "imported").exists()  # not run yet
    assert "slow_to_import" not in sys.modules  # no one else sees the stand-in
    assert early.value == 42 and (tmp_path / "imported").read_text() == "x"
    import slow_to_import as later  # the real module, imported once

    assert type(later).__name__ == "module" and later.value == 42 and early.marks == later.marks
    assert (tmp_path / "imported").read_text() == "x"
    monkeypatch.delitem(sys.modules, "slow_to_import")


def test_an_optional_dependency_check_sees_the_module_inside_the_block(tmp_path, monkeypatch):
    """find_spec (how libraries check for an optional package) raised ValueError on a stand-in without a spec."""
    import importlib.util

    (tmp_path / "slow_to_import.py").write_text("value = 42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "slow_to_import", raising=False)
    with deferred_imports("slow_to_import", "no_such_module_anywhere"):
        assert importlib.util.find_spec("slow_to_import").origin == str(tmp_path / "slow_to_import.py")
        assert "no_such_module_anywhere" not in sys.modules  # nothing to defer: its import fails as ever
    monkeypatch.delitem(sys.modules, "slow_to_import", raising=False)


def test_a_module_imported_before_the_block_is_left_as_it_is():
    import json

    with deferred_imports("json"):
        import json as inside
    assert inside is json and sys.modules["json"] is json


@pytest.mark.slow  # a fresh interpreter imports JAX and gymnax (~3 s)
def test_the_tasks_import_gymnax_without_its_renderers_imports():
    """gymnax's environments import seaborn (scipy.stats) and matplotlib.pyplot for their render methods: ~1.9 s
    of every process that steps a task, now spent only where something draws with them."""
    code = (
        "import sys, types\n"
        "import mtdqn.tasks\n"
        "print(sorted(m for m in ('seaborn', 'scipy.stats', 'matplotlib.pyplot') if m in sys.modules))\n"
        "from gymnax.environments.misc import pong\n"
        "import seaborn\n"
        "print(type(seaborn) is types.ModuleType, pong.sns.color_palette is seaborn.color_palette)\n"
        "import matplotlib.pyplot as plt\n"
        "print(type(plt) is types.ModuleType, pong.plt.subplots is plt.subplots)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["[]", "True True", "True True"]


def test_the_subpackages_the_readme_names_are_reached_from_the_package():
    """`mtdqn.devices.use_cpu_cores()`, the advice of the README and of a warning, raised AttributeError after
    `import mtdqn` alone (a module is its package's attribute only once imported); in a fresh process."""
    import subprocess
    import sys

    code = ("import mtdqn, sys; assert 'mtdqn.devices' not in sys.modules; "
            "print(callable(mtdqn.devices.use_cpu_cores), 'sum' in mtdqn.strategies.REGISTRY, "
            "'CartPole-v1' in mtdqn.tasks.TASKS)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "True", "True"]
