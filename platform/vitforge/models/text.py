"""Causal transformer text encoder (CLIP-style) with end-of-text pooling. Imports torch only."""

from __future__ import annotations

import torch
from torch import nn

from vitforge.models.tokenizer import EOT, VOCAB_SIZE
from vitforge.models.vit import Block, run_blocks

# Each tokenizer's (vocabulary size, end-of-text id): the text tower's embedding and where it pools.
TOKENIZERS: dict[str, tuple[int, int]] = {"clip-bpe": (49408, 49407), "byte": (VOCAB_SIZE, EOT)}


class TextEncoder(nn.Module):
    """Token ids (B, L) -> (B, D): the final-norm feature at each sequence's end-of-text token.

    Initialised as CLIP, open_clip and ml-jku/cloob do: normals with depth-scaled std (qkv
    ``w^-1/2``; attention-out and MLP-out ``w^-1/2 (2L)^-1/2``, so the residual stream grows by
    the same amount whatever the depth; MLP-in ``(2w)^-1/2``), token embeddings 0.02, positions 0.01.
    """

    def __init__(
        self,
        dim: int = 512,
        depth: int = 12,
        heads: int = 8,
        context_length: int = 77,
        vocab_size: int = VOCAB_SIZE,
        grad_checkpointing: bool = False,
        eot: int = EOT,
    ) -> None:
        super().__init__()
        self.dim, self.depth, self.heads = dim, depth, heads
        self.context_length, self.eot = context_length, eot
        self.grad_checkpointing = grad_checkpointing
        self.token_embed = nn.Embedding(vocab_size, dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, context_length, dim))
        self.blocks = nn.ModuleList([Block(dim, heads, causal=True) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        nn.init.normal_(self.token_embed.weight, std=0.02)
        nn.init.normal_(self.pos_embed, std=0.01)
        attn_std, proj_std, fc_std = dim**-0.5, dim**-0.5 * (2 * depth) ** -0.5, (2 * dim) ** -0.5
        for blk in self.blocks:
            nn.init.normal_(blk.attn.qkv.weight, std=attn_std)
            nn.init.normal_(blk.attn.proj.weight, std=proj_std)
            nn.init.normal_(blk.mlp[0].weight, std=fc_std)
            nn.init.normal_(blk.mlp[2].weight, std=proj_std)
            for lin in (blk.attn.qkv, blk.attn.proj, blk.mlp[0], blk.mlp[2]):
                nn.init.zeros_(lin.bias)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.shape[1] != self.context_length:
            raise ValueError(f"expected token length {self.context_length}, got {tokens.shape[1]}")
        x = self.token_embed(tokens) + self.pos_embed  # (B, L, D)
        x = self.norm(run_blocks(self.blocks, x, self.grad_checkpointing))
        # Causal attention: only the end-of-text position has seen the whole caption.
        eot = (tokens == self.eot).int().argmax(dim=1)  # (B,), first EOT
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
