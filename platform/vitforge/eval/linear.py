"""Linear probe on frozen features: BatchNorm without affine + a linear layer (MAE's recipe),
SGD with momentum and a cosine schedule, a small learning-rate sweep."""

from __future__ import annotations

import math

import torch
from torch import nn


def _train_probe(
    train_x: torch.Tensor, train_y: torch.Tensor, n_classes: int, lr: float, epochs: int, batch: int, seed: int
) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    probe = nn.Sequential(
        nn.BatchNorm1d(train_x.shape[1], affine=False, eps=1e-6), nn.Linear(train_x.shape[1], n_classes)
    )
    nn.init.trunc_normal_(probe[1].weight, std=0.01)
    nn.init.zeros_(probe[1].bias)
    opt = torch.optim.SGD(probe.parameters(), lr=lr, momentum=0.9, weight_decay=0.0)
    steps_per_epoch = math.ceil(len(train_x) / batch)
    total = epochs * steps_per_epoch
    step = 0
    for _ in range(epochs):
        perm = torch.randperm(len(train_x), generator=g)
        for j in range(0, len(train_x), batch):
            idx = perm[j : j + batch]
            if len(idx) < 2:
                continue
            for group in opt.param_groups:
                group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / total))
            loss = nn.functional.cross_entropy(probe(train_x[idx]), train_y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
    return probe.eval()


def linear_probe(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    lrs: tuple[float, ...] = (0.01, 0.1, 1.0),
    epochs: int = 30,
    batch: int = 256,
    seed: int = 0,
    val_fraction: float = 0.1,
) -> dict[str, float]:
    """Sweep ``lrs`` on a held-out part of the training features, retrain with the best on all of
    them, and report top-1 on the test features: ``{"accuracy", "best_lr"}``."""
    train_x, test_x = train_x.float(), test_x.float()
    n_classes = int(max(train_y.max(), test_y.max())) + 1
    perm = torch.randperm(len(train_x), generator=torch.Generator().manual_seed(seed))
    n_val = max(int(len(train_x) * val_fraction), 1)
    val, fit = perm[:n_val], perm[n_val:]
    scores = {}
    for lr in lrs:
        probe = _train_probe(train_x[fit], train_y[fit], n_classes, lr, epochs, batch, seed)
        with torch.no_grad():
            scores[lr] = float((probe(train_x[val]).argmax(1) == train_y[val]).float().mean())
    best = max(scores, key=scores.get)
    probe = _train_probe(train_x, train_y, n_classes, best, epochs, batch, seed)
    with torch.no_grad():
        acc = float((probe(test_x).argmax(1) == test_y).float().mean())
    return {"accuracy": acc, "best_lr": best}
