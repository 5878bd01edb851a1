"""Request and response bodies of the embedding API (documented in the OpenAPI schema)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Req(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ImageEmbeddingRequest(Req):
    images: list[str] = Field(..., description="Base64 PNG, JPEG or WebP images (data URLs allowed).")
    model: str | None = Field(None, description="Served model name; the default model when omitted.")
    encoding: Literal["float32", "base64_float16"] = Field(
        "float32", description="float32 lists, or base64 little-endian float16 rows for bandwidth."
    )


class TextEmbeddingRequest(Req):
    texts: list[str] = Field(..., description="Texts, embedded with the model's own tokenizer.")
    model: str | None = None
    encoding: Literal["float32", "base64_float16"] = "float32"


class EmbeddingResponse(BaseModel):
    model: str
    version: str
    dims: int
    encoding: str
    embeddings: list[list[float]] | list[str]


class ZeroShotRequest(Req):
    images: list[str]
    labels: list[str] = Field(..., min_length=1, description="Candidate class names.")
    template: str = Field("a {}", description="Prompt template; {} is replaced by the label.")
    model: str | None = None


class ZeroShotResult(BaseModel):
    label: str
    scores: dict[str, float]


class ZeroShotResponse(BaseModel):
    model: str
    results: list[ZeroShotResult]


class SearchRequest(Req):
    image: str | None = Field(None, description="Base64 query image.")
    text: str | None = Field(None, description="Query text (image-text models).")
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
