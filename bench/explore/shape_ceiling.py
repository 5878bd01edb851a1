"""Diagnostic: how well the CLOOB half's image tower can read the shape kind of the built-in
``shapes`` at all, trained *supervised* on the kind label (cross-entropy, a linear head) for the
CLOOB half's number of steps. Zero-shot on the kind cannot be above what the tower learns with
labels in the same budget.

    python -m bench.explore.shape_ceiling [--size test] [--patch 4] [--lr 1e-3] [--steps 750] [--n 4000]

Prints held-out accuracy every 750 steps (chance 1 / len(SHAPES)). Batch 128, AdamW, weight decay 0.1,
images normalized by the training split's channel mean and std; no augmentation.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from vitforge import models as m
from vitforge.data.builtin import SHAPES, shapes


def _tensors(records: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.tensor(np.stack([np.asarray(r["image"]) for r in records])).permute(0, 3, 1, 2).float() / 255
    return x, torch.tensor([r["label"] for r in records])  # (N, 3, S, S), (N,)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="test", help="ViT size (the CLOOB half's: test)")
    ap.add_argument("--patch", type=int, default=4)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--steps", type=int, default=750, help="the CLOOB half's: 30 epochs x 25 steps")
    ap.add_argument("--n", type=int, default=4000, help="drawings (80%% train), as the quickstart's builtin_options")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    data = shapes(n=a.n, seed=a.seed)
    (xtr, ytr), (xte, yte) = _tensors(data["train"]), _tensors(data["test"])
    mean, std = xtr.mean((0, 2, 3), keepdim=True), xtr.std((0, 2, 3), keepdim=True)
    xtr, xte = (xtr - mean) / std, (xte - mean) / std
    torch.manual_seed(a.seed)
    enc = m.vit(a.size, a.patch, img_size=xtr.shape[-1])
    head = nn.Linear(enc(xtr[:2]).shape[-1], len(SHAPES))
    opt = torch.optim.AdamW([*enc.parameters(), *head.parameters()], lr=a.lr, weight_decay=0.1)
    gen, t0 = torch.Generator().manual_seed(a.seed), time.perf_counter()
    for step in range(1, a.steps + 1):
        i = torch.randint(len(xtr), (128,), generator=gen)
        loss = F.cross_entropy(head(enc(xtr[i])), ytr[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 750 == 0 or step == a.steps:
            with torch.no_grad():
                acc = (head(enc(xte)).argmax(1) == yte).float().mean().item()
            took = time.perf_counter() - t0
            print(f"step {step}: train loss {loss.item():.3f}, held-out kind accuracy {acc:.3f} ({took:.0f}s)")


if __name__ == "__main__":
    main()
