"""Search galleries: embeddings of a dataset (safetensors) plus labels and captions (JSON)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch.nn.functional as F
from safetensors.torch import load_file, save_file


def build_gallery(export_dir: str, source: str, split: str = "train", out: str | Path = "gallery", **load_kw) -> Path:
    """Embed every image of ``source``/``split`` with the exported model; writes
    ``OUT.safetensors`` (``embeddings`` (M, D), L2-normalized) and ``OUT.json``."""
    from vitforge.data import iter_rows, load_source
    from vitforge.eval.features import extract_features
    from vitforge.inference import load_encoder

    model, card = load_encoder(export_dir)
    opts = {"size": card["model"]["img_size"], **(load_kw.pop("builtin_options", None) or {})}
    ds = load_source(source, split, builtin_options=opts, **load_kw)
    feats, labels = extract_features(model, card, ds)  # image-text models: the joint space
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file({"embeddings": F.normalize(feats.float(), dim=1).contiguous()}, str(out.with_suffix(".safetensors")))
    meta = {
        "source": source,
        "split": split,
        "model": str(export_dir),
        "labels": [int(v) if v >= 0 else None for v in labels.tolist()],
        "captions": [c for rows in iter_rows(ds) for c in rows["caption"]],
    }
    out.with_suffix(".json").write_text(json.dumps(meta))
    return out.with_suffix(".safetensors")


def load_gallery(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    emb = load_file(str(p.with_suffix(".safetensors")))["embeddings"]
    meta = json.loads(p.with_suffix(".json").read_text())
    if len(meta["labels"]) != emb.shape[0]:
        raise ValueError(f"gallery {p}: {emb.shape[0]} embeddings but {len(meta['labels'])} metadata rows")
    return {"embeddings": emb, "meta": meta}
