"""Cross-rank objectives on 2 real gloo processes give the whole batch's gradient of one process.

Each rank holds B/2 rows and backpropagates its own loss; data parallelism then combines the
ranks' gradients (a sum or mean over ranks: one scalar factor). The gradient each rank gets for
its slice of the loss's inputs, put together in rank order, must be parallel (cosine > 0.9999)
to the single-process gradient of the loss on the whole batch, with one scalar for all ranks.
"""

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from vitforge.methods.cloob import clip_loss, cloob_loss
from vitforge.methods.distributed import gather_features, gather_with_grad
from vitforge.methods.nnclr import nnclr_loss, symmetric_nnclr_loss

WORLD = 2


def _objectives() -> dict:
    """name -> (loss(a, b, c, d, rank, world), which inputs carry a gradient)."""
    return {
        "nnclr": (lambda a, b, c, d, r, w: nnclr_loss(a, c, 0.2, r, w), (0,)),
        "symmetric_nnclr": (lambda a, b, c, d, r, w: symmetric_nnclr_loss(a, b, c, d, 0.15, r, w), (0, 1)),
        "cloob": (
            lambda a, b, c, d, r, w: cloob_loss(F.normalize(a, dim=1), F.normalize(b, dim=1), 30.0, 8.0, r, w),
            (0, 1),
        ),
        "clip": (lambda a, b, c, d, r, w: clip_loss(F.normalize(a, dim=1), F.normalize(b, dim=1), 10.0, r, w), (0, 1)),
    }


def _grads(name: str, inputs: list[torch.Tensor], rank: int, world: int) -> tuple[float, list[torch.Tensor]]:
    fn, trained = _objectives()[name]
    xs = [x.clone().requires_grad_(i in trained) for i, x in enumerate(inputs)]
    loss = fn(*xs, rank, world)
    loss.backward()
    return loss.item(), [xs[i].grad.clone() for i in trained]


def _worker(rank: int, world: int, port: int, inputs: list[torch.Tensor], out: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        b = inputs[0].shape[0] // world
        local = [x[rank * b : (rank + 1) * b] for x in inputs]
        res = {name: _grads(name, local, rank, world) for name in _objectives()}
        res["gathered"] = gather_features(local[0], rank, world)
        res["gathered_grad"] = gather_with_grad(local[0], rank, world).detach()
        out[rank] = res
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cross_rank_gradients_equal_whole_batch_gradient() -> None:
    torch.manual_seed(0)
    inputs = [torch.randn(16, 8) for _ in range(4)]  # pred1/img, pred2/txt, nn1, nn2
    # A spawned manager: forking a process that holds a Ray driver (the test session's) hangs gRPC.
    with mp.get_context("spawn").Manager() as manager:
        out = manager.dict()
        mp.spawn(_worker, args=(WORLD, _free_port(), inputs, out), nprocs=WORLD, join=True)
        out = dict(out)
    for rank in range(WORLD):
        assert torch.equal(out[rank]["gathered"], inputs[0])
        assert torch.equal(out[rank]["gathered_grad"], inputs[0])
    for name in _objectives():
        full_loss, full_grads = _grads(name, inputs, 0, 1)
        losses = [out[r][name][0] for r in range(WORLD)]
        # Per-rank losses average (NNCLR: own rows) or equal (CLOOB/CLIP: global) the global loss.
        assert abs(sum(losses) / WORLD - full_loss) < 1e-5, name
        for i, full in enumerate(full_grads):
            dp = torch.cat([out[r][name][1][i] for r in range(WORLD)])  # each rank's slice, in order
            cos = F.cosine_similarity(dp.flatten(), full.flatten(), dim=0).item()
            assert cos > 0.9999, f"{name} input {i}: cosine {cos:.6f} to the whole-batch gradient"
            scale = dp.norm() / full.norm()
            assert torch.allclose(dp, scale * full, atol=1e-6), name


def test_detached_gather_loses_nnclr_cross_rank_push() -> None:
    """The check above has teeth: NNCLR with the detached gather (the old code) is not exact."""
    torch.manual_seed(0)
    pred, nn = torch.randn(16, 8), torch.randn(16, 8)
    full = pred.clone().requires_grad_(True)
    nnclr_loss(full, nn, 0.2).backward()
    # Rank r with a detached gather: only its own anchor rows touch its predictions.
    parts = []
    for r in range(WORLD):
        p = pred.clone().requires_grad_(True)
        logits = (
            F.normalize(nn[r * 8 : (r + 1) * 8], dim=1)
            @ F.normalize(
                torch.cat([p[:8] if r == 0 else p[:8].detach(), p[8:] if r == 1 else p[8:].detach()]), dim=1
            ).T
            / 0.2
        )
        F.cross_entropy(logits, torch.arange(8) + r * 8).backward()
        parts.append(p.grad[r * 8 : (r + 1) * 8])
    cos = F.cosine_similarity(torch.cat(parts).flatten(), full.grad.flatten(), dim=0).item()
    assert cos < 0.999
