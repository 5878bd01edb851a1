"""Public-checkpoint look-alikes made in the test (nothing is downloaded): a tiny transformers ViTMAE
and the same weights in facebookresearch/mae's and ml-jku/MAE-CT's layouts."""

from __future__ import annotations

from pathlib import Path

import torch

# vitforge's "test" row (32 wide, 4 deep, 2 heads; decoder 32 x 1 / 2), patch 4 on 16px images.
# layer_norm_eps 1e-6 as MAE's (the Hub's converted configs say 1e-12; the card notes that).
CONFIG = dict(
    hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=128, image_size=16, patch_size=4,
    decoder_hidden_size=32, decoder_num_hidden_layers=1, decoder_num_attention_heads=2, decoder_intermediate_size=128,
    layer_norm_eps=1e-6, mask_ratio=0.75,
)  # fmt: skip
N = (16 // 4) ** 2  # patches


def tiny_hf_mae(seed: int = 0, **config):
    """A random ``ViTMAEForPreTraining`` with MAE's fixed sin-cos positions, as every released one has.

    transformers' random init leaves both position tables at zero; its own ``initialize_weights``
    writes them (an independent check of the channel order). Every trained weight is perturbed so
    that LayerNorm gains and biases are not the trivial 1 and 0.
    """
    from transformers import ViTMAEConfig, ViTMAEForPreTraining

    torch.manual_seed(seed)
    model = ViTMAEForPreTraining(ViTMAEConfig(**(CONFIG | config))).eval()
    emb = model.vit.embeddings
    with torch.no_grad():
        emb.patch_embeddings.projection._is_hf_initialized = False
        emb.initialize_weights()
        model.decoder.initialize_weights(emb.patch_embeddings.num_patches)
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))
    return model


def official_mae_state(model) -> dict[str, torch.Tensor]:
    """The HF modules under facebookresearch/mae ``models_mae.py`` names (timm Block: fused qkv)."""
    v, d = model.vit, model.decoder
    sd = {
        "cls_token": v.embeddings.cls_token,
        "pos_embed": v.embeddings.position_embeddings,  # (1, 1 + N, D), class row zero
        "patch_embed.proj.weight": v.embeddings.patch_embeddings.projection.weight,
        "patch_embed.proj.bias": v.embeddings.patch_embeddings.projection.bias,
        "norm.weight": v.layernorm.weight,
        "norm.bias": v.layernorm.bias,
        "mask_token": d.mask_token,
        "decoder_embed.weight": d.decoder_embed.weight,
        "decoder_embed.bias": d.decoder_embed.bias,
        "decoder_pos_embed": d.decoder_pos_embed,
        "decoder_norm.weight": d.decoder_norm.weight,
        "decoder_norm.bias": d.decoder_norm.bias,
        "decoder_pred.weight": d.decoder_pred.weight,
        "decoder_pred.bias": d.decoder_pred.bias,
    }
    for prefix, layers in (("blocks", v.layers), ("decoder_blocks", d.decoder_layers)):
        for i, layer in enumerate(layers):
            a, p = layer.attention, f"{prefix}.{i}."
            for kind in ("weight", "bias"):
                sd[p + f"norm1.{kind}"] = getattr(layer.layernorm_before, kind)
                sd[p + f"attn.qkv.{kind}"] = torch.cat([getattr(x, kind) for x in (a.q_proj, a.k_proj, a.v_proj)])
                sd[p + f"attn.proj.{kind}"] = getattr(a.o_proj, kind)
                sd[p + f"norm2.{kind}"] = getattr(layer.layernorm_after, kind)
                sd[p + f"mlp.fc1.{kind}"] = getattr(layer.mlp.fc1, kind)
                sd[p + f"mlp.fc2.{kind}"] = getattr(layer.mlp.fc2, kind)
    return {k: t.detach().clone() for k, t in sd.items()}


def save_official_mae(model, path: Path, encoder_only: bool = False) -> Path:
    """``torch.save({"model": state_dict})`` as facebookresearch/mae's released checkpoints."""
    sd = official_mae_state(model)
    if encoder_only:
        sd = {k: t for k, t in sd.items() if not k.startswith("decoder") and k != "mask_token"}
    torch.save({"model": sd}, path)
    return path


def save_mae_ct(model, path: Path) -> Path:
    """ml-jku/MAE-CT's CheckpointWriter: ``{"state_dict", "ctor_kwargs"}`` of the encoder alone;
    its ``pos_embed`` buffer has no class-token row."""
    sd = {k: t for k, t in official_mae_state(model).items() if not k.startswith("decoder") and k != "mask_token"}
    sd["pos_embed"] = sd["pos_embed"][:, 1:]
    kwargs = {"kind": "vit.masked_encoder", "patch_size": 4, "embedding_dim": 32, "depth": 4, "attention_heads": 2}
    torch.save({"state_dict": sd, "ctor_kwargs": kwargs}, path)
    return path
