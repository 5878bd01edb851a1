"""Writing the one export format: safetensors weights + a JSON model card, per stage.

Reading it (evaluation, Serve, the next stage) is ``vitforge.inference``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

import vitforge.models as m
from vitforge.config import JobSpec
from vitforge.data.tokenizers import make_tokenizer
from vitforge.inference import CARD, FORMAT_VERSION


def probe_images(spec: JobSpec, n: int = 4) -> torch.Tensor:
    """A fixed, seed-independent input batch for checking that exports reproduce a model."""
    g = torch.Generator().manual_seed(1234)
    return torch.randn(n, spec.model.in_chans, spec.model.img_size, spec.model.img_size, generator=g)


def _tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    # Persistent state only (positions are recomputed); contiguous fp32 copies for safetensors.
    return {k: v.detach().float().contiguous().clone() for k, v in module.state_dict().items()}


def save_export(
    out_dir: str | Path,
    parts: dict[str, nn.Module],
    spec: JobSpec,
    stage: str,
    normalization: dict[str, list[float]],
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``<part>.safetensors`` for each part (encoder, head, text, ...) and the model card."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, module in parts.items():
        save_file(_tensors(module), str(out / f"{name}.safetensors"), metadata={"stage": stage})
    s = m.SIZES[spec.model.size]
    image_text = any(isinstance(mod, m.ImageTextModel) for mod in parts.values())
    card = {
        "format_version": FORMAT_VERSION,
        "kind": "image_text" if image_text else "image",
        "stage": stage,
        "parts": sorted(parts),
        "model": spec.model.model_dump(mode="json"),
        "architecture": {"dim": s.dim, "depth": s.depth, "heads": s.heads, "mlp_ratio": s.mlp_ratio},
        "normalization": normalization,
        "tokenizer": make_tokenizer(spec.model.tokenizer, spec.model.context_length).config() if image_text else None,
        "job": spec.name,
        "seed": spec.seed,
        **(extra or {}),
    }
    (out / CARD).write_text(json.dumps(card, indent=2))
    return out
