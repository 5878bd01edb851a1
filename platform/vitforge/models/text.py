"""Causal transformer text encoder (CLIP-style) with end-of-text pooling. Imports torch only."""

from __future__ import annotations

import torch
from torch import nn

from vitforge.models.tokenizer import EOT, VOCAB_SIZE
from vitforge.models.vit import Block, init_weights, run_blocks


class TextEncoder(nn.Module):
    """Token ids (B, L) -> (B, D): the final-norm feature at each sequence's end-of-text token."""

    def __init__(
        self,
        dim: int = 512,
        depth: int = 12,
        heads: int = 8,
        context_length: int = 77,
        vocab_size: int = VOCAB_SIZE,
        grad_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        self.dim, self.depth, self.heads = dim, depth, heads
        self.context_length = context_length
        self.grad_checkpointing = grad_checkpointing
        self.token_embed = nn.Embedding(vocab_size, dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, context_length, dim))
        self.blocks = nn.ModuleList([Block(dim, heads, causal=True) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        init_weights(self)
        nn.init.normal_(self.token_embed.weight, std=0.02)
        nn.init.normal_(self.pos_embed, std=0.01)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.shape[1] != self.context_length:
            raise ValueError(f"expected token length {self.context_length}, got {tokens.shape[1]}")
        x = self.token_embed(tokens) + self.pos_embed  # (B, L, D)
        x = self.norm(run_blocks(self.blocks, x, self.grad_checkpointing))
        # Causal attention: only the end-of-text position has seen the whole caption.
        eot = (tokens == EOT).int().argmax(dim=1)  # (B,), first EOT
        return x[torch.arange(x.shape[0], device=x.device), eot]


# Text towers paired with image sizes (CLIP's widths, scaled down for the small sizes).
TEXT_SIZES: dict[str, dict[str, int]] = {
    "test": {"dim": 32, "depth": 2, "heads": 2},
    "micro": {"dim": 64, "depth": 2, "heads": 2},
    "tiny": {"dim": 256, "depth": 6, "heads": 4},
    "small": {"dim": 384, "depth": 12, "heads": 6},
    "base": {"dim": 512, "depth": 12, "heads": 8},
    "large": {"dim": 768, "depth": 12, "heads": 12},
    "huge": {"dim": 1024, "depth": 24, "heads": 16},
}
