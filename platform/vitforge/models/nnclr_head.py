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


class BatchNorm1d(nn.BatchNorm1d):
    """BatchNorm computed in fp32 whatever the module's precision, as autocast does for
    ``batch_norm``: DeepSpeed casts the affine weights to bf16 but leaves the running statistics
    in fp32 (and CPU kernels refuse the mix). Same parameters and state-dict keys as torch's."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float32 and (self.weight is None or self.weight.dtype == torch.float32):
            return super().forward(x)
        if self.running_mean is not None and self.running_mean.dtype != torch.float32:
            self.running_mean.data, self.running_var.data = self.running_mean.float(), self.running_var.float()
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
        w, b = (None, None) if self.weight is None else (self.weight.float(), self.bias.float())
        out = F.batch_norm(
            x.float(), self.running_mean, self.running_var, w, b,
            self.training or not self.track_running_stats, self.momentum, self.eps,
        )  # fmt: skip
        return out.to(x.dtype)


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
            layers += [BatchNorm1d(b), nn.ReLU(inplace=True)]
        elif last_bn:
            layers.append(BatchNorm1d(b))
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
        self._ema_fp32: list[torch.Tensor] | None = None  # see update_target (bf16/fp16 modules)

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
        self._ema_fp32 = None

    @torch.no_grad()
    def update_target(self) -> None:
        """target <- m * target + (1 - m) * online for parameters; BatchNorm statistics copied.

        Under ZeRO-3 a parameter's data lives in its ``ds_tensor`` shard; target and online are
        partitioned alike, so the shards are averaged in place (no gather needed).

        In a bf16/fp16 module (DeepSpeed casts it) the average is kept in an fp32 copy and the
        target is its rounding: in bf16 itself, ``t + 0.01 (o - t)`` rounds back to ``t`` whenever
        the step is below t's last mantissa bit (2^-8 relative), and the target would freeze.
        The copy is not checkpointed: a resumed run restarts it from the rounded target.
        """
        if self.ema_momentum is None:
            return
        m = self.ema_momentum
        pairs = [
            (t.ds_tensor, o.ds_tensor) if hasattr(o, "ds_tensor") else (t.data, o.detach())
            for t, o in zip(self.target_projector.parameters(), self.projector.parameters(), strict=True)
        ]
        if pairs and pairs[0][0].dtype in (torch.bfloat16, torch.float16):
            if self._ema_fp32 is None:
                self._ema_fp32 = [t.float() for t, _ in pairs]
            for (t, o), avg in zip(pairs, self._ema_fp32, strict=True):
                t.copy_(avg.lerp_(o.float(), 1 - m))
        else:
            for t, o in pairs:
                t.lerp_(o.to(t.dtype), 1 - m)
        # BatchNorm statistics are copied, not averaged (ml-jku/MAE-CT utils/model_utils.py update_ema).
        for t, o in zip(self.target_projector.buffers(), self.projector.buffers(), strict=True):
            t.copy_(o)
