"""Two towers with linear projections into a joint space, for CLOOB and CLIP. Imports torch only."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from vitforge.models.text import TextEncoder
from vitforge.models.vit import ViT


class ImageTextModel(nn.Module):
    """``ImageTextModel(image_encoder, text_encoder, embed_dim)`` -> L2-normalized embeddings."""

    def __init__(self, image_encoder: ViT, text_encoder: TextEncoder, embed_dim: int = 512, pool: str = "cls"):
        super().__init__()
        self.image_encoder = image_encoder
        self.text_encoder = text_encoder
        self.pool = pool
        self.image_proj = nn.Linear(image_encoder.dim, embed_dim, bias=False)
        self.text_proj = nn.Linear(text_encoder.dim, embed_dim, bias=False)
        nn.init.normal_(self.image_proj.weight, std=image_encoder.dim**-0.5)
        nn.init.normal_(self.text_proj.weight, std=text_encoder.dim**-0.5)
        # CLIP learns its temperature (init 1/0.07); CLOOB keeps tau^-1 fixed and ignores this.
        # Shape (1,), not a scalar: DeepSpeed's broadcast views parameters as bytes.
        self.logit_scale = nn.Parameter(torch.full((1,), math.log(1 / 0.07)))

    def encode_image(self, imgs: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.image_proj(self.image_encoder(imgs, pool=self.pool)), dim=-1)  # (B, E)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.text_proj(self.text_encoder(tokens)), dim=-1)  # (B, E)

    def forward(self, imgs: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encode_image(imgs), self.encode_text(tokens)
