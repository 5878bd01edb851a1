"""Model FLOPs per image for MFU estimates (2 FLOPs per multiply-add; backward = 2x forward)."""

from __future__ import annotations

import torch

# Dense bf16 peak FLOP/s by device name (vendor datasheets, no sparsity).
PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12, "A10G": 125e12}


def transformer_flops(tokens: int, dim: int, depth: int, mlp_ratio: float = 4.0) -> float:
    """Forward FLOPs of ``depth`` pre-norm blocks on ``tokens`` tokens."""
    linear = 2 * tokens * (4 * dim * dim + 2 * mlp_ratio * dim * dim)  # qkv + proj + MLP
    attention = 2 * 2 * tokens * tokens * dim  # QK^T and AV
    return depth * (linear + attention)


def mae_train_flops_per_image(mae) -> float:
    """Forward + backward FLOPs per image of an MAE: the encoder on the kept tokens, the decoder on all."""
    enc = mae.encoder
    keep = round(enc.num_patches * (1 - mae.mask_ratio)) + enc.num_prefix_tokens
    dec = mae.decoder_embed.out_features
    fwd = transformer_flops(keep, enc.dim, enc.depth) + transformer_flops(
        enc.num_patches + enc.num_prefix_tokens, dec, len(mae.decoder_blocks)
    )
    return 3 * fwd


def train_flops_per_image(task) -> float:
    """Forward + backward FLOPs per image of a stage's task module."""
    from vitforge.train.tasks import ImageTextTask, MAETask, NNCLRTask

    if isinstance(task, MAETask):
        return mae_train_flops_per_image(task.mae)
    if isinstance(task, NNCLRTask):
        enc = task.encoder
        fwd = enc.flops_per_image()
        trainable = (enc.depth - task.frozen_blocks) / enc.depth if task.tune_encoder else 0.0
        return 2 * (fwd + 2 * fwd * trainable)  # two views
    if isinstance(task, ImageTextTask):
        img = task.model.image_encoder.flops_per_image()
        t = task.model.text_encoder
        return 3 * (img + transformer_flops(t.context_length, t.dim, t.depth))
    raise TypeError(f"no FLOPs model for {type(task).__name__}")


def peak_flops() -> float | None:
    """bf16 peak of the current GPU, or None (CPU, or an unknown device)."""
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    return next((v for k, v in PEAK_BF16.items() if k in name), None)
