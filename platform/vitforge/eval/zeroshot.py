"""Zero-shot classification for CLOOB / CLIP: class prompts through the text tower."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vitforge.data.builtin import COLOURS, SHAPES
from vitforge.data.tokenizers import ClipBPETokenizer, tokenizer_from_card
from vitforge.models.image_text import ImageTextModel
from vitforge.models.tokenizer import ByteTokenizer

DEFAULT_TEMPLATES = ("a {}", "a photo of a {}", "a {} on a background")


@torch.no_grad()
def class_embeddings(
    model: ImageTextModel,
    tokenizer: ClipBPETokenizer | ByteTokenizer,
    class_names: list[str],
    templates=DEFAULT_TEMPLATES,
) -> torch.Tensor:
    """(C, E): the normalized mean of each class's prompt embeddings (CLIP's prompt ensembling)."""
    device = next(model.parameters()).device
    out = []
    for name in class_names:
        emb = model.encode_text(tokenizer([t.format(name) for t in templates]).to(device))  # (T, E)
        out.append(F.normalize(emb.mean(0), dim=0))
    return torch.stack(out)


@torch.no_grad()
def zero_shot(
    image_emb: torch.Tensor, labels: torch.Tensor, class_emb: torch.Tensor, topk: tuple[int, ...] = (1, 5)
) -> dict[str, float]:
    """Top-k accuracy of cosine similarity between image embeddings (N, E) and class embeddings (C, E)."""
    sims = F.normalize(image_emb.float(), dim=1) @ class_emb.float().T  # (N, C)
    ranked = sims.argsort(dim=1, descending=True)
    out = {}
    for k in topk:
        kk = min(k, class_emb.shape[0])
        out[f"top{k}"] = float((ranked[:, :kk] == labels[:, None]).any(1).float().mean())
    return out


def shapes_zero_shot(export: str, builtin_options: dict) -> dict[str, float]:
    """Zero-shot top-1 on the built-in ``shapes`` test split, on the shape kind (the label) and on
    the colour named in each caption (8 classes each: chance 0.125)."""
    from vitforge.data import load_source
    from vitforge.inference import load_encoder

    model, card = load_encoder(export)
    return shapes_scores(model, card, load_source("shapes", "test", builtin_options=builtin_options))


# Prompts in the captions' own words ("a small red star at the top on a striped background"), as
# CLIP writes templates per data set; every size (and colour, for the shape) is averaged over.
SHAPE_TEMPLATES = tuple(
    f"a {s} {c} {{}}"
    for s in ("small", "large")
    for c in ("red", "green", "blue", "yellow", "purple", "orange", "white", "black")
)
COLOUR_TEMPLATES = ("a small {}", "a large {}")


def shapes_scores(model: ImageTextModel, card: dict, test) -> dict[str, float]:
    """Shape and colour zero-shot top-1 of ``model`` on ``shapes`` records (see ``shapes_zero_shot``)."""
    from vitforge.data import iter_rows
    from vitforge.eval.features import extract_features

    x, y = extract_features(model, card, test)
    captions = [c for rows in iter_rows(test) for c in rows["caption"]]
    tok = tokenizer_from_card(card)
    colours = list(COLOURS)
    y_col = torch.tensor([next(i for i, c in enumerate(colours) if f" {c} " in cap) for cap in captions])
    return {
        "shape_top1": zero_shot(x, y, class_embeddings(model, tok, SHAPES, SHAPE_TEMPLATES))["top1"],
        "colour_top1": zero_shot(x, y_col, class_embeddings(model, tok, colours, COLOUR_TEMPLATES))["top1"],
    }
