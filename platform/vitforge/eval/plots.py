"""Plots a person would rather look at: a 2-D embedding map and a confusion matrix (PNG)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def embedding_map_png(
    feats: torch.Tensor,
    labels: torch.Tensor,
    class_names: list[str] | None,
    out: str | Path,
    title: str,
    method: str = "pca",
    max_points: int = 2000,
    seed: int = 0,
) -> Path:
    """Features projected to 2-D (PCA, or t-SNE with ``method="tsne"``), coloured by class."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    plt = _plt()
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(feats))[:max_points]
    x, y = feats[idx].float().numpy(), labels[idx].numpy()
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    if method == "tsne":
        xy = TSNE(n_components=2, random_state=seed, init="pca", perplexity=min(30, len(x) - 1)).fit_transform(x)
    else:
        xy = PCA(n_components=2, random_state=seed).fit_transform(x)
    fig, ax = plt.subplots(figsize=(6, 5), dpi=110)
    cmap = plt.get_cmap("tab10" if y.max() < 10 else "tab20")
    for c in np.unique(y):
        m = y == c
        name = class_names[c] if class_names and c < len(class_names) else str(c)
        ax.scatter(xy[m, 0], xy[m, 1], s=6, color=cmap(int(c) % cmap.N), label=name, alpha=0.7)
    ax.set(title=f"{title} ({method.upper()})", xticks=[], yticks=[])
    ax.legend(markerscale=2.5, fontsize=7, loc="best", ncol=2)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return Path(out)


def confusion_png(
    y_true: torch.Tensor, y_pred: torch.Tensor, class_names: list[str] | None, out: str | Path, title: str
) -> Path:
    """Row-normalized confusion matrix with per-cell percentages."""
    from sklearn.metrics import confusion_matrix

    plt = _plt()
    n = int(max(y_true.max(), y_pred.max())) + 1
    cm = confusion_matrix(y_true.numpy(), y_pred.numpy(), labels=list(range(n))).astype(float)
    cm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(6, 5.2), dpi=110)
    im = ax.imshow(cm, cmap="Blues", vmin=0, vmax=1)
    names = [class_names[i] if class_names and i < len(class_names) else str(i) for i in range(n)]
    ax.set(xticks=range(n), yticks=range(n), xlabel="predicted", ylabel="true", title=title)
    ax.set_xticklabels(names, rotation=45, ha="right", fontsize=7)
    ax.set_yticklabels(names, fontsize=7)
    for i in range(n):
        for j in range(n):
            if cm[i, j] >= 0.01:
                ax.text(j, i, f"{100 * cm[i, j]:.0f}", ha="center", va="center", fontsize=6,
                        color="white" if cm[i, j] > 0.5 else "black")  # fmt: skip
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return Path(out)
