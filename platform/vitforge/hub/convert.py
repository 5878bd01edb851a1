"""Official MAE names -> vitforge's modules, loaded all-or-nothing.

vitforge's ViT is timm's layout (fused qkv, pre-norm blocks, LayerNorm eps 1e-6, a class token)
with three differences: the patch conv is ``patch_embed`` (not ``.proj``), the MLP is a
``Sequential`` (``mlp.0``, ``mlp.2``), and positions are a recomputed buffer, so the checkpoint's
table is checked (``geometry.position_order``), not loaded, and its class row (zero in MAE) is
added to ``cls_token``, which is the same sum the checkpoint's model computes.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from vitforge.hub.read import CheckpointError

_ENCODER = re.compile(r"cls_token|patch_embed\..*|blocks\..*|norm\..*")
_DECODER = re.compile(r"mask_token|decoder_(embed|norm|pred)\..*|decoder_blocks\..*")
_RENAMES = [(r"^patch_embed\.proj\.", "patch_embed."), (r"\.mlp\.fc1\.", ".mlp.0."), (r"\.mlp\.fc2\.", ".mlp.2.")]


def to_vitforge(tensors: dict[str, torch.Tensor], origin: dict[str, str], cls_row: bool) -> tuple[dict, dict, dict]:
    """(encoder state, decoder state, vitforge name -> source name); positions left out (checked elsewhere)."""
    enc, dec, src = {}, {}, {}
    for name, t in tensors.items():
        if name in ("pos_embed", "decoder_pos_embed"):
            continue
        new = name
        for pattern, repl in _RENAMES:
            new = re.sub(pattern, repl, new)
        if _ENCODER.fullmatch(name):
            enc[new] = t.float()
        elif _DECODER.fullmatch(name):
            dec[new] = t.float()
        else:
            raise CheckpointError(f"unexpected tensor {origin.get(name, name)} {tuple(t.shape)}: not part of a ViT"
                                  " encoder or an MAE decoder; vitforge imports nothing partially")  # fmt: skip
        src[new] = origin.get(name, name)
    if cls_row:  # the class token's position: added to the token, as the checkpoint's forward does
        enc["cls_token"] = enc["cls_token"] + tensors["pos_embed"][:, :1].float()
    return enc, dec, src


def load_checked(module: nn.Module, state: dict[str, torch.Tensor], src: dict[str, str], what: str) -> None:
    """``load_state_dict(strict=True)``, with one error naming every missing, unexpected or misshapen tensor."""
    expected = module.state_dict()
    problems = [f"missing {_mae_name(k)} {tuple(v.shape)}" for k, v in expected.items() if k not in state]
    problems += [f"unexpected tensor {src.get(k, k)} {tuple(v.shape)}" for k, v in state.items() if k not in expected]
    problems += [
        f"{src.get(k, k)} has shape {tuple(v.shape)}, {what} expects {tuple(expected[k].shape)}"
        for k, v in state.items()
        if k in expected and v.shape != expected[k].shape
    ]
    if problems:
        more = f" (and {len(problems) - 6} more)" if len(problems) > 6 else ""
        raise CheckpointError(f"the checkpoint does not fit {what}: {'; '.join(problems[:6])}{more}")
    module.load_state_dict(state, strict=True)


def _mae_name(name: str) -> str:
    """A vitforge name as the official MAE names it (for messages about tensors the source lacks)."""
    name = re.sub(r"^(encoder\.)?patch_embed\.", r"\1patch_embed.proj.", name)
    return re.sub(r"\.mlp\.([02])\.", lambda m: ".mlp.fc1." if m.group(1) == "0" else ".mlp.fc2.", name).removeprefix(
        "encoder."
    )
