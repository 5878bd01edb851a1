"""Stand-alone evaluation of an exported encoder (or an MLflow model URI) on a dataset."""

from __future__ import annotations

import json
import tempfile
import warnings
from pathlib import Path
from typing import Any

from vitforge.data import DataError, load_source
from vitforge.data.tokenizers import tokenizer_from_card
from vitforge.eval.cluster import cluster_scores
from vitforge.eval.features import extract_features
from vitforge.eval.knn import knn_accuracy, knn_predict
from vitforge.eval.linear import linear_probe
from vitforge.eval.plots import confusion_png, embedding_map_png
from vitforge.eval.zeroshot import DEFAULT_TEMPLATES, class_embeddings, zero_shot
from vitforge.inference import load_encoder
from vitforge.models.image_text import ImageTextModel
from vitforge.tracking import resolve_uri, use_tracking_uri


def resolve_export(model_ref: str) -> str:
    """An export folder as is; ``models:/NAME/VERSION`` or ``models:/NAME@alias`` downloaded
    from MLflow (the registered pyfunc carries the export as its ``export`` artifact)."""
    if not model_ref.startswith("models:/"):
        return model_ref

    import mlflow

    with use_tracking_uri(resolve_uri()):  # the embedded store by default, as training uses
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=model_ref, dst_path=tempfile.mkdtemp(prefix="vitforge-")
        )
    found = next(Path(local).rglob("model_card.json"), None)
    if found is None:
        raise FileNotFoundError(f"{model_ref} holds no vitforge export (no model_card.json)")
    return str(found.parent)


def evaluate(
    model_ref: str | None,
    source: str,
    train_split: str = "train",
    test_split: str = "test",
    ks: tuple[int, ...] = (10, 20),
    probe: bool = True,
    cluster: bool = True,
    out_dir: str | Path | None = None,
    card: dict[str, Any] | None = None,
    builtin_options: dict | None = None,
    class_names: list[str] | None = None,
    templates: list[str] | None = None,
    name: str = "model",
    encoder: Any = None,
) -> dict[str, float]:
    """k-NN (each k), linear probe, clustering and, for image-text models, zero-shot accuracy
    (``zeroshot_top1``, ``zeroshot_top5``): each of ``class_names`` (default: the source's own —
    its sub-folders, a built-in's, or those ``data prepare`` recorded) through every one of
    ``templates`` ("a photo of a {}."; the prompts' embeddings averaged, CLIP's ensembling).

    ``model_ref=None`` evaluates raw pixels with ``card`` giving size and normalization (the
    baseline), or ``encoder``, an in-memory model (a randomly initialised one, say), with ``card``.
    With ``out_dir``, writes ``metrics.json``, an embedding map and a confusion matrix.
    """
    model = encoder
    if model_ref is not None:
        model, card = load_encoder(resolve_export(model_ref))
    assert card is not None, "raw-pixel evaluation needs a card with img_size and normalization"
    # A built-in is drawn at the encoder's size unless the options say otherwise (a folder ignores them).
    opts = {"size": card["model"]["img_size"], **(builtin_options or {})}
    train = load_source(source, train_split, builtin_options=opts)
    test = load_source(source, test_split, builtin_options=opts)
    class_names = class_names or train.classes or test.classes or None
    tr_x, tr_y = extract_features(model, card, train)
    te_x, te_y = extract_features(model, card, test)
    out: dict[str, float] = {}
    for k in ks:
        out[f"knn{k}"] = knn_accuracy(tr_x, tr_y, te_x, te_y, k=k)
    if probe:
        out["linear_probe"] = linear_probe(tr_x, tr_y, te_x, te_y)["accuracy"]
    if cluster:
        out.update(cluster_scores(te_x, te_y))
    if isinstance(model, ImageTextModel) and not class_names:
        warnings.warn(f"zero-shot skipped: {source} names no classes (pass class_names / --class-names)", stacklevel=2)
    if isinstance(model, ImageTextModel) and class_names:
        if len(class_names) <= int(te_y.max()):
            raise DataError(
                f"{len(class_names)} class names for labels up to {int(te_y.max())}: name every class, in label order"
            )
        tok = tokenizer_from_card(card)
        zs = zero_shot(te_x, te_y, class_embeddings(model, tok, class_names, templates or DEFAULT_TEMPLATES))
        out.update({f"zeroshot_{k}": v for k, v in zs.items()})
    if out_dir:
        d = Path(out_dir)
        d.mkdir(parents=True, exist_ok=True)
        (d / "metrics.json").write_text(json.dumps(out, indent=2))
        embedding_map_png(te_x, te_y, class_names, d / f"embedding_map_{name}.png", f"{name}: test features")
        preds = knn_predict(tr_x, tr_y, te_x, te_y, k=max(ks))
        confusion_png(te_y, preds, class_names, d / f"confusion_{name}.png", f"{name}: k-NN (k={max(ks)})")
    return out


def raw_pixel_card(img_size: int, mean: list[float], std: list[float]) -> dict[str, Any]:
    """The minimal card that :func:`evaluate` needs for the raw-pixel baseline."""
    return {"model": {"img_size": img_size, "pool": "cls"}, "normalization": {"mean": mean, "std": std}}
