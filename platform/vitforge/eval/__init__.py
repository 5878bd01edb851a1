"""Representation quality: k-NN, linear probe, clustering, zero-shot, with plots."""

from vitforge.eval.cluster import cluster_scores, hungarian_accuracy
from vitforge.eval.features import extract_features
from vitforge.eval.knn import knn_accuracy
from vitforge.eval.linear import linear_probe
from vitforge.eval.zeroshot import zero_shot

__all__ = [
    "cluster_scores",
    "extract_features",
    "hungarian_accuracy",
    "knn_accuracy",
    "linear_probe",
    "zero_shot",
]
