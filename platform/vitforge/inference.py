"""Everything that reads an export and runs it: the model builders, loading (safetensors and a
JSON card; never a pickle), preprocessing and embedding. Evaluation, Serve, MLflow's pyfunc and
the next stage use this; writing exports is ``train/export.py``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn

import vitforge.models as m
from vitforge.config import ModelSpec

CARD = "model_card.json"
FORMAT_VERSION = 1


def build_encoder(spec: ModelSpec) -> m.ViT:
    return m.vit(
        spec.size,
        spec.patch_size,
        img_size=spec.img_size,
        in_chans=spec.in_chans,
        grad_checkpointing=spec.grad_checkpointing,
        pos_order=spec.pos_embed_order,
        pos_grid=spec.pos_embed_grid,
    )


def build_image_text(spec: ModelSpec) -> m.ImageTextModel:
    t = m.TEXT_SIZES[spec.text_size or spec.size]
    vocab, eot = m.TOKENIZERS[spec.tokenizer]
    text = m.TextEncoder(t["dim"], t["depth"], t["heads"], spec.context_length, vocab, spec.grad_checkpointing, eot)
    return m.ImageTextModel(build_encoder(spec), text, spec.embed_dim, spec.pool)


def embed(model: nn.Module, imgs: torch.Tensor, pool: str = "cls") -> torch.Tensor:
    """Image embeddings: the projected, normalized ones of an image-text model, else pooled ViT features."""
    if isinstance(model, m.ImageTextModel):
        return model.encode_image(imgs)
    return model(imgs, pool=pool)


def read_card(export_dir: str | Path) -> dict[str, Any]:
    path = Path(export_dir) / CARD
    if not path.is_file():
        raise FileNotFoundError(f"{export_dir} is not a vitforge export: {CARD} is missing")
    card = json.loads(path.read_text())
    if card.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: unsupported format_version {card.get('format_version')!r}")
    return card


def load_part(module: nn.Module, export_dir: str | Path, part: str, strict: bool = True) -> nn.Module:
    """Load ``<part>.safetensors`` into ``module`` (shapes must match the card's architecture)."""
    path = Path(export_dir) / f"{part}.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"{export_dir} has no {part}.safetensors")
    module.load_state_dict(load_file(str(path)), strict=strict)
    return module


def load_encoder(export_dir: str | Path) -> tuple[m.ViT | m.ImageTextModel, dict[str, Any]]:
    """Rebuild the exported model from its card and load its weights. Returns (model, card), eval mode.

    Image exports give the :class:`ViT` encoder; image-text exports the full two-tower model.
    """
    card = read_card(export_dir)
    # Cards written before the order was recorded were trained with row-first positions.
    spec = ModelSpec.model_validate({"pos_embed_order": "yx", **card["model"]})
    if card["kind"] == "image_text":
        model = build_image_text(spec)
        load_part(model, export_dir, "model")
    else:
        model = build_encoder(spec)
        load_part(model, export_dir, "encoder")
    return model.eval(), card


def preprocess(images, card: dict[str, Any]) -> torch.Tensor:
    """Images as uint8 (N, H, W, 3) / float in [0, 1], or a list of RGB PIL images ->
    (N, 3, S, S) normalized with the model card's statistics, resized to its image size."""

    from vitforge.data.transforms import resized, to_float

    size = card["model"]["img_size"]
    norm = card["normalization"]
    if isinstance(images, list):
        images = [np.asarray(im.convert("RGB") if hasattr(im, "convert") else im) for im in images]
        tensors = [torch.from_numpy(np.ascontiguousarray(a)) for a in images]
    else:
        arr = np.asarray(images)
        if arr.ndim == 3:
            arr = arr[None]
        if arr.ndim != 4 or arr.shape[-1] != 3:
            raise ValueError(f"images must be (N, H, W, 3), got shape {arr.shape}")
        tensors = list(torch.from_numpy(np.ascontiguousarray(arr)))
    # A uint8 photo is resized as uint8, then made float: a 4096² image never exists as floats
    # (200 MB less, and as much again inside the resize).
    out = [to_float(resized(t.permute(2, 0, 1) if t.dtype == torch.uint8 else t.float().permute(2, 0, 1),
                            (size, size))) for t in tensors]  # fmt: skip
    batch = torch.stack(out)
    mean = torch.tensor(norm["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(norm["std"]).view(1, 3, 1, 1)
    return (batch - mean) / std


@torch.no_grad()
def encode_images(model: nn.Module, card: dict[str, Any], images) -> torch.Tensor:
    """L2-normalized image embeddings (N, D) of raw images, as Serve and the MLflow model return."""
    x = preprocess(images, card).to(next(model.parameters()).device)
    emb = embed(model, x, card["model"]["pool"]).float()
    return torch.nn.functional.normalize(emb, dim=-1)
