"""No pickle anywhere: loading a checkpoint or a result must never run code from a file.

The source check reads code tokens (comments and docstrings that *say* "never
pickle" are fine); the runtime check makes every unpickling entry point raise
while a checkpoint is loaded.
"""

from __future__ import annotations

import ast
import io
import pickle
import tokenize
from pathlib import Path

import pytest

import mtdqn

PACKAGE = Path(mtdqn.__file__).parent
SOURCES = sorted(PACKAGE.rglob("*.py"))
FORBIDDEN_NAMES = {
    "pickle", "cPickle", "cloudpickle", "dill", "shelve", "marshal", "joblib", "read_pickle", "to_pickle",
}


def _code_names(path: Path) -> set[str]:
    tokens = tokenize.generate_tokens(io.StringIO(path.read_text()).readline)
    return {t.string for t in tokens if t.type == tokenize.NAME}


def _calls(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value.id if isinstance(node.func.value, ast.Name) else ""
            yield owner, node.func.attr, {k.arg: k.value for k in node.keywords}, node.lineno


def _violations(path: Path) -> list[str]:
    """Every way ``path``'s code could unpickle: forbidden names, torch.load, np.load without allow_pickle=False."""
    found = [f"{path}: uses {sorted(names)}"] if (names := _code_names(path) & FORBIDDEN_NAMES) else []
    for owner, attr, keywords, line in _calls(path):
        where = f"{path}:{line}"
        flag = keywords.get("allow_pickle")
        if owner == "torch" and attr == "load":
            found.append(f"{where}: torch.load unpickles")
        if isinstance(flag, ast.Constant) and flag.value is True:
            found.append(f"{where}: allow_pickle=True")
        elif owner in ("np", "numpy", "jnp") and attr == "load" and not (isinstance(flag, ast.Constant)
                                                                          and flag.value is False):
            found.append(f"{where}: np.load without allow_pickle=False")
    return found


def test_the_source_check_catches_pickle(tmp_path):
    """The check below can fail: each way to unpickle is caught, while prose about pickle is not."""
    cases = {
        "import pickle\n": "uses ['pickle']",
        "import pandas as pd\nx = pd.read_pickle('f')\n": "uses ['read_pickle']",
        "import numpy as np\nx = np.load('f')\n": "np.load without allow_pickle=False",
        "import numpy as np\nx = np.load('f', allow_pickle=True)\n": "allow_pickle=True",
        "import torch\nx = torch.load('f')\n": "torch.load unpickles",
    }
    for i, (code, message) in enumerate(cases.items()):
        path = tmp_path / f"case{i}.py"
        path.write_text(code)
        assert any(message in v for v in _violations(path)), (code, _violations(path))
    prose = tmp_path / "prose.py"
    prose.write_text('"""We never pickle."""\n# no pickle here\nimport numpy as np\nx = np.load("f", allow_pickle=False)\n')
    assert _violations(prose) == []
    assert len(SOURCES) > 10 and PACKAGE / "checkpoint.py" in SOURCES  # the package itself is what gets scanned


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_pickle_in_source(path):
    assert _violations(path) == []


def test_loading_a_checkpoint_never_unpickles(tmp_path, monkeypatch):
    import jax
    import numpy as np
    from helpers import fake_run

    from mtdqn.checkpoint import load_checkpoint

    trainer, abstract, saved = fake_run(tmp_path)
    calls = []  # recorded, not raised: an exception raised inside the load could be caught there and pass

    def refuse(*args, **kwargs):
        calls.append(args)
        raise AssertionError("unpickling while loading a checkpoint")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    state, _ = load_checkpoint(tmp_path, trainer.agent.cfg, abstract)
    assert calls == []
    for got, want in zip(jax.tree.leaves(state), jax.tree.leaves(saved), strict=True):  # restored, bit for bit
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
