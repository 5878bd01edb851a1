"""A stage run in-process without Ray (the path GPU checks use): NaN handling, resume, model.compile."""

import json
from pathlib import Path

import pytest

from vitforge.config import load_spec
from vitforge.train.loop import NonFiniteLoss
from vitforge.train.runners import run_local

pytestmark = pytest.mark.slow


def tiny(tmp_path: Path, *overrides: str):
    base = {
        "name": "local",
        "model": {"size": "test", "patch_size": 4, "img_size": 16},
        "data": {"source": "digits"},
        "scaling": {"num_workers": 1},
        "stages": [{"name": "mae", "global_batch_size": 32, "max_steps": 6, "optimizer": {"lr_scaling": "none"}}],
        "checkpoint": {"storage_path": str(tmp_path), "every_steps": 3},
        "tracking": {"log_every_steps": 1},
    }
    return load_spec(data=base, overrides=list(overrides))


def test_nan_stops_with_step_and_keeps_last_good_checkpoint(tmp_path: Path) -> None:
    # An absurd learning rate and no clipping blow the loss up within a few steps.
    spec = tiny(
        tmp_path,
        "stages.0.optimizer.fast_lr=1e6",
        "stages.0.optimizer.slow_lr=1e6",
        "deepspeed.grad_clip=0",
        "stages.0.max_steps=40",
        "checkpoint.every_steps=1",
    )
    with pytest.raises(NonFiniteLoss, match=r"loss is (nan|inf) at step (\d+)") as e:
        run_local(spec, 0, str(tmp_path / "ck"))
    bad_step = int(str(e.value).split("at step ")[1].split()[0])
    saved = sorted(int(p.name.split("-")[1]) for p in (tmp_path / "ck").iterdir())
    assert saved and saved[-1] == bad_step  # checkpoints up to the last finite step, none after
    state = json.loads((tmp_path / "ck" / f"step-{bad_step}" / "train_state.json").read_text())
    assert state["step"] == bad_step


def test_resume_continues_exact_steps(tmp_path: Path) -> None:
    spec = tiny(tmp_path)
    first = run_local(spec, 0, str(tmp_path / "ck"))
    assert [h["step"] for h in first.history] == [1, 2, 3, 4, 5, 6]
    resumed = run_local(
        tiny(tmp_path, "stages.0.max_steps=9"), 0, str(tmp_path / "ck2"), resume_dir=str(tmp_path / "ck" / "step-3")
    )
    # Resuming from step 3 redoes steps 4.. only, up to the new plan of 9.
    assert [h["step"] for h in resumed.history] == [4, 5, 6, 7, 8, 9]
    assert abs(resumed.history[0]["loss"] - first.history[3]["loss"]) < 1e-4  # same data, same RNG


def test_quickstart_head_stage_loss_falls_well_below_chance(tmp_path: Path) -> None:
    """The quickstart's NNCLR head stage learns: its loss starts at chance (ln of the global batch,
    the number of candidates) and ends well below it, on a frozen randomly initialised encoder."""
    import math

    qs = load_spec("quickstart").model_dump(mode="json")
    head = {**qs["stages"][1], "epochs": 5}
    spec = load_spec(
        data={
            **qs,
            "name": "head-learns",
            "scaling": {"num_workers": 1},
            "data": qs["data"],
            "stages": [head],
            "checkpoint": {"storage_path": str(tmp_path)},
            "tracking": {"enabled": False, "log_every_steps": 1},
        }
    )
    chance = math.log(head["global_batch_size"])
    hist = run_local(spec, 0, str(tmp_path / "ck")).history
    epochs = [h["epoch_loss"] for h in hist if "epoch_loss" in h]
    assert hist[0]["loss"] > 0.95 * chance, (hist[0]["loss"], chance)
    assert epochs[-1] < 0.85 * chance, (epochs, chance)


@pytest.mark.parametrize("zero", [0, 3])
def test_compiled_blocks_train_and_export_loads(tmp_path: Path, zero: int) -> None:
    """``model.compile``: the stage trains through the real loop and DeepSpeed engine with every
    block compiled (ZeRO-3: blocks as leaves); its export, written from the checkpoint, loads with
    ``vitforge.inference`` unchanged and reproduces the live compiled model's embeddings."""
    import torch

    from vitforge.inference import embed, load_encoder
    from vitforge.train.export import probe_images
    from vitforge.train.run import export_stage

    spec = tiny(
        tmp_path, "model.compile=true", f"deepspeed.zero_stage={zero}", "stages.0.max_steps=8",
        "stages.0.optimizer.fast_lr=2e-3", "stages.0.optimizer.slow_lr=2e-3", "checkpoint.every_steps=8",
    )  # fmt: skip
    ctx = run_local(spec, 0, str(tmp_path / "ck"), probe_out=str(tmp_path / "probe.pt"))
    losses = [h["loss"] for h in ctx.history]
    assert len(losses) == 8 and losses[-1] < 0.8 * losses[0], losses
    out = export_stage(spec, 0, None, str(tmp_path / "ck" / "step-8"), {"mean": [0.5] * 3, "std": [0.5] * 3}, {})
    model, card = load_encoder(out)
    assert card["model"]["compile"] is True
    with torch.no_grad():
        again = embed(model, probe_images(spec), card["model"]["pool"])
    live = torch.load(tmp_path / "probe.pt", weights_only=True)
    assert torch.allclose(again, live, atol=1e-5), (again - live).abs().max()


@pytest.mark.parametrize(("zero", "precision"), [(0, "fp32"), (2, "bf16")])
def test_clip_logit_scale_is_clamped_after_the_step_in_the_master_copy(
    tmp_path: Path, zero: int, precision: str
) -> None:
    """CLIP starts at a logit scale of 150: after each step its log is at most ln 100 in the
    optimizer's fp32 master copy (what checkpoints and exports hold), not only in the module,
    with ZeRO-2 in bf16 (the copy apart) as in fp32 (the module's parameter is the copy)."""
    import math

    from vitforge.train.engine import consolidated_state_dict

    spec = tiny(
        tmp_path, f"deepspeed.zero_stage={zero}", f"deepspeed.precision={precision}", "checkpoint.every_steps=1"
    )
    data = spec.model_dump(mode="json")
    data["model"] |= {"embed_dim": 32, "context_length": 32}
    data["data"] = {"source": "shapes", "builtin_options": {"n": 200}}
    data["stages"] = [{"name": "clip", "inv_tau": 150.0, "global_batch_size": 32, "max_steps": 2,
                       "optimizer": {"lr_scaling": "none"}}]  # fmt: skip
    spec = load_spec(data=data)
    run_local(spec, 0, str(tmp_path / "ck"))
    scales = [consolidated_state_dict(tmp_path / "ck" / f"step-{k}", zero)["model.logit_scale"].item() for k in (1, 2)]
    assert scales[0] == pytest.approx(math.log(100), abs=1e-6), scales  # ln 150 - one step, clamped
    assert scales[1] <= math.log(100) + 1e-6, scales  # free to move below the bound
