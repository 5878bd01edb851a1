"""Cross-rank gathering with an explicit rank and world size and a single-process path.

Two gathers, for the two kinds of cross-rank loss:

- ``gather_features``: every rank computes the *same* global loss and the gradient flows into its
  own slice only (open_clip's scheme; CLOOB, CLIP). Rank r's gradient for its slice is then the
  global loss's gradient for that slice.
- ``gather_with_grad``: every rank computes the loss of its *own* rows against the gathered
  tensor (NNCLR: local anchors, every rank's predictions as negatives). The backward all-reduces
  the gradient of the gathered tensor, so rank r's slice receives the push of every rank's rows
  (ml-jku/MAE-CT's ``all_gather_grad``). Summed over ranks (as data parallelism does) this is
  the gradient of the whole batch's loss.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def gather_features(x: torch.Tensor, rank: int = 0, world_size: int = 1) -> torch.Tensor:
    """(B, ...) on each rank -> (world_size * B, ...) on every rank, in rank order.

    ``all_gather`` returns tensors without autograd history, so the local slice is put back
    as ``x`` itself: gradients flow into this rank's own features only.
    With ``world_size == 1`` this is ``x`` and no process group is needed.
    """
    if world_size == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(world_size)]
    dist.all_gather(parts, x.detach().contiguous())
    parts[rank] = x
    return torch.cat(parts, dim=0)


class _GatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
        ctx.rank, ctx.batch = rank, x.shape[0]
        parts = [torch.empty_like(x) for _ in range(world_size)]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts, dim=0)  # (W*B, ...)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        grad = grad.contiguous()
        dist.all_reduce(grad)  # every rank's rows push on every slice: sum the pushes
        return grad[ctx.rank * ctx.batch : (ctx.rank + 1) * ctx.batch], None, None


def gather_with_grad(x: torch.Tensor, rank: int = 0, world_size: int = 1) -> torch.Tensor:
    """(B, ...) on each rank -> (world_size * B, ...), differentiable across ranks (see module doc)."""
    if world_size == 1:
        return x
    return _GatherWithGrad.apply(x, rank, world_size)
