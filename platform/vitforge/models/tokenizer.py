"""Byte-level tokenizer: needs no vocabulary file and no download. Imports torch only."""

from __future__ import annotations

import torch

PAD, SOT, EOT = 256, 257, 258
VOCAB_SIZE = 259  # 256 byte values + pad + start + end


class ByteTokenizer:
    """UTF-8 bytes as tokens, framed by start/end-of-text, truncated and padded to a context length.

    The end-of-text token is kept on truncation: the text tower pools at its position.
    """

    name = "byte"
    vocab_size = VOCAB_SIZE

    def __init__(self, context_length: int = 64) -> None:
        if context_length < 3:
            raise ValueError(f"context_length must be at least 3, got {context_length}")
        self.context_length = context_length

    def encode(self, text: str) -> list[int]:
        if not isinstance(text, str):
            raise TypeError(f"caption must be a string, got {type(text).__name__}: {text!r}")
        body = list(text.encode("utf-8"))[: self.context_length - 2]
        return [SOT, *body, EOT]

    def __call__(self, texts: list[str] | str) -> torch.Tensor:
        """One string or a list -> (B, context_length) long tensor, padded with PAD."""
        texts = [texts] if isinstance(texts, str) else texts
        out = torch.full((len(texts), self.context_length), PAD, dtype=torch.long)
        for i, t in enumerate(texts):
            ids = self.encode(t)
            out[i, : len(ids)] = torch.tensor(ids)
        return out

    def decode(self, ids: torch.Tensor | list[int]) -> str:
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else ids
        return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")

    def config(self) -> dict:
        """What a model card records so the same tokenizer is rebuilt at load time."""
        return {"name": self.name, "context_length": self.context_length, "vocab_size": self.vocab_size}
