"""Models: ViT encoders from a size table, MAE, the NNCLR head, the text tower. torch only."""

from vitforge.models.image_text import ImageTextModel
from vitforge.models.mae import MAE, mae_for, random_masking
from vitforge.models.nnclr_head import NNCLRHead, NNQueue
from vitforge.models.text import TEXT_SIZES, TOKENIZERS, TextEncoder
from vitforge.models.tokenizer import ByteTokenizer
from vitforge.models.vit import (
    SIZES,
    ViT,
    count_params,
    sincos_pos_embed_2d,
    vit,
    vit_base_patch14,
    vit_base_patch16,
    vit_huge_patch14,
    vit_huge_patch16,
    vit_large_patch14,
    vit_large_patch16,
    vit_micro_patch4,
    vit_small_patch14,
    vit_small_patch16,
    vit_test_patch4,
    vit_tiny_patch14,
    vit_tiny_patch16,
)

__all__ = [
    "MAE",
    "SIZES",
    "TEXT_SIZES",
    "TOKENIZERS",
    "ByteTokenizer",
    "ImageTextModel",
    "NNCLRHead",
    "NNQueue",
    "TextEncoder",
    "ViT",
    "count_params",
    "mae_for",
    "random_masking",
    "sincos_pos_embed_2d",
    "vit",
    "vit_base_patch14",
    "vit_base_patch16",
    "vit_huge_patch14",
    "vit_huge_patch16",
    "vit_large_patch14",
    "vit_large_patch16",
    "vit_micro_patch4",
    "vit_small_patch14",
    "vit_small_patch16",
    "vit_test_patch4",
    "vit_tiny_patch14",
    "vit_tiny_patch16",
]
