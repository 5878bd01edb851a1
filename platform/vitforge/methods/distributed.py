"""Cross-rank gathering with an explicit rank and world size and a single-process path."""

from __future__ import annotations

import torch
import torch.distributed as dist


def gather_features(x: torch.Tensor, rank: int = 0, world_size: int = 1) -> torch.Tensor:
    """(B, ...) on each rank -> (world_size * B, ...) on every rank, in rank order.

    ``all_gather`` returns tensors without autograd history, so the local slice is put back
    as ``x`` itself: gradients flow into this rank's own features only (open_clip's scheme).
    With ``world_size == 1`` this is ``x`` and no process group is needed.
    """
    if world_size == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(world_size)]
    dist.all_gather(parts, x.detach().contiguous())
    parts[rank] = x
    return torch.cat(parts, dim=0)
