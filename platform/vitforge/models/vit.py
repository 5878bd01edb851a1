"""Vision Transformer encoder: patch embedding, fixed 2-D sin-cos positions, pre-norm blocks.

Imports torch only. Sizes come from ``SIZES``; sharding and precision are applied from
outside (``vitforge.train.engine``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint


@dataclass(frozen=True)
class ViTSize:
    """One row of the size table: encoder width/depth/heads and the MAE decoder that suits it."""

    dim: int
    depth: int
    heads: int
    mlp_ratio: float = 4.0
    decoder_dim: int = 512
    decoder_depth: int = 8
    decoder_heads: int = 16


# Widths, depths and heads of the standard ViTs (Dosovitskiy et al.; DeiT for Ti/S).
# MAE's decoder is 512 wide, 8 deep, 16 heads for B/L/H; the small sizes get a lighter one.
SIZES: dict[str, ViTSize] = {
    "test": ViTSize(dim=32, depth=4, heads=2, decoder_dim=32, decoder_depth=1, decoder_heads=2),
    # Between test and tiny, for CPU jobs: micro (the quickstart and the reproduction; a MAE step
    # costs what a test step does, a contrastive step twice) and mini (CPU benchmarks, 5x a test step).
    "micro": ViTSize(dim=64, depth=4, heads=2, decoder_dim=32, decoder_depth=1, decoder_heads=2),
    "mini": ViTSize(dim=96, depth=6, heads=3, decoder_dim=64, decoder_depth=2, decoder_heads=2),
    "tiny": ViTSize(dim=192, depth=12, heads=3, decoder_dim=256, decoder_depth=4, decoder_heads=8),
    "small": ViTSize(dim=384, depth=12, heads=6, decoder_dim=256, decoder_depth=4, decoder_heads=8),
    "base": ViTSize(dim=768, depth=12, heads=12),
    "large": ViTSize(dim=1024, depth=24, heads=16),
    "huge": ViTSize(dim=1280, depth=32, heads=16),
}


POS_ORDERS = ("xy", "yx")


def sincos_pos_embed_2d(
    dim: int, grid_h: int, grid_w: int, order: str = "xy", trained_grid: tuple[int, int] | None = None
) -> torch.Tensor:
    """Fixed 2-D sin-cos position embedding, (grid_h * grid_w, dim), rows in row-major patch order.

    Half the channels encode one coordinate, half the other. ``"xy"``: the column first, as MAE's
    ``util/pos_embed.py`` (``np.meshgrid(grid_w, grid_h)`` puts w in ``grid[0]``), so official
    weights see the positions they were trained with; ``"yx"``: the row first (vitforge's exports
    before model cards recorded the order).

    ``trained_grid`` (rows, columns): the grid the weights were trained on, when it is not this one.
    The positions are then the trained table interpolated to this grid: sin-cos evaluated at the
    coordinates that bicubic resizing of the table samples (``F.interpolate``,
    ``align_corners=False``), exact where a resized table only approximates.
    """
    if dim % 4:
        raise ValueError(f"embedding dim {dim} must be divisible by 4 for 2-D sin-cos positions")
    if order not in POS_ORDERS:
        raise ValueError(f"position order {order!r}; allowed: {', '.join(POS_ORDERS)}")
    th, tw = trained_grid or (grid_h, grid_w)
    ys, xs = torch.meshgrid(_coords(grid_h, th), _coords(grid_w, tw), indexing="ij")
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim / 4))  # (dim/4,)

    def embed_1d(pos: torch.Tensor) -> torch.Tensor:
        out = pos.reshape(-1, 1) * omega  # (N, dim/4)
        return torch.cat([out.sin(), out.cos()], dim=1)  # (N, dim/2)

    first, second = (xs, ys) if order == "xy" else (ys, xs)
    return torch.cat([embed_1d(first), embed_1d(second)], dim=1).float()  # (N, dim)


def _coords(n: int, trained: int) -> torch.Tensor:
    """(n,) positions of n cells on a trained axis of ``trained`` cells, cell centres aligned."""
    i = torch.arange(n, dtype=torch.float64)
    return i if n == trained else (i + 0.5) * (trained / n) - 0.5


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, causal: bool = False) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.causal = causal
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        b, n, d = x.shape
        # (B, N, 3D) -> (3, B, H, N, D/H)
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        # SDPA picks flash / memory-efficient kernels on GPU and a fused kernel on CPU.
        out = F.scaled_dot_product_attention(
            qkv[0], qkv[1], qkv[2], attn_mask=attn_mask, is_causal=self.causal and attn_mask is None
        )
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)), x + mlp(norm(x))."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0, causal: bool = False) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads, causal=causal)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), attn_mask)
        return x + self.mlp(self.norm2(x))


def run_blocks(
    blocks: nn.ModuleList, x: torch.Tensor, grad_checkpointing: bool, attn_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Apply blocks in order; with checkpointing, activations are recomputed in backward."""
    for blk in blocks:
        if grad_checkpointing and torch.is_grad_enabled():
            x = checkpoint(blk, x, attn_mask, use_reentrant=False)
        else:
            x = blk(x, attn_mask)
    return x


def init_weights(module: nn.Module) -> None:
    """MAE's initialisation: xavier-uniform linears, zero biases, unit LayerNorms."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class ViT(nn.Module):
    """ViT encoder. ``forward(imgs, pool)`` -> (B, D); the MAE uses the token-level methods."""

    def __init__(
        self,
        dim: int,
        depth: int,
        heads: int,
        patch_size: int = 16,
        img_size: int | tuple[int, int] = 224,
        in_chans: int = 3,
        mlp_ratio: float = 4.0,
        class_token: bool = True,
        grad_checkpointing: bool = False,
        pos_order: str = "xy",
        pos_grid: int | tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        h, w = (img_size, img_size) if isinstance(img_size, int) else img_size
        if h % patch_size or w % patch_size:
            raise ValueError(f"img_size {(h, w)} is not divisible by patch_size {patch_size}")
        self.dim, self.depth, self.heads = dim, depth, heads
        self.patch_size, self.in_chans = patch_size, in_chans
        self.img_size = (h, w)
        self.grid = (h // patch_size, w // patch_size)
        self.num_patches = self.grid[0] * self.grid[1]
        self.grad_checkpointing, self.pos_order = grad_checkpointing, pos_order
        # The grid the positions were trained on (weights imported at another resolution), else ours.
        self.pos_grid = (pos_grid, pos_grid) if isinstance(pos_grid, int) else (pos_grid or self.grid)
        # A strided conv is the patchify + linear projection in one op.
        self.patch_embed = nn.Conv2d(in_chans, dim, kernel_size=patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if class_token else None
        # Fixed, so a buffer: not trained, recomputed from the size, not stored in exports.
        pos = sincos_pos_embed_2d(dim, *self.grid, pos_order, self.pos_grid)[None]  # (1, N, D)
        self.register_buffer("pos_embed", pos, persistent=False)
        self.blocks = nn.ModuleList([Block(dim, heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        init_weights(self)
        # Patch embedding initialised like a linear layer (MAE), cls token like timm.
        nn.init.xavier_uniform_(self.patch_embed.weight.view(dim, -1))
        if self.cls_token is not None:
            nn.init.normal_(self.cls_token, std=0.02)

    @property
    def num_prefix_tokens(self) -> int:
        return 0 if self.cls_token is None else 1

    def patch_tokens(self, imgs: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, N, D) patch tokens with position embeddings added."""
        if imgs.shape[1:] != (self.in_chans, *self.img_size):
            raise ValueError(
                f"expected images of shape (B, {self.in_chans}, {self.img_size[0]}, {self.img_size[1]}),"
                f" got {tuple(imgs.shape)}"
            )
        x = self.patch_embed(imgs).flatten(2).transpose(1, 2)  # (B, N, D), row-major patches
        return x + self.pos_embed.to(x.dtype)  # a buffer DeepSpeed may leave in fp32 under bf16

    def encode_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """(B, n, D) patch tokens (all or a kept subset) -> (B, prefix + n, D) after the final norm."""
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        return self.norm(run_blocks(self.blocks, x, self.grad_checkpointing))

    def pool(self, tokens: torch.Tensor, pool: str = "cls") -> torch.Tensor:
        """(B, prefix + n, D) -> (B, D): the class token or the mean of the patch tokens."""
        if pool == "cls":
            if self.cls_token is None:
                raise ValueError("pool='cls' needs an encoder built with class_token=True")
            return tokens[:, 0]
        if pool == "mean_patch":
            return tokens[:, self.num_prefix_tokens :].mean(dim=1)
        raise ValueError(f"pool must be one of 'cls', 'mean_patch'; got {pool!r}")

    def forward(self, imgs: torch.Tensor, pool: str = "cls") -> torch.Tensor:
        return self.pool(self.encode_tokens(self.patch_tokens(imgs)), pool)

    def flops_per_image(self) -> float:
        """Forward FLOPs of one image (2 per multiply-add), for MFU estimates."""
        n, d = self.num_patches + self.num_prefix_tokens, self.dim
        per_block = 2 * n * 12 * d * d + 2 * 2 * n * n * d  # linears + (QK^T, AV)
        embed = 2 * self.num_patches * self.in_chans * self.patch_size**2 * d
        return float(self.depth * per_block + embed)


def vit(size: str, patch_size: int = 16, img_size: int | tuple[int, int] = 224, in_chans: int = 3, **kwargs) -> ViT:
    """Build a ViT from the size table: ``vit("base", 16)`` is ViT-B/16."""
    if size not in SIZES:
        raise ValueError(f"unknown model size {size!r}; allowed: {', '.join(SIZES)}")
    s = SIZES[size]
    return ViT(s.dim, s.depth, s.heads, patch_size, img_size, in_chans, s.mlp_ratio, **kwargs)


def _constructor(size: str, patch: int):
    def build(**kwargs) -> ViT:
        return vit(size, patch, **kwargs)

    build.__name__ = f"vit_{size}_patch{patch}"
    build.__doc__ = f"ViT-{size}/{patch} from the size table; kwargs as in :class:`ViT`."
    return build


vit_test_patch4 = _constructor("test", 4)
vit_micro_patch4 = _constructor("micro", 4)
vit_tiny_patch14 = _constructor("tiny", 14)
vit_tiny_patch16 = _constructor("tiny", 16)
vit_small_patch14 = _constructor("small", 14)
vit_small_patch16 = _constructor("small", 16)
vit_base_patch14 = _constructor("base", 14)
vit_base_patch16 = _constructor("base", 16)
vit_large_patch14 = _constructor("large", 14)
vit_large_patch16 = _constructor("large", 16)
vit_huge_patch14 = _constructor("huge", 14)
vit_huge_patch16 = _constructor("huge", 16)


def count_params(module: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
