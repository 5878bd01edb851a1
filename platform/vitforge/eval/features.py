"""Frozen features of a dataset, batched, on GPU when present; across Ray workers for large sets."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from vitforge.data import BatchMaker, Source, build_view, iter_batches
from vitforge.inference import embed


def eval_maker(card: dict[str, Any], source: str = "eval") -> BatchMaker:
    """Resize + normalize with the model card's statistics: no augmentation."""
    view = build_view(
        card["model"]["img_size"], card["normalization"]["mean"], card["normalization"]["std"], train=False
    )
    return BatchMaker([view], source)


@torch.no_grad()
def extract_features(
    model: nn.Module | None,
    card: dict[str, Any],
    ds: Source,
    batch_size: int = 256,
    device: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(features (N, D), labels (N,)) in dataset order. ``model=None`` gives raw pixels (the
    baseline): the normalized eval view, flattened."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if model is not None:
        model = model.to(device).eval()
    feats, labels = [], []
    for batch in iter_batches(ds, eval_maker(card), batch_size, shuffle=False):
        x = batch["image"].to(device)
        f = x.flatten(1) if model is None else embed(model, x, card["model"]["pool"])
        feats.append(f.float().cpu())
        labels.append(batch["label"])
    return torch.cat(feats), torch.cat(labels)
