"""NNCLR's objective as MAE-CT uses it (Dwibedi et al., 2021; Lehner et al., 2023)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vitforge.methods.distributed import gather_with_grad


def nnclr_loss(
    pred: torch.Tensor, nn: torch.Tensor, temperature: float, rank: int = 0, world_size: int = 1
) -> torch.Tensor:
    """Cross-entropy of ``normalize(nn) @ normalize(pred).T / temperature`` against the diagonal.

    pred (B, D) carries the gradient; nn (B, D), the neighbours from the queue, does not. Across
    workers each rank scores its own anchors (nn rows) against every rank's predictions, row i's
    positive being column ``rank * B + i``; the predictions are gathered *with* gradient, so the
    push that other ranks' anchors give this rank's predictions as negatives is kept. Summed over
    ranks, the gradient is that of the whole batch's loss on one process (times the world size,
    which data parallelism's mean over ranks divides out).
    """
    nn = F.normalize(nn.detach(), dim=-1)
    pred = F.normalize(pred, dim=-1)
    all_pred = gather_with_grad(pred, rank, world_size)  # (W*B, D)
    logits = nn @ all_pred.T / temperature  # (B, W*B)
    labels = torch.arange(pred.shape[0], device=pred.device) + rank * pred.shape[0]
    return F.cross_entropy(logits, labels)


def symmetric_nnclr_loss(
    pred1: torch.Tensor,
    pred2: torch.Tensor,
    nn1: torch.Tensor,
    nn2: torch.Tensor,
    temperature: float,
    rank: int = 0,
    world_size: int = 1,
) -> torch.Tensor:
    """Average over the two views: view 1's neighbour predicts view 2, and the reverse."""
    return 0.5 * (
        nnclr_loss(pred2, nn1, temperature, rank, world_size) + nnclr_loss(pred1, nn2, temperature, rank, world_size)
    )
