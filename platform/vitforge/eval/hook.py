"""Evaluation during training: k-NN accuracy of the live encoder at each epoch end."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from vitforge.config import JobSpec
from vitforge.data import Source


def knn_hook(
    spec: JobSpec,
    normalization: dict,
    train: Source,
    test: Source,
    max_train: int = 1000,
    max_test: int = 500,
    k: int = 20,
) -> Callable:
    """A ``WorkerContext.eval_fn``: every rank embeds the same small labelled sets (the first rows
    of ``train`` and ``test``, so ZeRO-3's collective forward works) and returns ``{"knn20": accuracy}``."""
    from vitforge.data import BatchMaker, build_view, iter_batches
    from vitforge.eval.knn import knn_accuracy
    from vitforge.inference import embed

    limits = {id(train): max_train, id(test): max_test}
    maker = BatchMaker([build_view(spec.model.img_size, normalization["mean"], normalization["std"], train=False)])

    @torch.no_grad()
    def features(task: nn.Module, ds) -> tuple[torch.Tensor, torch.Tensor]:
        parts = task.exports()
        model = parts.get("model", parts["encoder"])
        device = next(task.parameters()).device
        f, y = [], []
        for b in iter_batches(ds, maker, 256, shuffle=False, limit=limits[id(ds)]):
            f.append(embed(model, b["image"].to(device), spec.model.pool).float().cpu())
            y.append(b["label"])
        return torch.cat(f), torch.cat(y)

    def run(task: nn.Module) -> dict[str, float]:
        was_training = task.training
        task.eval()
        tr, te = features(task, train), features(task, test)
        task.train(was_training)
        return {f"knn{k}": knn_accuracy(*tr, *te, k=k)}

    return run
