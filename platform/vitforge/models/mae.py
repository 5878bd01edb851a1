"""Masked autoencoder around any :class:`ViT` encoder (He et al., 2022). Imports torch only."""

from __future__ import annotations

import torch
from torch import nn

from vitforge.models.vit import SIZES, Block, ViT, init_weights, run_blocks, sincos_pos_embed_2d


def random_masking(
    x: torch.Tensor,
    mask_ratio: float,
    generator: torch.Generator | None = None,
    noise: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Keep a random subset of tokens per sample: the ``n_keep`` with the lowest noise.

    x: (B, N, D); noise: (B, N), drawn here when not given (given: to match another implementation
    that takes the same noise, e.g. transformers' ViTMAE). Returns the kept tokens (B, n_keep, D),
    the mask (B, N) with 1 where masked, and ids_restore (B, N) that puts shuffled tokens back in
    patch order.
    """
    b, n, d = x.shape
    n_keep = round(n * (1 - mask_ratio))
    if not 0 < n_keep <= n:
        raise ValueError(f"mask_ratio {mask_ratio} keeps {n_keep} of {n} patches; need at least one")
    if noise is None:
        noise = torch.rand(b, n, device=x.device, generator=generator)
    ids_shuffle = noise.argsort(dim=1)  # ascending: the first n_keep are kept
    ids_restore = ids_shuffle.argsort(dim=1)
    ids_keep = ids_shuffle[:, :n_keep]
    kept = x.gather(1, ids_keep[..., None].expand(-1, -1, d))
    mask = torch.ones(b, n, device=x.device)
    mask[:, :n_keep] = 0
    return kept, mask.gather(1, ids_restore), ids_restore


class MAE(nn.Module):
    """``MAE(encoder)``: encode the visible patches, decode all, predict pixels of every patch."""

    def __init__(
        self,
        encoder: ViT,
        decoder_dim: int = 512,
        decoder_depth: int = 8,
        decoder_heads: int = 16,
        mask_ratio: float = 0.75,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.mask_ratio = mask_ratio
        self.decoder_embed = nn.Linear(encoder.dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        pos = sincos_pos_embed_2d(decoder_dim, *encoder.grid, encoder.pos_order, encoder.pos_grid)[None]
        self.register_buffer("decoder_pos_embed", pos, persistent=False)
        self.decoder_blocks = nn.ModuleList([Block(decoder_dim, decoder_heads) for _ in range(decoder_depth)])
        self.decoder_norm = nn.LayerNorm(decoder_dim, eps=1e-6)
        self.decoder_pred = nn.Linear(decoder_dim, encoder.patch_size**2 * encoder.in_chans)
        for m in (self.decoder_embed, self.decoder_blocks, self.decoder_norm, self.decoder_pred):
            init_weights(m)
        nn.init.normal_(self.mask_token, std=0.02)

    @property
    def decoder(self) -> list[nn.Module]:
        """The modules that are not the encoder (the fast group in TTUR)."""
        return [self.decoder_embed, self.decoder_blocks, self.decoder_norm, self.decoder_pred]

    def forward(
        self,
        imgs: torch.Tensor,
        mask_ratio: float | None = None,
        generator: torch.Generator | None = None,
        noise: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """imgs (B, C, H, W) -> pred (B, N, p*p*C) and mask (B, N), 1 where masked.

        ``noise`` (B, N): the masking noise (the lowest n_keep are kept), else drawn with ``generator``.
        """
        enc = self.encoder
        x = enc.patch_tokens(imgs)  # (B, N, D)
        ratio = self.mask_ratio if mask_ratio is None else mask_ratio
        x, mask, ids_restore = random_masking(x, ratio, generator, noise)  # (B, n_keep, D)
        x = self.decoder_embed(enc.encode_tokens(x))  # (B, prefix + n_keep, Dd)
        prefix, visible = x[:, : enc.num_prefix_tokens], x[:, enc.num_prefix_tokens :]
        b, n = ids_restore.shape
        masked = self.mask_token.expand(b, n - visible.shape[1], -1)
        x = torch.cat([visible, masked], dim=1)
        x = x.gather(1, ids_restore[..., None].expand(-1, -1, x.shape[2]))  # unshuffle: (B, N, Dd)
        x = torch.cat([prefix, x + self.decoder_pos_embed.to(x.dtype)], dim=1)
        x = self.decoder_norm(run_blocks(self.decoder_blocks, x, enc.grad_checkpointing))
        return self.decoder_pred(x[:, enc.num_prefix_tokens :]), mask


def mae_for(encoder: ViT, size: str, mask_ratio: float = 0.75) -> MAE:
    """An MAE whose decoder comes from the size table row of ``size``."""
    s = SIZES[size]
    return MAE(encoder, s.decoder_dim, s.decoder_depth, s.decoder_heads, mask_ratio)
