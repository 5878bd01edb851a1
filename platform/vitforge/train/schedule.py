"""Warm-up + cosine learning-rate schedules, one per TTUR group, with linear scaling by batch."""

from __future__ import annotations

import math

from vitforge.stage_specs import AnyStage


def lr_factor(step: int, total_steps: int, warmup_steps: int, min_ratio: float = 0.0) -> float:
    """Linear warm-up from 0 to 1 over ``warmup_steps``, then cosine from 1 to ``min_ratio``."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(total_steps - warmup_steps, 1)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def base_lrs(stage: AnyStage) -> dict[str, float]:
    """The fast and slow base rates, scaled by images per step / base_batch when lr_scaling is linear.

    Images per step count every view (ml-jku/MAE-CT: batch x 2 views / 256 in stages 2 and 3).
    """
    opt = stage.optimizer
    scale = stage.global_batch_size * stage.views / opt.base_batch if opt.lr_scaling == "linear" else 1.0
    return {"fast": opt.fast_lr * scale, "slow": opt.slow_lr * scale}


def apply_lrs(optimizer, meta: list[tuple[str, float]], base: dict[str, float], factor: float) -> dict[str, float]:
    """Set each group's lr = base[group] * lr_scale * factor; returns the unscaled rate of each group."""
    for g, (group, scale) in zip(optimizer.param_groups, meta, strict=True):
        g["lr"] = base[group] * scale * factor
    return {f"lr_{k}": v * factor for k, v in base.items() if any(grp == k for grp, _ in meta)}
