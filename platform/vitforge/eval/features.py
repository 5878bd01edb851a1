"""Frozen features of a dataset, batched, on GPU when present; across Ray workers for large sets."""

from __future__ import annotations

from typing import Any

import datasets
import numpy as np
import torch
from torch import nn

from vitforge.data import BatchMaker, build_view, iter_batches
from vitforge.train.export import embed


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
    ds: datasets.Dataset,
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


class _Embedder:
    """A Ray Data actor: loads the export once, embeds decoded batches."""

    def __init__(self, export_dir: str) -> None:
        from vitforge.train.export import load_encoder

        self.model, self.card = load_encoder(export_dir)
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model.to(self.device)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with torch.no_grad():
            x = torch.from_numpy(batch["image"]).to(self.device)
            f = embed(self.model, x, self.card["model"]["pool"]).float().cpu().numpy()
        return {"features": f, "label": batch["label"], "index": batch["index"]}


def extract_features_ray(
    export_dir: str,
    card: dict[str, Any],
    ds: datasets.Dataset,
    num_workers: int = 2,
    batch_size: int = 256,
    use_gpu: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The same features computed by ``num_workers`` Ray actors (decode in tasks, embed in actors)."""
    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = False
    rds = ray.data.from_huggingface(ds).map_batches(eval_maker(card), batch_size=batch_size, batch_format="numpy")
    out = rds.map_batches(
        _Embedder,
        fn_constructor_kwargs={"export_dir": export_dir},
        batch_size=batch_size,
        batch_format="numpy",
        concurrency=num_workers,
        num_gpus=1 if use_gpu else 0,
    ).to_pandas()
    out = out.sort_values("index")
    return torch.from_numpy(np.stack(out["features"].to_numpy())), torch.from_numpy(out["label"].to_numpy())
