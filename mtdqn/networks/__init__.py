"""Networks: per-task adapters, a (partly) shared trunk, and per-task Q heads.

``architecture`` says which layers and which of them are shared, ``params``
the parameter tree's contract (shared vs per-task parts), ``model`` the
forward pass and initialization, ``lora`` the low-rank trunk updates.
"""

from mtdqn.networks.architecture import Architecture, describe_architecture, make_architecture, parse_sharing
from mtdqn.networks.lora import lora_layers
from mtdqn.networks.model import Dropout, init_params, one_task_q_values, param_shapes, q_values, torso_features
from mtdqn.networks.params import count_params, merge_shared, shared_mask, split_shared

__all__ = [
    "Architecture", "Dropout", "count_params", "describe_architecture", "init_params", "lora_layers",
    "make_architecture", "merge_shared", "one_task_q_values", "param_shapes", "parse_sharing", "q_values", "shared_mask",
    "split_shared", "torso_features",
]
