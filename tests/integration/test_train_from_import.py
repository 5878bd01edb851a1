"""MAE-CT stages 2-3 on Ray start from an imported official-MAE checkpoint, as the shipped
``*-from-mae`` jobs do, and evaluation takes the import as it takes a stage export."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hf_checkpoints import save_official_mae, tiny_hf_mae
from vitforge.config import load_spec
from vitforge.hub import import_checkpoint
from vitforge.inference import read_card

pytestmark = [pytest.mark.ray, pytest.mark.slow]
pytest.importorskip("transformers")

HEAD = {"head_hidden_dim": 64, "head_out_dim": 16, "predictor_hidden_dim": 64, "queue_size": 256, "temperature": 0.2,
        "crop_scale": [0.6, 1.0], "flip": False, "global_batch_size": 64, "epochs": 10, "max_steps": 3}  # fmt: skip
LR = {"lr_scaling": "none", "fast_lr": 1e-3, "slow_lr": 3e-4}


def test_stages_two_and_three_from_an_imported_mae(ray_cluster, tmp_path: Path) -> None:
    from vitforge.eval.evaluate import evaluate
    from vitforge.train.run import run_job

    pth = save_official_mae(tiny_hf_mae(), tmp_path / "mae_pretrain_vit_test.pth")
    start = import_checkpoint(pth, tmp_path / "mae-test4", log=lambda _: None)
    knn = evaluate(str(start), "digits-cluttered", ks=(10,), probe=False, cluster=False)
    assert 0 <= knn["knn10"] <= 1  # vitforge eval reads the import as a stage export
    spec = load_spec(data={
        "name": "from-import",
        "init_from": str(start),
        "model": {"size": "test", "patch_size": 4, "img_size": 16},
        "data": {"source": "digits-cluttered"},
        "scaling": {"num_workers": 2},
        "stages": [{"name": "nnclr_head", **HEAD, "optimizer": LR},
                   {"name": "contrastive_tuning", **HEAD, "topk": 5, "optimizer": LR}],
        "checkpoint": {"storage_path": str(tmp_path / "runs")},
        "tracking": {"enabled": False, "log_every_steps": 1},
    })  # fmt: skip
    results = run_job(spec, log=lambda _: None)
    assert [r.name for r in results] == ["nnclr_head", "contrastive_tuning"]
    assert [[h["step"] for h in r.history] for r in results] == [[1, 2, 3]] * 2
    assert all(torch.isfinite(torch.tensor(r.history[-1]["loss"])) for r in results)
    imported = load_file(str(start / "encoder.safetensors"))
    head_stage, tuned = (load_file(str(Path(r.export_dir) / "encoder.safetensors")) for r in results)
    # Stage 2 trains the head on the frozen imported encoder; stage 3 tunes the upper half only.
    assert all(torch.equal(head_stage[k], imported[k]) for k in imported)
    assert torch.equal(tuned["blocks.1.attn.qkv.weight"], imported["blocks.1.attn.qkv.weight"])
    assert not torch.equal(tuned["blocks.3.attn.qkv.weight"], imported["blocks.3.attn.qkv.weight"])
    assert read_card(results[0].export_dir)["init_from"] == str(start)
