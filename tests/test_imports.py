"""The package's import graph: acyclic, no module reaching into another's private names, analysis apart from
training.

Read from the source (``ast``), so imports inside functions count as edges
too: an import moved into a function to dodge a cycle is still a cycle.
Imports under ``if TYPE_CHECKING:`` never run and are left out.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "mtdqn"


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, str | None]]:
    """(imported module, imported name or None) of every runtime import statement in the module."""
    tree = ast.parse(path.read_text())
    skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
               for body in node.body for n in ast.walk(body)}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found += [(a.name, None) for a in node.names if a.name.split(".")[0] == "mtdqn"]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, *([node.module] if node.module else [])])
            if base.split(".")[0] != "mtdqn":
                continue
            for alias in node.names:  # `from pkg import module` imports the module
                sub = f"{base}.{alias.name}"
                found.append((sub, None) if sub in modules else (base, alias.name))
    return found


def _graph() -> tuple[dict[str, set[str]], list[str]]:
    modules = _modules()
    edges: dict[str, set[str]] = {m: set() for m in modules}
    private = []
    for name, path in modules.items():
        for target, imported in _imports(name, path, modules):
            if target in modules and target != name:
                edges[name].add(target)
            if imported and imported.startswith("_") and not imported.startswith("__"):
                private.append(f"{name} imports {target}.{imported}")
    return edges, private


def _cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, as the modules along it, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for t in sorted(edges[m]):
            if state.get(t) == 1:
                return path[path.index(t):] + [t]
            if t not in state and (found := visit(t)):
                return found
        state[m] = 2
        path.pop()
        return None

    for m in sorted(edges):
        if m not in state and (found := visit(m)):
            return found
    return None


def _reachable(edges: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for t in edges[todo.pop()] - seen:
            seen.add(t)
            todo.append(t)
    return seen


def test_the_import_graph_is_acyclic():
    edges, _ = _graph()
    cycle = _cycle(edges)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_module_imports_another_modules_private_names():
    _, private = _graph()
    assert private == []


JAX_STACK = ("jax", "jaxlib", "flax", "optax", "orbax", "chex", "gymnax")


def _imports_the_jax_stack(path: Path) -> bool:
    """Whether the module imports JAX or a library on it at runtime (in a function too; TYPE_CHECKING not)."""
    tree = ast.parse(path.read_text())
    skipped = {id(n) for node in ast.walk(tree)
               if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
               for body in node.body for n in ast.walk(body)}
    names = [a.name for node in ast.walk(tree) if id(node) not in skipped and isinstance(node, ast.Import)
             for a in node.names]
    names += [node.module for node in ast.walk(tree) if id(node) not in skipped and isinstance(node, ast.ImportFrom)
              and node.module and not node.level]
    return any(n.split(".")[0] in JAX_STACK for n in names)


def test_analysis_never_imports_training():
    """Nothing analysis reaches, however indirectly, imports JAX or a library on it (the training modules all
    do): a report is written on a machine without an accelerator stack, and never compiles."""
    edges, _ = _graph()
    modules = _modules()
    on_jax = {m for m, path in modules.items() if _imports_the_jax_stack(path)}
    assert {"mtdqn.train.run", "mtdqn.evaluate", "mtdqn.checkpoint", "mtdqn.losses"} <= on_jax  # the check sees them
    for module in (m for m in edges if m.startswith("mtdqn.analysis")):
        reached = _reachable(edges, module) | {module}
        training = sorted(reached & on_jax)
        assert training == [], f"{module} reaches {training}"
        assert not any(m.startswith(("mtdqn.train", "mtdqn.networks", "mtdqn.tasks.")) for m in reached), module


def test_no_test_module_imports_another():
    """Shared test code lives in plain modules (helpers.py, synthetic_study.py), never in a test_*.py file: a test
    module imported by another is collected twice and couples their fixtures (issue 22)."""
    tests = Path(__file__).resolve().parent
    offenders = []
    for path in sorted(tests.glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.name} imports {n}" for n in names if n.split(".")[-1].startswith("test_")]
    assert offenders == []


def test_the_checks_see_what_they_check(tmp_path):
    """The graph reader finds function-level imports and private names (a check that cannot fail is none)."""
    edges, private = _graph()
    assert "mtdqn.train.run" in edges["mtdqn.studies.cell"]  # imported inside run_cell
    assert "mtdqn.tasks.registry" not in edges["mtdqn.tasks.envs"]  # TYPE_CHECKING only
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_the_report_knows_which_analysis_modules_training_runs():
    """A report calls a revision change confined to mtdqn/analysis/ harmless to the cells' numbers, except for
    USED_IN_TRAINING; a review found three modules outside the reports using analysis code (the CKA a run
    writes, a tune's objective, a groups study's partitions).  Every analysis module code outside the reports
    reaches must be in that list (report writers themselves aside)."""
    from mtdqn.analysis.methods import USED_IN_TRAINING

    edges, _ = _graph()
    writers = {"mtdqn.analysis", "mtdqn.analysis.report", "mtdqn.analysis.group_report", "mtdqn.analysis.transfer"}
    used = set()
    for module, targets in edges.items():
        if module.startswith("mtdqn.analysis") or module == "mtdqn.tune.report":  # the tune's report writer
            continue
        for target in targets:
            if target.startswith("mtdqn.analysis") and target not in writers:
                used |= {target} | {m for m in _reachable(edges, target) if m.startswith("mtdqn.analysis")}
    files = {m.removeprefix("mtdqn.").replace(".", "/") + ".py" for m in used}
    assert files <= set(USED_IN_TRAINING), sorted(files - set(USED_IN_TRAINING))
    assert "analysis/cka.py" in files  # the check sees the CKA's import
