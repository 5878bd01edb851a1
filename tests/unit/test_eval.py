"""Evaluators on features whose answer is known: separated clusters ~100%, random ~chance."""

from pathlib import Path

import numpy as np
import torch

from vitforge.eval import cluster_scores, hungarian_accuracy, knn_accuracy, linear_probe, zero_shot
from vitforge.eval.plots import confusion_png, embedding_map_png


def blobs(n_per: int, classes: int, dim: int, spread: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, dim, generator=g) * 5
    y = torch.arange(classes).repeat_interleave(n_per)
    return centres[y] + spread * torch.randn(len(y), dim, generator=g), y


def test_knn_separated_vs_random() -> None:
    tr_x, tr_y = blobs(50, 5, 16, 0.5, 0)
    te_x, te_y = blobs(20, 5, 16, 0.5, 0)
    assert knn_accuracy(tr_x, tr_y, te_x + 0.1, te_y, k=10) == 1.0
    rnd_tr, rnd_te = torch.randn(500, 16), torch.randn(200, 16)
    acc = knn_accuracy(rnd_tr, torch.randint(0, 5, (500,)), rnd_te, torch.randint(0, 5, (200,)), k=20)
    assert 0.1 < acc < 0.32  # chance is 0.2
    assert knn_accuracy(tr_x, tr_y, te_x, te_y, k=10, temperature=None) == 1.0


def test_linear_probe_separated_vs_random() -> None:
    tr_x, tr_y = blobs(60, 4, 8, 1.0, 1)
    te_x, te_y = blobs(30, 4, 8, 1.0, 1)
    out = linear_probe(tr_x, tr_y, te_x + 0.05, te_y, epochs=20)
    assert out["accuracy"] > 0.97 and out["best_lr"] in (0.01, 0.1, 1.0)
    rnd = linear_probe(
        torch.randn(300, 8), torch.randint(0, 4, (300,)), torch.randn(200, 8), torch.randint(0, 4, (200,)), epochs=10
    )
    assert rnd["accuracy"] < 0.4  # chance is 0.25


def test_clustering_scores() -> None:
    x, y = blobs(40, 6, 16, 0.3, 2)
    s = cluster_scores(x, y)
    assert s["cluster_accuracy"] > 0.99 and s["nmi"] > 0.99 and s["ari"] > 0.99
    r = cluster_scores(torch.randn(300, 16), torch.randint(0, 6, (300,)))
    assert r["nmi"] < 0.1 and r["ari"] < 0.05
    # Hungarian matching: a relabelled perfect clustering is 100%.
    assert hungarian_accuracy(np.array([0, 0, 1, 1, 2]), np.array([2, 2, 0, 0, 1])) == 1.0
    assert hungarian_accuracy(np.array([0, 1, 0, 1]), np.array([0, 0, 0, 0])) == 0.5


def test_zero_shot_toy_pairing() -> None:
    classes = torch.nn.functional.normalize(torch.randn(6, 8), dim=1)
    labels = torch.randint(0, 6, (50,))
    images = classes[labels] + 0.05 * torch.randn(50, 8)
    out = zero_shot(images, labels, classes, topk=(1, 5))
    assert out["top1"] == 1.0 and out["top5"] == 1.0
    shuffled = zero_shot(images, labels, classes.roll(1, dims=0), topk=(1, 5))
    assert shuffled["top1"] == 0.0 and shuffled["top5"] > 0.5


def test_plots_are_pngs(tmp_path: Path) -> None:
    x, y = blobs(30, 3, 8, 0.5, 3)
    a = embedding_map_png(x, y, ["a", "b", "c"], tmp_path / "map.png", "blobs")
    b = confusion_png(y, y.roll(1), ["a", "b", "c"], tmp_path / "cm.png", "shifted")
    for p in (a, b):
        assert p.read_bytes()[:4] == b"\x89PNG" and p.stat().st_size > 5000
