"""k-NN classification on frozen features (cosine similarity), as in DINO / MAE-CT."""

from __future__ import annotations

import torch
import torch.nn.functional as F


@torch.no_grad()
def knn_predict(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    k: int = 20,
    temperature: float | None = 0.07,
    chunk: int = 1024,
) -> torch.Tensor:
    """k-NN predictions (N_test,). Votes are weighted by ``exp(sim / temperature)`` when a
    temperature is given (DINO's weighting), else each neighbour counts one."""
    train_x, test_x = F.normalize(train_x.float(), dim=1), F.normalize(test_x.float(), dim=1)
    n_classes = int(max(train_y.max(), test_y.max())) + 1
    k = min(k, len(train_x))
    preds = []
    for i in range(0, len(test_x), chunk):
        sim = test_x[i : i + chunk] @ train_x.T  # (b, N)
        top_sim, top_idx = sim.topk(k, dim=1)
        weights = (top_sim / temperature).exp() if temperature else torch.ones_like(top_sim)
        votes = torch.zeros(len(top_idx), n_classes).scatter_add_(1, train_y[top_idx], weights)
        preds.append(votes.argmax(1))
    return torch.cat(preds)


def knn_accuracy(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    k: int = 20,
    temperature: float | None = 0.07,
) -> float:
    """Top-1 accuracy of :func:`knn_predict`."""
    return float((knn_predict(train_x, train_y, test_x, test_y, k, temperature) == test_y).float().mean())
