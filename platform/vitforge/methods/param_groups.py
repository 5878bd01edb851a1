"""TTUR parameter groups: a *fast* and a *slow* group, each with its own learning rate.

Every group dict carries ``group`` ("fast"/"slow") and ``lr_scale`` so a scheduler can set
``lr = base_lr[group] * lr_scale * schedule(step)``. Norms, biases (every tensor of one
dimension) and CLIP's logit scale get no weight decay; the class and mask tokens do, as in
facebookresearch/mae and ml-jku/MAE-CT (timm's ``add_weight_decay``). Frozen parameters are left out.
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn

from vitforge.models.image_text import ImageTextModel
from vitforge.models.mae import MAE
from vitforge.models.nnclr_head import NNCLRHead
from vitforge.models.vit import ViT

_NO_DECAY_NAMES = ("pos_embed", "logit_scale")


def _decays(name: str, ndim: int) -> bool:
    return ndim > 1 and not any(k in name for k in _NO_DECAY_NAMES)


def encoder_layer_id(name: str, depth: int) -> int:
    """0 for the embeddings, i + 1 for block i, depth + 1 for the final norm (BEiT/MAE's scheme)."""
    if name.startswith(("cls_token", "patch_embed", "pos_embed")):
        return 0
    if name.startswith("blocks."):
        return int(name.split(".")[1]) + 1
    return depth + 1


def _grouped(
    named: Iterable[tuple[str, nn.Parameter]], group: str, lr: float, weight_decay: float, scale_of
) -> list[dict]:
    buckets: dict[tuple[float, bool], list[nn.Parameter]] = {}
    for name, p in named:
        if p.requires_grad:
            buckets.setdefault((scale_of(name), _decays(name, p.ndim)), []).append(p)
    return [
        {
            "params": params,
            "group": group,
            "lr_scale": scale,
            "lr": lr * scale,
            "weight_decay": weight_decay if decay else 0.0,
        }
        for (scale, decay), params in sorted(buckets.items(), key=lambda kv: kv[0])
    ]


def ttur_param_groups(
    fast: Iterable[tuple[str, nn.Parameter]],
    slow_encoder: ViT | None,
    fast_lr: float,
    slow_lr: float,
    weight_decay: float = 0.05,
    layer_decay: float = 0.65,
    slow_extra: Iterable[nn.Module] = (),
    fast_weight_decay: float | None = None,
) -> list[dict]:
    """Named parameters ``fast`` at ``fast_lr``; the encoder at ``slow_lr`` with layer-wise lr decay.

    Block i of an encoder of depth L gets ``slow_lr * layer_decay ** (L + 1 - (i + 1))``; the
    embeddings get the smallest scale and the final norm the full rate. ``slow_extra`` modules
    join the slow group at full rate. ``fast_weight_decay`` (default: ``weight_decay``) is the
    fast group's own (MAE-CT's head: 1e-5 beside the encoder's 0.05).
    """
    groups: list[dict] = []
    fast_wd = weight_decay if fast_weight_decay is None else fast_weight_decay
    groups += _grouped(fast, "fast", fast_lr, fast_wd, lambda _: 1.0)
    if slow_encoder is not None:
        depth = slow_encoder.depth

        def scale(name: str) -> float:
            return layer_decay ** (depth + 1 - encoder_layer_id(name, depth))

        groups += _grouped(slow_encoder.named_parameters(), "slow", slow_lr, weight_decay, scale)
    for m in slow_extra:
        groups += _grouped(m.named_parameters(), "slow", slow_lr, weight_decay, lambda _: 1.0)
    return groups


def freeze_lower_blocks(encoder: ViT, num_frozen: int | None = None) -> int:
    """Freeze the embeddings and the lowest blocks (default: the lower half, as MAE-CT does).

    Returns the number of frozen blocks.
    """
    n = encoder.depth // 2 if num_frozen is None else num_frozen
    if not 0 <= n <= encoder.depth:
        raise ValueError(f"num_frozen must be in [0, {encoder.depth}], got {n}")
    for name, p in encoder.named_parameters():
        if encoder_layer_id(name, encoder.depth) <= n:
            p.requires_grad_(False)
    return n


def mae_param_groups(mae: MAE, fast_lr: float, slow_lr: float, weight_decay: float = 0.05) -> list[dict]:
    """MAE pretraining: decoder fast, encoder slow, no layer decay (everything trains from scratch)."""
    return ttur_param_groups(_outside(mae, "encoder."), mae.encoder, fast_lr, slow_lr, weight_decay, 1.0)


def mae_ct_param_groups(
    encoder: ViT,
    head: NNCLRHead,
    fast_lr: float,
    slow_lr: float,
    weight_decay: float = 0.05,
    layer_decay: float = 0.65,
    head_weight_decay: float = 1e-5,
) -> list[dict]:
    """MAE-CT: the NNCLR head fast (weight decay 1e-5), the (partly frozen) encoder slow with
    layer-wise decay (weight decay 0.05), as ml-jku/MAE-CT's stage-3 yaml."""
    return ttur_param_groups(
        head.named_parameters(), encoder, fast_lr, slow_lr, weight_decay, layer_decay, (), head_weight_decay
    )


def cloob_param_groups(
    model: ImageTextModel, fast_lr: float, slow_lr: float, weight_decay: float = 0.1, layer_decay: float = 1.0
) -> list[dict]:
    """CLOOB/CLIP split: the text tower, both projections and the logit scale are fast; the image
    encoder is slow (it is the tower being pretrained and served, and usually the larger one).
    """
    fast = _outside(model, "image_encoder.")
    return ttur_param_groups(fast, model.image_encoder, fast_lr, slow_lr, weight_decay, layer_decay)


def _outside(model: nn.Module, prefix: str) -> list[tuple[str, nn.Parameter]]:
    return [(n, p) for n, p in model.named_parameters() if not n.startswith(prefix)]
