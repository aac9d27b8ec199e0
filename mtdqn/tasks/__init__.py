"""Tasks: the registry of JAX-native environments and how they are stepped."""

from mtdqn.deferred import deferred_imports

with deferred_imports("seaborn", "matplotlib.pyplot"):  # gymnax's renderers' imports (mtdqn.deferred): ~1.9 s
    import gymnax  # noqa: F401  (first, before any module here imports it)

from mtdqn.tasks.envs import EnvStep, obs_dtype, pad_obs, reset_envs, step_envs  # noqa: E402
from mtdqn.tasks.registry import TASKS, Task, TaskSet, list_tasks, make_task_set, parse_task  # noqa: E402

__all__ = [
    "TASKS", "Task", "TaskSet", "list_tasks", "make_task_set", "parse_task",
    "EnvStep", "obs_dtype", "pad_obs", "reset_envs", "step_envs",
]
