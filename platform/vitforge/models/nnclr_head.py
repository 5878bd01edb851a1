"""MAE-CT's NNCLR head: projector, predictor, EMA target projector and a nearest-neighbour queue.

Imports torch only. The queue is filled by the caller with features already gathered across
workers (``vitforge.methods.distributed.gather_features``), so every rank holds the same queue.
"""

from __future__ import annotations

import copy
import itertools

import torch
import torch.nn.functional as F
from torch import nn


def mlp(dims: list[int], last_bn: bool) -> nn.Sequential:
    """Linear-BN-ReLU for every hidden layer; the last layer optionally BatchNorm'd, never ReLU'd.

    As ml-jku/MAE-CT's NNCLR head: no bias before a BatchNorm (redundant), the projector's last
    BatchNorm with affine weights, the predictor's last linear without bias.
    """
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(dims)):
        last = i == len(dims) - 2
        layers.append(nn.Linear(a, b, bias=False))
        if not last:
            layers += [nn.BatchNorm1d(b), nn.ReLU(inplace=True)]
        elif last_bn:
            layers.append(nn.BatchNorm1d(b))
    return nn.Sequential(*layers)


class NNQueue(nn.Module):
    """FIFO queue of L2-normalized projections with the sample ids they came from.

    Buffers, so the queue travels in checkpoints. Slots with id -1 are empty.
    """

    def __init__(self, size: int, dim: int) -> None:
        super().__init__()
        self.register_buffer("features", torch.zeros(size, dim))
        self.register_buffer("ids", torch.full((size,), -1, dtype=torch.long))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))

    @property
    def size(self) -> int:
        return self.features.shape[0]

    @torch.no_grad()
    def push(self, features: torch.Tensor, ids: torch.Tensor) -> None:
        """Enqueue (B, dim) features (normalized here) and their (B,) ids, oldest out first."""
        b = features.shape[0]
        if b > self.size:
            raise ValueError(f"batch of {b} is larger than the queue of {self.size}")
        idx = (self.ptr + torch.arange(b, device=self.ptr.device)) % self.size
        self.features[idx] = F.normalize(features.detach().float(), dim=-1).to(self.features.dtype)
        self.ids[idx] = ids.to(self.ids.device)
        self.ptr.copy_((self.ptr + b) % self.size)

    @torch.no_grad()
    def nearest(
        self, query: torch.Tensor, query_ids: torch.Tensor, topk: int = 1, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """(B, dim) queries -> (B, dim) neighbours from the queue.

        The sample's own id and empty slots are excluded; with ``topk`` > 1 one of the k
        most similar entries is chosen uniformly at random (MAE-CT's top-k NN).
        """
        sim = F.normalize(query.float(), dim=-1) @ self.features.float().T  # (B, Q)
        invalid = (self.ids[None, :] == query_ids[:, None]) | (self.ids[None, :] < 0)
        sim = sim.masked_fill(invalid, float("-inf"))
        k = min(topk, self.size)
        top_sim, top_idx = sim.topk(k, dim=1)  # (B, k)
        if not torch.isfinite(top_sim[:, 0]).all():
            raise RuntimeError("the NN queue has no valid entry for some query; fill it before lookups")
        # Choose among the finite (valid) entries of each row only.
        weights = torch.isfinite(top_sim).float()
        pick = torch.multinomial(weights, 1, generator=generator).squeeze(1)  # (B,)
        return self.features[top_idx.gather(1, pick[:, None]).squeeze(1)].to(query.dtype)


class NNCLRHead(nn.Module):
    """Projector d->h->h->out and predictor out->p->out (NNCLR), plus a target projector.

    ``ema_momentum=None`` (MAE-CT stage 2): the online projector's output, detached, feeds the
    queue and the lookups; the target projector is unused. A momentum (stage 3, 0.99): an EMA
    target projector does, started as a copy of the online one (``reset_target``).
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dim: int = 2048,
        out_dim: int = 256,
        predictor_hidden_dim: int = 4096,
        queue_size: int = 65536,
        ema_momentum: float | None = 0.99,
    ) -> None:
        super().__init__()
        self.projector = mlp([in_dim, hidden_dim, hidden_dim, out_dim], last_bn=True)
        self.predictor = mlp([out_dim, predictor_hidden_dim, out_dim], last_bn=False)
        self.target_projector = copy.deepcopy(self.projector).requires_grad_(False)
        self.queue = NNQueue(queue_size, out_dim)
        self.ema_momentum = ema_momentum

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, d) encoder features -> (prediction (B, out), queue/lookup projection (B, out), no grad)."""
        proj = self.projector(features)
        pred = self.predictor(proj)
        if self.ema_momentum is None:
            return pred, proj.detach()
        with torch.no_grad():
            target = self.target_projector(features.detach())
        return pred, target

    @torch.no_grad()
    def reset_target(self) -> None:
        """target <- online projector (parameters and BatchNorm statistics)."""
        self.target_projector.load_state_dict(self.projector.state_dict())

    @torch.no_grad()
    def update_target(self) -> None:
        """target <- m * target + (1 - m) * online for parameters; BatchNorm statistics copied.

        Under ZeRO-3 a parameter's data lives in its ``ds_tensor`` shard; target and online are
        partitioned alike, so the shards are averaged in place (no gather needed).
        """
        if self.ema_momentum is None:
            return
        m = self.ema_momentum
        for t, o in zip(self.target_projector.parameters(), self.projector.parameters(), strict=True):
            if hasattr(o, "ds_tensor"):
                t.ds_tensor.lerp_(o.ds_tensor.to(t.ds_tensor.dtype), 1 - m)
            else:
                t.lerp_(o.detach().to(t.dtype), 1 - m)
        # BatchNorm statistics are copied, not averaged (ml-jku/MAE-CT utils/model_utils.py update_ema).
        for t, o in zip(self.target_projector.buffers(), self.projector.buffers(), strict=True):
            t.copy_(o)
