"""``vitforge export --format hf``: a vitforge export's encoder as a Hugging Face ``ViTMAEModel`` folder.

Written without transformers (config.json, model.safetensors and preprocessor_config.json in the
names the Hub's ViTMAE checkpoints use, which transformers 4 and 5 both load), so that
``AutoModel.from_pretrained(out)`` gives the same features as vitforge:

- ``mask_ratio`` 0.0: every patch is kept. ViTMAE still orders the patch tokens by random noise
  (``outputs.ids_restore`` undoes it); pass ``noise=torch.arange(N).expand(B, N)`` to keep them in
  image order. The class token and the mean of the patch tokens do not depend on that order.
- Pool as vitforge does: ``config.vitforge["pool"]`` is ``"cls"`` (``last_hidden_state[:, 0]``) or
  ``"mean_patch"`` (``last_hidden_state[:, 1:].mean(1)``), both after ViTMAE's final LayerNorm.
- ``layer_norm_eps`` 1e-6 (vitforge's and MAE's); positions are vitforge's table, written out.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

import vitforge.models as m
from vitforge.config import ModelSpec
from vitforge.inference import build_encoder, load_part, read_card

POOLING_HELP = {
    "cls": "features = model(pixel_values).last_hidden_state[:, 0]",
    "mean_patch": "features = model(pixel_values).last_hidden_state[:, 1:].mean(dim=1)",
}


def export_hf(export_dir: str | Path, out: str | Path) -> Path:
    """Write ``out/{config.json, model.safetensors, preprocessor_config.json}`` from ``export_dir``'s encoder."""
    card = read_card(export_dir)
    spec = ModelSpec.model_validate({"pos_embed_order": "yx", **card["model"]})  # as inference.load_encoder
    encoder = load_part(build_encoder(spec), export_dir, "encoder").eval()
    dest = Path(out)
    dest.mkdir(parents=True, exist_ok=True)
    save_file(hf_state_dict(encoder), str(dest / "model.safetensors"), metadata={"format": "pt"})
    (dest / "config.json").write_text(json.dumps(hf_config(encoder, spec, card, export_dir), indent=2))
    (dest / "preprocessor_config.json").write_text(json.dumps(_preprocessor(spec, card), indent=2))
    return dest


def hf_state_dict(enc: m.ViT) -> dict[str, torch.Tensor]:
    """vitforge ViT -> ViTMAEModel tensors (Hub names): q, k, v split from the fused qkv."""
    sd = {k: v.detach().float() for k, v in enc.state_dict().items()}
    d = enc.dim
    # ViTMAE adds position_embeddings[:, 0] to the class token: zero, so the token is ours unchanged.
    pos = torch.cat([torch.zeros(1, 1, d), enc.pos_embed.float()], dim=1)  # (1, 1 + N, D)
    out = {
        "embeddings.cls_token": sd["cls_token"],
        "embeddings.position_embeddings": pos,
        "embeddings.patch_embeddings.projection.weight": sd["patch_embed.weight"],
        "embeddings.patch_embeddings.projection.bias": sd["patch_embed.bias"],
        "layernorm.weight": sd["norm.weight"],
        "layernorm.bias": sd["norm.bias"],
    }
    hf = {"norm1": "layernorm_before", "norm2": "layernorm_after", "attn.proj": "attention.output.dense",
          "mlp.0": "intermediate.dense", "mlp.2": "output.dense"}  # fmt: skip
    for i in range(enc.depth):
        pre, to = f"blocks.{i}.", f"encoder.layer.{i}."
        for kind in ("weight", "bias"):
            q, k, v = sd[f"{pre}attn.qkv.{kind}"].split(d, dim=0)  # rows [q; k; v]
            for name, t in (("query", q), ("key", k), ("value", v)):
                out[f"{to}attention.attention.{name}.{kind}"] = t
            for ours, theirs in hf.items():
                out[f"{to}{theirs}.{kind}"] = sd[f"{pre}{ours}.{kind}"]
    return {k: v.contiguous() for k, v in out.items()}


def hf_config(enc: m.ViT, spec: ModelSpec, card: dict[str, Any], export_dir: str | Path) -> dict[str, Any]:
    s = m.SIZES[spec.size]
    return {
        "architectures": ["ViTMAEModel"],
        "model_type": "vit_mae",
        "hidden_size": enc.dim,
        "num_hidden_layers": enc.depth,
        "num_attention_heads": enc.heads,
        "intermediate_size": int(enc.dim * s.mlp_ratio),
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
        "layer_norm_eps": 1e-6,
        "image_size": spec.img_size,
        "patch_size": spec.patch_size,
        "num_channels": spec.in_chans,
        "qkv_bias": True,
        "mask_ratio": 0.0,
        "decoder_hidden_size": s.decoder_dim,
        "decoder_num_hidden_layers": s.decoder_depth,
        "decoder_num_attention_heads": s.decoder_heads,
        "decoder_intermediate_size": int(s.decoder_dim * s.mlp_ratio),
        "norm_pix_loss": False,
        "vitforge": {
            "pool": spec.pool,
            "how_to_pool": POOLING_HELP[spec.pool],
            "patch_order": "ViTMAE shuffles patch tokens even at mask_ratio 0 (ids_restore undoes it);"
            " noise=torch.arange(N).expand(B, N) keeps image order; cls and mean pooling do not depend on it",
            "normalization": card["normalization"],
            "pos_embed_order": spec.pos_embed_order,
            "export": str(Path(export_dir).resolve()),
            "stage": card.get("stage"),
            "kind": card.get("kind"),
            # A CLOOB/CLIP export's encoder is its image tower: features before the projection.
            "part": "encoder" if card.get("kind") != "image_text" else "encoder (image tower, without the projection)",
        },
    }


def _preprocessor(spec: ModelSpec, card: dict[str, Any]) -> dict[str, Any]:
    """ViTImageProcessor: resize to the model's size (bicubic, as vitforge.inference.preprocess), /255, normalise."""
    return {
        "image_processor_type": "ViTImageProcessor",
        "do_resize": True,
        "size": {"height": spec.img_size, "width": spec.img_size},
        "resample": 3,  # PIL bicubic
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": card["normalization"]["mean"],
        "image_std": card["normalization"]["std"],
    }
