"""Cross-rank losses on 2 real gloo processes equal the single-process loss on the global batch."""

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from vitforge.methods.cloob import clip_loss, cloob_loss
from vitforge.methods.distributed import gather_features
from vitforge.methods.nnclr import nnclr_loss


def _worker(rank: int, world: int, port: int, img: torch.Tensor, txt: torch.Tensor, out: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        b = img.shape[0] // world
        local_img = img[rank * b : (rank + 1) * b].clone().requires_grad_(True)
        local_txt = txt[rank * b : (rank + 1) * b].clone().requires_grad_(True)
        loss = cloob_loss(local_img, local_txt, rank=rank, world_size=world)
        loss.backward()
        clip = clip_loss(local_img.detach(), local_txt.detach(), 10.0, rank=rank, world_size=world)
        nn = nnclr_loss(local_img.detach(), local_txt.detach(), 0.2, rank=rank, world_size=world)
        gathered = gather_features(local_img.detach(), rank, world)
        out[rank] = (loss.item(), local_img.grad.clone(), clip.item(), nn.item(), gathered)
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_gathered_losses_equal_global_batch() -> None:
    torch.manual_seed(0)
    img, txt = F.normalize(torch.randn(8, 16), dim=1), F.normalize(torch.randn(8, 16), dim=1)
    # A spawned manager: forking a process that holds a Ray driver (the test session's) hangs gRPC.
    with mp.get_context("spawn").Manager() as manager:
        out = manager.dict()
        mp.spawn(_worker, args=(2, _free_port(), img, txt, out), nprocs=2, join=True)
        out = dict(out)
    full_img = img.clone().requires_grad_(True)
    full = cloob_loss(full_img, txt)
    full.backward()
    for rank in (0, 1):
        loss, grad, clip, _, gathered = out[rank]
        assert abs(loss - full.item()) < 1e-5
        assert abs(clip - clip_loss(img, txt, 10.0).item()) < 1e-5
        assert torch.equal(gathered, img)
        # Each rank's gradient is the global gradient restricted to its slice.
        assert torch.allclose(grad, full_img.grad[rank * 4 : (rank + 1) * 4], atol=1e-5)
    # NNCLR: rank r's rows against all predictions equal the global loss's rows of that rank.
    logits = F.normalize(txt, dim=1) @ F.normalize(img, dim=1).T / 0.2
    per_row = F.cross_entropy(logits, torch.arange(8), reduction="none")
    for rank in (0, 1):
        assert abs(out[rank][3] - per_row[rank * 4 : (rank + 1) * 4].mean().item()) < 1e-5
