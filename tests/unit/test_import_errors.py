"""``vitforge import`` refuses what it cannot convert exactly, in one message that names the tensor,
its shape and the fix; nothing is written on a refusal."""

import argparse
from pathlib import Path

import pytest
import torch

from hf_checkpoints import official_mae_state, tiny_hf_mae
from vitforge.config import load_spec
from vitforge.hub import CheckpointError, import_checkpoint
from vitforge.inference import load_encoder
from vitforge.train.tasks import build_task, check_init_from

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def state() -> dict[str, torch.Tensor]:
    return official_mae_state(tiny_hf_mae())


def refused(tmp_path: Path, sd: dict | object, match: str, **kw) -> str:
    path = tmp_path / "ckpt.pth"
    torch.save(sd, path)
    with pytest.raises(CheckpointError, match=match) as e:
        import_checkpoint(path, tmp_path / "out", log=lambda _: None, **kw)
    assert not (tmp_path / "out").exists()
    return str(e.value)


def test_geometry_not_in_the_size_table(tmp_path: Path, state: dict) -> None:
    three_deep = {k: v for k, v in state.items() if not k.startswith("blocks.3.")}
    msg = refused(tmp_path, {"model": three_deep}, r"no vitforge size is 32 wide, 3 deep")
    assert "test 32x4/2h" in msg  # the sizes it could have been


def test_missing_unexpected_and_misshapen_tensors(tmp_path: Path, state: dict) -> None:
    missing = {k: v for k, v in state.items() if k != "blocks.2.mlp.fc1.weight"}
    refused(tmp_path, {"model": missing}, r"missing blocks\.2\.mlp\.fc1\.weight \(128, 32\)")
    extra = state | {"blocks.0.ls1.gamma": torch.ones(32)}
    refused(tmp_path, {"model": extra}, r"unexpected tensor blocks\.0\.ls1\.gamma \(32,\)")
    wrong = state | {"blocks.1.attn.proj.weight": torch.zeros(32, 16)}
    refused(tmp_path, {"model": wrong}, r"blocks\.1\.attn\.proj\.weight has shape \(32, 16\), .* expects \(32, 32\)")
    half_decoder = {k: v for k, v in state.items() if k != "decoder_embed.weight"}
    refused(tmp_path, {"model": half_decoder}, r"decoder_embed\.weight is missing.*--encoder-only")


def test_another_resolution_only_when_asked(tmp_path: Path, state: dict) -> None:
    msg = refused(tmp_path, {"model": state}, r"pos_embed holds positions for 4x4 patches", img_size=32)
    assert "--img-size 32 needs 8x8" in msg and "--interpolate-pos" in msg
    path = tmp_path / "ok.pth"
    torch.save({"model": state}, path)
    import_checkpoint(path, tmp_path / "x32", img_size=32, interpolate_pos=True, log=lambda _: None)
    enc, card = load_encoder(tmp_path / "x32")
    assert card["model"]["img_size"] == 32 and card["model"]["pos_embed_grid"] == 4
    assert card["imported_from"]["positions"] | {"max_abs_diff_from_sincos": 0} == {
        "order": "xy", "max_abs_diff_from_sincos": 0, "trained_grid": 4, "interpolated_to": 8}  # fmt: skip
    assert enc(torch.randn(2, 3, 32, 32)).isfinite().all()
    # A job at 32px that does not say the positions come from a 4x4 grid does not start from it.
    job = load_spec(data={"model": {"size": "test", "patch_size": 4, "img_size": 32},
                          "stages": [{"name": "nnclr_head", "global_batch_size": 32, "queue_size": 64}]})  # fmt: skip
    with pytest.raises(ValueError, match=r"pos_embed_grid=4.*--set model\.pos_embed_grid=4"):
        check_init_from(job, str(tmp_path / "x32"))
    job.model.pos_embed_grid = 4
    assert build_task(job, 0, str(tmp_path / "x32")).encoder.pos_grid == (4, 4)


def test_a_job_of_another_size_names_the_fix(tmp_path: Path, state: dict) -> None:
    path = tmp_path / "ok.pth"
    torch.save({"model": state}, path)
    import_checkpoint(path, tmp_path / "test4", log=lambda _: None)
    job = load_spec("mae-ct-vit-b16-from-mae", ["init_from=" + str(tmp_path / "test4")])
    with pytest.raises(ValueError, match=r"size=test, patch_size=4, img_size=16; the job builds size=base,"
                                         r" patch_size=16, img_size=224: .*--set model\.size=test"):  # fmt: skip
        check_init_from(job, job.init_from)


def test_pickles_that_are_not_weights(tmp_path: Path, state: dict) -> None:
    # MAE's own training checkpoints pickle argparse's Namespace next to the weights.
    msg = refused(tmp_path, {"model": state, "args": argparse.Namespace(lr=1e-3)}, r"weights_only=True")
    assert "torch.save({'model'" in msg
    refused(tmp_path, {"optimizer": {"lr": 0.1}}, r"holds no state dict vitforge knows \(found \['optimizer'\]\)")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a weights file"):
        import_checkpoint(tmp_path / "junk.pth", tmp_path / "out", log=lambda _: None)


def test_learned_positions_and_fine_tuned_pooling_are_refused(tmp_path: Path, state: dict) -> None:
    learned = state | {"pos_embed": state["pos_embed"] + 0.01 * torch.randn_like(state["pos_embed"])}
    refused(tmp_path, {"model": learned}, r"pos_embed is not a fixed 2-D sin-cos table")
    tuned = {k: v for k, v in state.items() if not k.startswith("norm.")}
    tuned |= {"fc_norm.weight": torch.ones(32), "fc_norm.bias": torch.zeros(32), "head.weight": torch.zeros(10, 32)}
    refused(tmp_path, {"model": tuned}, r"fc_norm\.weight: a fine-tuned checkpoint with global pooling")


def test_a_decoder_of_another_shape_needs_encoder_only(tmp_path: Path) -> None:
    hf = tiny_hf_mae(decoder_hidden_size=16, decoder_intermediate_size=64)
    refused(tmp_path, {"model": official_mae_state(hf)}, r"decoder is 16 wide.*--encoder-only")
    torch.save({"model": official_mae_state(hf)}, tmp_path / "d16.pth")
    import_checkpoint(tmp_path / "d16.pth", tmp_path / "enc", encoder_only=True, log=lambda _: None)
    assert load_encoder(tmp_path / "enc")[1]["parts"] == ["encoder"]
