"""The job spec rejects impossible configs before any worker starts, naming the field."""

from pathlib import Path

import pytest

from vitforge.config import SpecError, load_spec

MAE_CT = {
    "scaling": {"num_workers": 2},
    "stages": [
        {"name": "mae", "global_batch_size": 64},
        {"name": "nnclr_head", "global_batch_size": 64, "queue_size": 512},
        {"name": "contrastive_tuning", "global_batch_size": 64, "queue_size": 512},
    ],
}


def err(data: dict, *overrides: str) -> str:
    with pytest.raises(SpecError) as e:
        load_spec(data=data, overrides=list(overrides))
    return str(e.value)


def test_valid_spec_and_overrides() -> None:
    spec = load_spec(data=MAE_CT, overrides=["stages.0.epochs=0.5", "deepspeed.zero_stage=3", "name=run-1"])
    assert spec.stages[0].epochs == 0.5 and spec.deepspeed.zero_stage == 3 and spec.name == "run-1"
    assert [s.name for s in spec.stages] == ["mae", "nnclr_head", "contrastive_tuning"]


def test_override_fills_a_null_section() -> None:
    """A dumped spec has ``tune: None``; ``tune.metric=...`` on it makes the section (the default
    ranges), as it does on a spec without the key."""
    dumped = load_spec(data=MAE_CT).model_dump(mode="json")
    assert dumped["tune"] is None
    spec = load_spec(data=dumped, overrides=["tune.metric=knn20", "tune.scheduler=none"])
    assert spec.tune is not None and spec.tune.metric == "knn20" and spec.tune.scheduler == "none"


def test_unknown_size_names_allowed_values() -> None:
    msg = err({}, "model.size=gigantic")
    assert (
        "model.size" in msg
        and "'test', 'micro', 'mini', 'tiny', 'small', 'base', 'large' or 'huge'" in msg
        and "gigantic" in msg
    )


def test_zero_stage_and_unknown_field() -> None:
    assert "deepspeed.zero_stage" in err({}, "deepspeed.zero_stage=4") and "0, 1, 2 or 3" in err(
        {}, "deepspeed.zero_stage=4"
    )
    assert "model.colour" in err({"model": {"colour": 1}}) and "Extra inputs are not permitted" in err(
        {"model": {"colour": 1}}
    )


def test_misspelt_field_gets_the_closest_name_at_any_depth() -> None:
    # A stage field is compared with its own kind's fields; a field of another kind gets no guess.
    assert "stages.0.epoch: not a field of a 'mae' stage (got 3); did you mean 'epochs'?" in err(
        MAE_CT, "stages.0.epoch=3"
    )
    assert "stages.1.queu_size" in err(MAE_CT, "stages.1.queu_size=3") and "did you mean 'queue_size'?" in err(
        MAE_CT, "stages.1.queu_size=3"
    )
    assert "did you mean" not in err(MAE_CT, "stages.0.queue_size=512")
    assert "stages.2.optimizer.fastlr" in (m := err(MAE_CT, "stages.2.optimizer.fastlr=1e-3"))
    assert "did you mean 'fast_lr'?" in m
    assert "scaling.numworkers" in (m := err(MAE_CT, "scaling.numworkers=2")) and "did you mean 'num_workers'?" in m
    assert "did you mean 'model'?" in err({"modle": {}})
    assert "did you mean" not in err({"model": {"colour": 1}})  # nothing close: no guess


def test_batch_not_divisible_by_workers_times_accum() -> None:
    msg = err(MAE_CT, "deepspeed.grad_accum=3")
    assert (
        "stages[0] (mae).global_batch_size 64 is not divisible by scaling.num_workers x deepspeed.grad_accum = 6" in msg
    )


def test_queue_not_multiple_of_global_batch() -> None:
    msg = err(MAE_CT, "stages.1.queue_size=500")
    assert "stages[1] (nnclr_head).queue_size 500 is not a multiple of global_batch_size 64" in msg


def test_frozen_everything_and_stage_order() -> None:
    assert "stages.0.frozen_blocks: not a field of a 'mae' stage" in err(
        {"stages": [{"name": "mae", "frozen_blocks": 4}]}
    )
    assert "must be in [0, 4]" in err(
        {"stages": [{"name": "contrastive_tuning", "frozen_blocks": 9, "queue_size": 64}]}
    )
    assert "run in the order" in err({"stages": [{"name": "contrastive_tuning", "queue_size": 64}, {"name": "mae"}]})
    assert "single stage" in err({"stages": [{"name": "cloob"}, {"name": "mae"}]})


def test_stage_fields_belong_to_their_stage_and_defaults_follow_the_recipes() -> None:
    msg = err({"stages": [{"name": "mae", "inv_tau": 10}]})
    assert "stages.0.inv_tau: not a field of a 'mae' stage (got 10)" in msg
    assert "stages.2.optimizer.layer_decay: Extra inputs" in err(MAE_CT, "stages.2.optimizer.layer_decay=0.5")
    assert "stages.0.name" in err({"stages": [{"name": "byol"}]})
    spec = load_spec(
        data={
            **MAE_CT,
            "stages": [
                *MAE_CT["stages"],
            ],
        }
    )
    mae, head, tune = spec.stages
    assert (mae.crop_scale, head.crop_scale, tune.crop_scale) == ((0.2, 1.0), (0.08, 1.0), (0.08, 1.0))
    assert (head.topk, tune.topk, tune.layer_decay, tune.ema_momentum) == (1, 20, 0.65, 0.99)
    assert (head.optimizer.weight_decay, tune.optimizer.weight_decay, tune.head_weight_decay) == (1e-5, 0.05, 1e-5)
    assert spec.deepspeed.grad_clip == 0 and spec.model.pool == "mean_patch"
    assert (
        load_spec(data={}, overrides=["model.size=large", "model.patch_size=16", "model.img_size=224"]).model.pool
        == "cls"
    )
    cloob = load_spec(data={"stages": [{"name": "cloob", "optimizer": {"fast_lr": 3e-4}}]}).stages[0]
    assert cloob.crop_scale == (0.9, 1.0) and not cloob.flip
    # Given fields win; the rest come from the stage's defaults.
    assert (cloob.optimizer.fast_lr, cloob.optimizer.weight_decay, cloob.optimizer.slow_lr) == (3e-4, 0.1, 1e-3)
    assert "crop_scale" in err({"stages": [{"name": "mae", "crop_scale": [0.5, 0.2]}]})


def test_fp16_needs_gpu_and_bf16_runs_on_cpu() -> None:
    assert "'fp16' needs scaling.use_gpu=true" in err({}, "deepspeed.precision=fp16")
    assert load_spec(data={}, overrides=["deepspeed.precision=bf16"]).deepspeed.precision == "bf16"


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="does not exist"):
        load_spec(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("model: [unclosed")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(tmp_path / "bad.yaml")
    with pytest.raises(SpecError, match=r"field\.path=value"):
        load_spec(data={}, overrides=["nonsense"])


def test_shipped_specs_validate() -> None:
    for path in sorted(Path(__file__).resolve().parents[2].glob("jobs/*.yaml")):
        load_spec(path)


def test_mae_ct_digits_is_the_quickstart_recipe_on_three_copies() -> None:
    """jobs/mae-ct-digits.yaml says it is the quickstart's recipe unchanged but for its data: keep it so."""
    qs, digits = load_spec("quickstart"), load_spec("mae-ct-digits")
    assert digits.data.builtin_options == {**qs.data.builtin_options, "copies": 3}
    same = {"name": qs.name, "data": qs.data}
    assert digits.model_copy(update=same) == qs
