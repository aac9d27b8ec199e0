"""mtdqn: multi-task deep Q-learning with shared network structures."""

__version__ = "0.1.0"
