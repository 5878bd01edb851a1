"""Rows -> training tensors: ``BatchMaker`` decodes and augments a window's rows, in Ray Data's
map stage (training on Ray) or in the process that reads them (``data/stream.py``): the same
rows, seed and epoch give the same tensors on either path."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from vitforge.data.sources import DataError, load_image
from vitforge.data.transforms import Compose

ON_BAD = ("raise", "skip")


def sample_seed(seed: int, epoch: int, index: int, view: int) -> int:
    """A per-(sample, epoch, view) seed: augmentations do not depend on sharding or batch order."""
    return ((seed * 1_000_003 + epoch) * 10_000_019 + index) * 7 + view & 0x7FFF_FFFF_FFFF_FFFF


@dataclass
class BatchMaker:
    """Decode + augment rows (``id``, ``image``, ``label``, ``caption``) into
    ``{"image" (B,C,H,W)[, "image2"], "label", "index"[, "tokens"]}``.

    ``views`` transforms give one output each (two for MAE-CT). Each sample's augmentation is
    seeded by (seed, epoch, id, view): a pure function of the data, whoever decodes it.
    Bad rows with ``on_bad="skip"`` are dropped and listed in ``skipped``.
    """

    views: list[Compose]
    source: str = "data"
    tokenizer: Callable[[list[str]], torch.Tensor] | None = None  # data.tokenizers.make_tokenizer's
    seed: int = 0
    on_bad: str = "raise"
    skipped: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.on_bad not in ON_BAD:
            raise ValueError(f"on_bad must be one of {ON_BAD}, got {self.on_bad!r}")

    def __call__(self, batch: dict, epoch: int) -> dict[str, np.ndarray]:
        n = len(batch["id"])
        outs: list[list[torch.Tensor]] = [[] for _ in self.views]
        labels, indices, captions = [], [], []
        for i in range(n):
            index = int(batch["id"][i])
            where = f"row {index} of {self.source}"
            try:
                img = load_image(batch["image"][i], where)
                caption = batch["caption"][i] if self.tokenizer is not None else None
                if self.tokenizer is not None and not isinstance(caption, str):
                    raise DataError(f"{where}, column 'caption': expected a string, got {caption!r}")
            except DataError as e:
                if self.on_bad == "raise":
                    raise
                self.skipped.append(str(e))
                continue
            # (3, H, W) uint8: the views crop and shrink before converting to float.
            x = torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1)
            for v, t in enumerate(self.views):
                outs[v].append(t(x, torch.Generator().manual_seed(sample_seed(self.seed, epoch, index, v))))
            labels.append(int(batch["label"][i]))
            indices.append(index)
            captions.append(caption)
        out: dict[str, np.ndarray] = {
            "label": np.asarray(labels, dtype=np.int64),
            "index": np.asarray(indices, dtype=np.int64),
        }
        for v, imgs in enumerate(outs):
            key = "image" if v == 0 else f"image{v + 1}"
            out[key] = torch.stack(imgs).numpy() if imgs else np.zeros((0, 3, 1, 1), np.float32)
        if self.tokenizer is not None:
            out["tokens"] = (
                self.tokenizer(captions).numpy() if captions else np.zeros((0, self.tokenizer.context_length), np.int64)
            )
        return out
