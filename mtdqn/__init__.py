"""mtdqn: multi-task deep Q-learning with shared network structures."""

from mtdqn.version import __version__

__all__ = ["load_agent", "__version__"]


def __getattr__(name: str):
    """``mtdqn.load_agent`` imports JAX only when used: the CLI plans JAX's devices before JAX starts."""
    if name == "load_agent":
        from mtdqn.deploy import load_agent

        return load_agent
    raise AttributeError(f"module 'mtdqn' has no attribute {name!r}")
