"""Rows -> training tensors, in process (tests, evaluation) or in Ray Data's map stage (training).

``BatchMaker`` decodes and augments a batch of normalized rows; the in-process loader and the
Ray Data glue both call it, so a worker receives ready tensors and never decodes on its
critical path.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import datasets
import numpy as np
import torch

from vitforge.data.sources import DataError, load_image, warn_skipped
from vitforge.data.transforms import Compose
from vitforge.models.tokenizer import ByteTokenizer

ON_BAD = ("raise", "skip")


def sample_seed(seed: int, epoch: int, index: int, view: int) -> int:
    """A per-(sample, epoch, view) seed: augmentations do not depend on sharding or batch order."""
    return ((seed * 1_000_003 + epoch) * 10_000_019 + index) * 7 + view & 0x7FFF_FFFF_FFFF_FFFF


@dataclass
class BatchMaker:
    """Decode + augment rows into ``{"image" (B,C,H,W)[, "image2"], "label", "index"[, "tokens"]}``.

    ``views`` transforms give one output each (two for MAE-CT). ``epoch=None`` (the Ray Data path)
    draws fresh randomness each pass; an int makes the batch a pure function of seed and epoch.
    """

    views: list[Compose]
    source: str = "data"
    tokenizer: ByteTokenizer | None = None
    seed: int = 0
    on_bad: str = "raise"
    epoch: int | None = None
    skipped: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.on_bad not in ON_BAD:
            raise ValueError(f"on_bad must be one of {ON_BAD}, got {self.on_bad!r}")

    def __call__(self, batch: dict) -> dict[str, np.ndarray]:
        n = len(batch["index"])
        outs: list[list[torch.Tensor]] = [[] for _ in self.views]
        labels, indices, captions = [], [], []
        salt = int(torch.randint(0, 2**31, ())) if self.epoch is None else self.epoch
        skipped_before = len(self.skipped)
        for i in range(n):
            index = int(batch["index"][i])
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
                outs[v].append(t(x, torch.Generator().manual_seed(sample_seed(self.seed, salt, index, v))))
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
        if self.epoch is None:  # Ray Data map task: nobody reads self.skipped afterwards
            warn_skipped(self.skipped[skipped_before:], n)
        if self.tokenizer is not None:
            out["tokens"] = (
                self.tokenizer(captions).numpy() if captions else np.zeros((0, self.tokenizer.context_length), np.int64)
            )
        return out


def iter_batches(
    ds: datasets.Dataset,
    maker: BatchMaker,
    batch_size: int,
    epoch: int = 0,
    shuffle: bool = True,
    drop_last: bool = False,
    rank: int = 0,
    world_size: int = 1,
) -> Iterator[dict[str, torch.Tensor]]:
    """In-process loader: this rank's slice of a seed+epoch permutation, as batches of tensors.

    Bad rows with ``on_bad="skip"`` are dropped and reported in one warning at the end.
    """
    order = np.random.default_rng([maker.seed, epoch]).permutation(len(ds)) if shuffle else np.arange(len(ds))
    order = order[rank::world_size]
    maker = BatchMaker(maker.views, maker.source, maker.tokenizer, maker.seed, maker.on_bad, epoch)
    stop = len(order) - len(order) % batch_size if drop_last else len(order)
    for start in range(0, stop, batch_size):
        rows = ds[order[start : start + batch_size].tolist()]
        out = maker(rows)
        if len(out["index"]):
            yield {k: torch.from_numpy(v) for k, v in out.items()}
    warn_skipped(maker.skipped, len(order))


def to_ray(ds: datasets.Dataset, maker: BatchMaker, batch_size: int = 64, num_cpus: float = 1.0):
    """A Ray Dataset, reshuffled each epoch, whose map stage decodes and augments: workers read
    ready tensors.

    Each Train worker takes its shard with ``ray.train.get_dataset_shard(name)``.
    """
    import ray.data

    # One progress bar per operator per epoch floods a training log; Train reports progress.
    ray.data.DataContext.get_current().enable_progress_bars = False
    # Shuffled afresh every epoch, before decoding (a row is bytes or a path): image folders list
    # their rows class by class, and unshuffled batches of one class starve a contrastive loss of
    # negatives and drag every model through the classes in turn (measured: MAE-CT 0.595 vs
    # MAE 0.70 k-NN on a class-sorted digit folder; the in-process loader always permuted).
    rds = ray.data.from_huggingface(ds).random_shuffle()
    return rds.map_batches(maker, batch_size=batch_size, batch_format="numpy", num_cpus=num_cpus)
