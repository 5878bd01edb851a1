"""CLOOB's objective (Fürst et al., 2022) and the CLIP InfoNCE baseline (Radford et al., 2021).

Embeddings are rows; the official code uses columns, hence no transposes here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vitforge.methods.distributed import gather_features


def hopfield_retrieval(state: torch.Tensor, memory: torch.Tensor, beta: float) -> torch.Tensor:
    """One update of a modern Hopfield network: ``softmax(beta * state @ memory.T) @ memory``.

    state (B, D), memory (M, D) -> (B, D), each row L2-normalized.
    """
    retrieved = torch.softmax(beta * state @ memory.T, dim=-1) @ memory
    return F.normalize(retrieved, dim=-1)


def infoloob_loss(x: torch.Tensor, y: torch.Tensor, inv_tau: float | torch.Tensor) -> torch.Tensor:
    """InfoLOOB with anchors x (B, D) and candidates y (B, D); the pair (i, i) is the positive.

    Leave-one-out: the positive is excluded from the denominator. Scaled by tau as the
    official implementation does, so the value is ``tau * mean_i(-k_ii + logsumexp_{j!=i} k_ij)``
    with ``k = inv_tau * x @ y.T``.
    """
    k = inv_tau * x @ y.T  # (B, B)
    eye = torch.eye(k.shape[0], dtype=torch.bool, device=k.device)
    positives = -k.diagonal().mean()
    negatives = torch.logsumexp(k.masked_fill(eye, float("-inf")), dim=1).mean()
    return (positives + negatives) / inv_tau


def cloob_loss(
    image_emb: torch.Tensor,
    text_emb: torch.Tensor,
    inv_tau: float | torch.Tensor = 30.0,
    beta: float = 8.0,
    rank: int = 0,
    world_size: int = 1,
) -> torch.Tensor:
    """``infoloob(U_x, U_y) + infoloob(V_y, V_x)`` on Hopfield retrievals.

    U: retrieved from the image memory (by image states x and text states y); V: from the text
    memory. Inputs (B, D) L2-normalized; across workers the whole global batch is the memory
    and every rank computes the same loss, its gradient flowing through its own slice.
    """
    x = gather_features(image_emb, rank, world_size)  # (W*B, D)
    y = gather_features(text_emb, rank, world_size)
    u_x, u_y = hopfield_retrieval(x, x, beta), hopfield_retrieval(y, x, beta)
    v_x, v_y = hopfield_retrieval(x, y, beta), hopfield_retrieval(y, y, beta)
    return infoloob_loss(u_x, u_y, inv_tau) + infoloob_loss(v_y, v_x, inv_tau)


def clip_loss(
    image_emb: torch.Tensor,
    text_emb: torch.Tensor,
    logit_scale: torch.Tensor | float,
    rank: int = 0,
    world_size: int = 1,
) -> torch.Tensor:
    """CLIP's InfoNCE: the mean of image->text and text->image cross-entropies.

    ``logit_scale`` multiplies the cosine similarities (CLIP passes ``exp`` of its learned log).
    """
    x = gather_features(image_emb, rank, world_size)
    y = gather_features(text_emb, rank, world_size)
    logits = logit_scale * x @ y.T  # (W*B, W*B)
    labels = torch.arange(logits.shape[0], device=logits.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))
