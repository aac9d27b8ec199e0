"""Networks: per-task adapters, a (partly) shared trunk, and per-task Q heads."""

from mtdqn.networks.model import (
    Architecture, Dropout, count_params, describe_architecture, init_params, lora_layers, make_architecture,
    merge_shared, one_task_q_values, parse_sharing, q_values, shared_mask, split_shared, torso_features,
)

__all__ = [
    "Architecture", "Dropout", "count_params", "describe_architecture", "init_params", "lora_layers",
    "make_architecture", "merge_shared", "one_task_q_values", "parse_sharing", "q_values", "shared_mask",
    "split_shared", "torso_features",
]
