"""A checkpoint's geometry (size row, patch, grid) and its positions, read from its tensors.

Width and depth come from the tensors and must name a row of ``SIZES``; heads (which no tensor
shape shows) from the HF config or MAE-CT's ctor_kwargs when given, else the row's. Positions must
be the fixed 2-D sin-cos table vitforge's ViT computes (in either channel order).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import torch

from vitforge.hub.names import Renamed
from vitforge.hub.read import CheckpointError
from vitforge.models.vit import POS_ORDERS, SIZES, sincos_pos_embed_2d


@dataclass(frozen=True)
class Geometry:
    size: str  # a row of SIZES
    patch_size: int
    grid: int  # patches per side the positions were trained on
    in_chans: int
    has_decoder: bool
    cls_row: bool  # pos_embed holds a class-token row (official MAE, HF) or not (MAE-CT)

    @property
    def img_size(self) -> int:
        return self.grid * self.patch_size


def infer_geometry(r: Renamed, config: dict[str, Any]) -> Geometry:
    """Size row, patch and grid of the renamed tensors; HF config values must agree with them."""
    t = r.tensors
    for need in ("patch_embed.proj.weight", "pos_embed", "cls_token"):
        if need not in t:
            what = "positions (it cannot be told which the weights were trained with)" if need == "pos_embed" else ""
            raise CheckpointError(f"{need} is missing{': no ' + what if what else ''}; not a ViT/MAE encoder")
    dim, chans, ph, pw = t["patch_embed.proj.weight"].shape
    if ph != pw:
        raise CheckpointError(f"{r.origin['patch_embed.proj.weight']}: non-square patches {ph}x{pw} are not supported")
    depth = len({int(m.group(1)) for k in t if (m := re.match(r"blocks\.(\d+)\.", k))})
    heads = config.get("num_attention_heads") or config.get("attention_heads")
    size = _size_row(dim, depth, heads)
    n_pos = t["pos_embed"].shape[1]
    cls_row = math.isqrt(n_pos - 1) ** 2 == n_pos - 1 and n_pos > 1
    grid = math.isqrt(n_pos - cls_row)
    if grid * grid != n_pos - cls_row:
        raise CheckpointError(f"{r.origin['pos_embed']} has {n_pos} positions: not a square grid of patches")
    geo = Geometry(size, ph, grid, chans, any(k.startswith("decoder") for k in t), cls_row)
    _check_config(geo, config, t)
    return geo


def _size_row(dim: int, depth: int, heads: int | None) -> str:
    for name, s in SIZES.items():
        if (s.dim, s.depth) == (dim, depth) and heads in (None, s.heads):
            return name
    rows = ", ".join(f"{n} {s.dim}x{s.depth}/{s.heads}h" for n, s in SIZES.items())
    got = f"{dim} wide, {depth} deep" + (f", {heads} heads" if heads else "")
    raise CheckpointError(f"no vitforge size is {got} (width x depth/heads: {rows}); vitforge builds only these")


def _check_config(geo: Geometry, config: dict[str, Any], t: dict[str, torch.Tensor]) -> None:
    s = SIZES[geo.size]
    fc1 = t.get("blocks.0.mlp.fc1.weight")
    if fc1 is not None and fc1.shape[0] != int(s.dim * s.mlp_ratio):
        raise CheckpointError(f"blocks.0.mlp.fc1.weight {tuple(fc1.shape)}: MLP width {fc1.shape[0]}, vitforge's "
                              f"{geo.size} has {int(s.dim * s.mlp_ratio)}")  # fmt: skip
    if not config or "hidden_size" not in config:
        return  # official MAE / MAE-CT: timm ViT blocks with GELU, as vitforge's
    for key, want in (("image_size", geo.img_size), ("patch_size", geo.patch_size), ("num_channels", geo.in_chans)):
        got = config.get(key, want)
        if (got if isinstance(got, int) else tuple(got)) not in (want, (want, want)):
            raise CheckpointError(f"config.json {key} {got} disagrees with the tensors ({want})")
    if config.get("hidden_act", "gelu") != "gelu":
        act = config["hidden_act"]
        raise CheckpointError(f"config.json hidden_act {act!r}: vitforge's MLP uses exact GELU ('gelu')")


def check_decoder(geo: Geometry, t: dict[str, torch.Tensor], config: dict[str, Any]) -> None:
    """The decoder must be the size row's (MAE's 512 x 8 / 16 heads for B/L/H): vitforge builds that one."""
    s = SIZES[geo.size]
    if "decoder_embed.weight" not in t:
        raise CheckpointError("decoder_embed.weight is missing from a checkpoint with decoder tensors (--encoder-only"
                              " imports the encoder alone)")  # fmt: skip
    ddim = t["decoder_embed.weight"].shape[0]
    ddepth = len({int(m.group(1)) for k in t if (m := re.match(r"decoder_blocks\.(\d+)\.", k))})
    dheads = config.get("decoder_num_attention_heads", s.decoder_heads)
    if (ddim, ddepth, dheads) != (s.decoder_dim, s.decoder_depth, s.decoder_heads):
        raise CheckpointError(
            f"the MAE decoder is {ddim} wide, {ddepth} deep, {dheads} heads; vitforge's {geo.size} decoder is"
            f" {s.decoder_dim} x {s.decoder_depth} / {s.decoder_heads}: import the encoder alone with --encoder-only"
        )


def position_order(table: torch.Tensor, grid: int, name: str) -> tuple[str, float]:
    """Which sin-cos channel order the (N, D) table is, and its max |difference|; else refuse."""
    tol = 1e-4 if table.dtype == torch.float32 else 2 * torch.finfo(table.dtype).eps  # fp16/bf16 rounding
    diffs = {o: float((table.float() - sincos_pos_embed_2d(table.shape[1], grid, grid, o)).abs().max())
             for o in POS_ORDERS}  # fmt: skip
    best = min(diffs, key=diffs.get)
    if diffs[best] > tol:
        raise CheckpointError(
            f"{name} is not a fixed 2-D sin-cos table (max |diff| {diffs['xy']:.3g} from MAE's column-first table,"
            f" {diffs['yx']:.3g} from the row-first one): vitforge's ViT has fixed sin-cos positions only, so"
            " learned positions (a ViTModel, a fine-tuned checkpoint) cannot be imported without changing its features"
        )
    return best, diffs[best]
