"""Objectives as pure functions, plus TTUR parameter groups. Imports torch only."""

from vitforge.methods import cloob, mae, nnclr
from vitforge.methods.distributed import gather_features, gather_with_grad
from vitforge.methods.param_groups import (
    cloob_param_groups,
    freeze_lower_blocks,
    mae_ct_param_groups,
    mae_param_groups,
    ttur_param_groups,
)

__all__ = [
    "cloob",
    "cloob_param_groups",
    "freeze_lower_blocks",
    "gather_features",
    "gather_with_grad",
    "mae",
    "mae_ct_param_groups",
    "mae_param_groups",
    "nnclr",
    "ttur_param_groups",
]
