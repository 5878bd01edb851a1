"""Request and response bodies of the embedding API (documented in the OpenAPI schema)."""

from __future__ import annotations

import string
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

MAX_TEXT_CHARS = 1000  # a prompt or query; the tokenizer keeps at most its context length anyway
MAX_LABELS = 1000
MAX_TEMPLATE_CHARS = 200
MAX_TEMPLATES = 32


def _utf8(s: str) -> str:
    """JSON may carry lone surrogates ("\\ud800"), which no tokenizer can encode."""
    try:
        s.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(f"not valid Unicode text (lone surrogate at position {e.start})") from None
    return s


def _template(t: str) -> str:
    """Exactly one bare {} (the label); other braces doubled. No field names, indices, conversions
    or format specs: they would read attributes or pad prompts to any length."""
    try:
        fields = [(name, spec, conv) for _, name, spec, conv in string.Formatter().parse(t) if name is not None]
    except ValueError as e:
        raise ValueError(f"not a valid template ({e}); write {{{{ and }}}} for literal braces") from None
    if fields != [("", "", None)]:
        raise ValueError("must contain exactly one {} for the label and nothing else in braces")
    return t


Text = Annotated[str, Field(max_length=MAX_TEXT_CHARS), AfterValidator(_utf8)]


class Req(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ImageEmbeddingRequest(Req):
    images: list[str] = Field(..., description="Base64 PNG, JPEG or WebP images (data URLs allowed).")
    model: str | None = Field(None, description="Served model name; the default model when omitted.")
    encoding: Literal["float32", "base64_float16"] = Field(
        "float32", description="float32 lists, or base64 little-endian float16 rows for bandwidth."
    )


class TextEmbeddingRequest(Req):
    texts: list[Text] = Field(..., description="Texts, embedded with the model's own tokenizer.")
    model: str | None = None
    encoding: Literal["float32", "base64_float16"] = "float32"


class EmbeddingResponse(BaseModel):
    model: str
    version: str
    dims: int
    encoding: str
    embeddings: list[list[float]] | list[str]


Template = Annotated[str, Field(max_length=MAX_TEMPLATE_CHARS), AfterValidator(_utf8), AfterValidator(_template)]


class ZeroShotRequest(Req):
    images: list[str]
    labels: list[Text] = Field(..., min_length=1, max_length=MAX_LABELS, description="Candidate class names.")
    template: Template = Field(
        "a {}", description="Prompt template: one {} for the label; {{ and }} for literal braces."
    )
    templates: list[Template] | None = Field(
        None, min_length=1, max_length=MAX_TEMPLATES,
        description="Several templates, instead of template: each label's prompts are embedded and averaged"
        " (CLIP's prompt ensembling, as `vitforge eval --template` does).",
    )  # fmt: skip
    model: str | None = None


class ZeroShotResult(BaseModel):
    label: str
    scores: dict[str, float]


class ZeroShotResponse(BaseModel):
    model: str
    results: list[ZeroShotResult]


class SearchRequest(Req):
    image: str | None = Field(None, description="Base64 query image.")
    text: Text | None = Field(None, description="Query text (image-text models).")
    k: int = Field(5, ge=1, le=1000)
    method: Literal["hopfield", "cosine"] = Field(
        "hopfield",
        description="hopfield: one modern-Hopfield update softmax(beta q M^T) M, then nearest items to the"
        " retrieved pattern (as CLOOB trains); cosine: plain top-k cosine similarity.",
    )
    beta: float = Field(8.0, gt=0, le=1000)
    model: str | None = None


class SearchHit(BaseModel):
    index: int
    score: float
    label: int | None = None
    caption: str | None = None


class SearchResponse(BaseModel):
    model: str
    method: str
    hits: list[SearchHit]


class ModelInfo(BaseModel):
    name: str
    kind: str
    stage: str
    dims: int
    img_size: int
    gallery_size: int


class ErrorBody(BaseModel):
    error: str
