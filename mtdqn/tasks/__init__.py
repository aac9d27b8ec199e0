"""Tasks: the registry of JAX-native environments and how they are stepped."""

from mtdqn.tasks.envs import EnvStep, obs_dtype, pad_obs, reset_envs, step_envs
from mtdqn.tasks.registry import TASKS, Task, TaskSet, list_tasks, make_task_set, parse_task

__all__ = [
    "TASKS", "Task", "TaskSet", "list_tasks", "make_task_set", "parse_task",
    "EnvStep", "obs_dtype", "pad_obs", "reset_envs", "step_envs",
]
