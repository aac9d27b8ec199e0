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


def test_sources_found():
    assert len(SOURCES) > 10 and PACKAGE / "checkpoint.py" in SOURCES


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_pickle_in_source(path):
    names = _code_names(path) & FORBIDDEN_NAMES
    assert not names, f"{path}: uses {sorted(names)}"
    for owner, attr, keywords, line in _calls(path):
        where = f"{path}:{line}"
        assert not (owner == "torch" and attr == "load"), f"{where}: torch.load unpickles"
        flag = keywords.get("allow_pickle")
        assert not (isinstance(flag, ast.Constant) and flag.value is True), f"{where}: allow_pickle=True"
        if owner in ("np", "numpy", "jnp") and attr == "load":
            explicit = isinstance(flag, ast.Constant) and flag.value is False
            assert explicit, f"{where}: np.load without allow_pickle=False"


def test_loading_a_checkpoint_never_unpickles(tmp_path, monkeypatch):
    from test_checkpoint import fake_run

    from mtdqn.checkpoint import load_checkpoint

    trainer, abstract, _ = fake_run(tmp_path)

    def refuse(*args, **kwargs):
        raise AssertionError("unpickling while loading a checkpoint")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    state, _ = load_checkpoint(tmp_path, trainer, abstract)
    assert state.iteration.shape == (len(trainer.agent.seeds),)
