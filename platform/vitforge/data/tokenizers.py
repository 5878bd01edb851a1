"""Text tokenizers and the one factory that builds them from a name (a job spec's
``model.tokenizer``, a model card's ``tokenizer``): training, evaluation, export, MLflow's model
and Serve all call ``make_tokenizer``.

- ``clip-bpe``: CLIP's byte-level BPE (49,152 merges, 49,408 ids; lower-cased, ftfy-fixed, HTML
  unescaped, whitespace collapsed; start 49406, end 49407, padding 0; context 77), as OpenAI's CLIP,
  open_clip and ml-jku/cloob tokenize. The vocabulary file ships in this package: it is the one file
  of the ``open-clip-torch`` wheel (MIT) the tokenizer needs. The package itself is not a
  dependency: importing it pulls in timm and torchvision, and torchvision has no build that loads
  beside the CPU torch these machines use.
- ``byte``: UTF-8 bytes (``models.tokenizer.ByteTokenizer``): no vocabulary, 259 ids.
"""

from __future__ import annotations

import gzip
import html
import itertools
from functools import lru_cache
from pathlib import Path

import ftfy
import regex
import torch

from vitforge.models.text import TOKENIZERS
from vitforge.models.tokenizer import ByteTokenizer

VOCAB_FILE = Path(__file__).with_name("bpe_simple_vocab_16e6.txt.gz")
MERGES = 49152 - 256 - 2  # CLIP keeps the first 48,894 merges of the file


@lru_cache
def _byte_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from bytes to printable characters (BPE works on those)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = list(keep), 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(keep, map(chr, chars), strict=True))


@lru_cache
def _vocabulary() -> tuple[dict[str, int], dict[tuple[str, str], int]]:
    """(token -> id, merge pair -> rank) from the shipped merges file; read once per process."""
    lines = gzip.open(VOCAB_FILE).read().decode("utf-8").split("\n")[1 : MERGES + 1]
    merges = [tuple(line.split()) for line in lines]
    base = list(_byte_to_unicode().values())
    vocab = [*base, *(b + "</w>" for b in base), *("".join(m) for m in merges), "<start_of_text>", "<end_of_text>"]
    return {t: i for i, t in enumerate(vocab)}, {m: i for i, m in enumerate(merges)}


class ClipBPETokenizer:
    """CLIP's tokenizer: text -> (B, context_length) ids, ``[SOT, ..., EOT, 0, ...]``; a caption
    longer than the context is cut and still ends with EOT (the text tower pools there)."""

    name = "clip-bpe"

    def __init__(self, context_length: int = 77) -> None:
        if context_length < 3:
            raise ValueError(f"context_length must be at least 3, got {context_length}")
        self.context_length = context_length
        self._load()

    def __getstate__(self) -> dict:  # pickled into Ray Data tasks: the context length, not 49k entries
        return {"context_length": self.context_length}

    def __setstate__(self, state: dict) -> None:
        self.context_length = state["context_length"]
        self._load()

    def _load(self) -> None:
        self.encoder, self.ranks = _vocabulary()
        self.vocab_size, self.eot = TOKENIZERS[self.name]
        self.sot, self.pad = self.eot - 1, 0
        self.decoder = {i: t for t, i in self.encoder.items()}
        self.pattern = regex.compile(
            r"""<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
            regex.IGNORECASE,
        )
        self.cache: dict[str, list[int]] = {}

    @staticmethod
    def clean(text: str) -> str:
        text = html.unescape(html.unescape(ftfy.fix_text(text)))
        return " ".join(text.split()).lower()

    def _bpe(self, word: str) -> list[int]:
        """One pre-token (bytes mapped to characters) -> ids, merging the best-ranked pair first."""
        if word not in self.cache:
            parts = [*word[:-1], word[-1] + "</w>"]
            while len(parts) > 1:
                pairs = set(itertools.pairwise(parts))
                best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
                if best not in self.ranks:
                    break
                merged, i = [], 0
                while i < len(parts):
                    if i < len(parts) - 1 and (parts[i], parts[i + 1]) == best:
                        merged.append(parts[i] + parts[i + 1])
                        i += 2
                    else:
                        merged.append(parts[i])
                        i += 1
                parts = merged
            self.cache[word] = [self.encoder[p] for p in parts]
        return self.cache[word]

    def encode(self, text: str) -> list[int]:
        if not isinstance(text, str):
            raise TypeError(f"caption must be a string, got {type(text).__name__}: {text!r}")
        b2u = _byte_to_unicode()
        ids: list[int] = []
        for token in self.pattern.findall(self.clean(text)):
            ids += self._bpe("".join(b2u[b] for b in token.encode("utf-8")))
        return ids

    def __call__(self, texts: list[str] | str) -> torch.Tensor:
        texts = [texts] if isinstance(texts, str) else texts
        out = torch.full((len(texts), self.context_length), self.pad, dtype=torch.long)
        for i, t in enumerate(texts):
            ids = [*[self.sot, *self.encode(t)][: self.context_length - 1], self.eot]
            out[i, : len(ids)] = torch.tensor(ids)
        return out

    def decode(self, ids: torch.Tensor | list[int]) -> str:
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else ids
        u2b = {c: b for b, c in _byte_to_unicode().items()}
        ids = ids[1:] if ids and ids[0] == self.sot else ids
        ids = ids[: ids.index(self.eot)] if self.eot in ids else ids  # padding follows the end
        text = "".join(self.decoder[i] for i in ids)
        return bytearray(u2b[c] for c in text).decode("utf-8", errors="replace").replace("</w>", " ").strip()

    def config(self) -> dict:
        """What a model card records so the same tokenizer is rebuilt at load time."""
        return {"name": self.name, "context_length": self.context_length, "vocab_size": self.vocab_size,
                "lower_case": True, "sot": self.sot, "eot": self.eot, "pad": self.pad}  # fmt: skip


def make_tokenizer(name: str, context_length: int) -> ClipBPETokenizer | ByteTokenizer:
    """The tokenizer called ``name`` (``clip-bpe`` or ``byte``)."""
    if name == "clip-bpe":
        return ClipBPETokenizer(context_length)
    if name == "byte":
        return ByteTokenizer(context_length)
    raise ValueError(f"tokenizer must be one of {', '.join(TOKENIZERS)}; got {name!r}")


def tokenizer_from_card(card: dict) -> ClipBPETokenizer | ByteTokenizer:
    """An export's tokenizer; cards written before ``clip-bpe`` existed name ``byte``."""
    t = card["tokenizer"]
    return make_tokenizer(t.get("name", "byte"), t["context_length"])
