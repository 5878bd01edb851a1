"""Every checkpoint layout renamed to one: the official MAE's (facebookresearch/mae ``models_mae.py``,
timm's ViT names), which ``hub/convert.py`` maps onto vitforge's modules.

    cls_token (1, 1, D)        pos_embed (1, 1+N, D) or (1, N, D) (MAE-CT keeps no class row)
    patch_embed.proj.*         blocks.i.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}.*
    norm.*                     mask_token, decoder_embed.*, decoder_pos_embed, decoder_blocks.i.*,
                               decoder_norm.*, decoder_pred.*
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch

from vitforge.hub.read import CheckpointError, Opened

# Tensors that are not the encoder or the MAE decoder: dropped, and listed in the model card.
DROPPED = {
    r"(vit\.)?pooler\..*": "ViTModel's dense+tanh pooler (vitforge pools the class token or the patch mean)",
    r"classifier\..*|head\..*": "a classification head",
    r"(vit\.)?embeddings\.mask_token": "ViTModel's masked-image-modelling token",
}
# A fine-tuned MAE with global pooling normalises after pooling: not vitforge's ViT.
REFUSED = {
    r"fc_norm\..*": "a fine-tuned checkpoint with global pooling (fc_norm after the patch mean, no final norm):"
    " vitforge's ViT normalises every token before pooling; import the pre-trained checkpoint instead",
}

_HF_TOP = [
    (r"(?:vit\.)?embeddings\.cls_token", "cls_token"),
    (r"(?:vit\.)?embeddings\.position_embeddings", "pos_embed"),
    (r"(?:vit\.)?embeddings\.patch_embeddings\.projection\.(weight|bias)", r"patch_embed.proj.\1"),
    (r"(?:vit\.)?layernorm\.(weight|bias)", r"norm.\1"),
    (r"(?:vit\.)?(?:encoder\.layer|layers)\.(\d+)\.(.+)", r"blocks.\1.\2"),
    # transformers 5 saves the decoder's layers as decoder_encoder.layer (its renaming, reversed).
    (r"decoder\.decoder_(?:layers|encoder\.layer)\.(\d+)\.(.+)", r"decoder_blocks.\1.\2"),
    (r"decoder\.(mask_token|decoder_pos_embed|decoder_(?:embed|norm|pred)\.(?:weight|bias))", r"\1"),
]
# Inside a layer: transformers 4 names (on the Hub) and transformers 5 names, to timm's.
_HF_INNER = [
    (r"attention\.(?:attention\.query|q_proj)\.", "attn.q."),
    (r"attention\.(?:attention\.key|k_proj)\.", "attn.k."),
    (r"attention\.(?:attention\.value|v_proj)\.", "attn.v."),
    (r"attention\.(?:output\.dense|o_proj)\.", "attn.proj."),
    (r"layernorm_before\.", "norm1."),
    (r"layernorm_after\.", "norm2."),
    (r"(?:intermediate\.dense|mlp\.fc1)\.", "mlp.fc1."),
    (r"(?:output\.dense|mlp\.fc2)\.", "mlp.fc2."),
]


@dataclass
class Renamed:
    tensors: dict[str, torch.Tensor]  # official MAE names
    origin: dict[str, str]  # MAE name -> the source's name (for messages)
    dropped: dict[str, str] = field(default_factory=dict)  # source name -> why


def to_mae_names(opened: Opened) -> Renamed:
    """The source's tensors under official MAE names; refused or dropped ones sorted out first."""
    kept, dropped = {}, {}
    for name, t in opened.tensors.items():
        if why := _match(REFUSED, name):
            raise CheckpointError(f"{name}: {why}")
        if why := _match(DROPPED, name):
            dropped[name] = why
        else:
            kept[name] = t
    if opened.layout != "hf":
        return Renamed(kept, {k: k for k in kept}, dropped)
    out, origin = {}, {}
    for name, t in kept.items():
        new = _hf_name(name)
        out[new], origin[new] = t, name
    _fuse_qkv(out, origin, bool(opened.config.get("qkv_bias", True)))
    return Renamed(out, origin, dropped)


def _match(table: dict[str, str], name: str) -> str | None:
    return next((why for pattern, why in table.items() if re.fullmatch(pattern, name)), None)


def _hf_name(name: str) -> str:
    for pattern, repl in _HF_TOP:
        if re.fullmatch(pattern, name):
            new = re.sub(pattern, repl, name)
            if new.startswith(("blocks.", "decoder_blocks.")):
                head, idx, inner = new.split(".", 2)
                return f"{head}.{idx}.{_inner(inner, name)}"
            return new
    return name  # left as it is: reported as unexpected with its own name


def _inner(inner: str, full: str) -> str:
    for pattern, repl in _HF_INNER:
        if re.match(pattern, inner):
            return re.sub(pattern, repl, inner, count=1)
    return f"<unknown:{full}>"


def _fuse_qkv(out: dict[str, torch.Tensor], origin: dict[str, str], qkv_bias: bool) -> None:
    """HF's separate query/key/value -> timm's fused qkv: rows [q; k; v], heads contiguous in each."""
    for q in [k for k in out if ".attn.q." in k]:
        k_, v_, fused = q.replace(".q.", ".k."), q.replace(".q.", ".v."), q.replace(".q.", ".qkv.")
        missing = [n for n in (k_, v_) if n not in out]
        if missing:
            raise CheckpointError(f"{origin[q]} has no matching {' and '.join(missing)} (query, key and value)")
        names = [origin[n] for n in (q, k_, v_)]
        out[fused] = torch.cat([out.pop(q), out.pop(k_), out.pop(v_)], dim=0)  # (3D, D) or (3D,)
        origin[fused] = " + ".join(names)
        for n in (q, k_, v_):
            origin.pop(n)
    if not qkv_bias:  # config.qkv_bias false: vitforge's qkv has a bias, which is then zero
        for w in [k for k in out if k.endswith(".attn.qkv.weight")]:
            b = w.replace(".weight", ".bias")
            out[b], origin[b] = torch.zeros(out[w].shape[0], dtype=out[w].dtype), "(zero: qkv_bias false)"
