"""The package version, in a module of its own so that anything may read it without importing the package's
lazy attributes (:mod:`mtdqn` itself re-exports it)."""

__version__ = "0.1.0"
