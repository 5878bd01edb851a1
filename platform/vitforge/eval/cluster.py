"""Clustering accuracy: k-means with the number of classes, Hungarian matching, NMI and ARI."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def hungarian_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Accuracy under the best one-to-one mapping of cluster ids to labels."""
    from scipy.optimize import linear_sum_assignment

    n = int(max(y_true.max(), y_pred.max())) + 1
    counts = np.zeros((n, n), dtype=np.int64)
    np.add.at(counts, (y_pred, y_true), 1)
    rows, cols = linear_sum_assignment(counts, maximize=True)
    return float(counts[rows, cols].sum() / len(y_true))


def cluster_scores(x: torch.Tensor, y: torch.Tensor, n_clusters: int | None = None, seed: int = 0) -> dict[str, float]:
    """k-means (k-means++, 10 restarts) on L2-normalized features; accuracy, NMI, ARI."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    feats = F.normalize(x.float(), dim=1).numpy()
    labels = y.numpy()
    k = n_clusters or len(np.unique(labels))
    pred = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(feats)
    return {
        "cluster_accuracy": hungarian_accuracy(labels, pred),
        "nmi": float(normalized_mutual_info_score(labels, pred)),
        "ari": float(adjusted_rand_score(labels, pred)),
    }
