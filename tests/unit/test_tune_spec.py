"""A search's metric when the spec leaves it out, and best_job.yaml as a training job."""

from pathlib import Path

import pytest
import yaml

from vitforge.config import dump_spec, load_spec
from vitforge.tune.best import best_job_text
from vitforge.tune.metric import resolve_metric
from vitforge.tune.search import trial_spec

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "jobs" / "tiny-ttur.yaml"


def test_tiny_search_ranks_by_held_out_knn_by_default() -> None:
    spec = load_spec(TINY)
    assert spec.tune.metric is None  # the shipped tiny search leaves it to "auto"
    m = resolve_metric(spec)
    assert (m.name, m.mode) == ("knn20", "max")
    assert m.line().startswith("metric: knn20 (held-out k-NN, higher is better")


@pytest.mark.parametrize(
    ("overrides", "why"),
    [
        (["data.label_column=null"], "no labels"),
        (["data.eval_split=train"], "no held-out split"),
    ],
)
def test_auto_falls_back_to_the_loss_where_knn_cannot_be_measured(overrides: list[str], why: str) -> None:
    m = resolve_metric(load_spec(TINY, overrides))
    assert (m.name, m.mode) == ("epoch_loss", "min") and why in m.reason
    assert m.line().startswith("metric: epoch_loss (") and "lower is better" in m.line()


def test_auto_uses_the_loss_on_a_frozen_encoder_and_knn_where_it_is_tuned() -> None:
    mae_ct = load_spec("tiny-mae-ct", ["tune={}"])  # tune the last stage: contrastive_tuning
    assert resolve_metric(mae_ct).name == "knn20"
    head = load_spec("tiny-mae-ct", ["tune={stage: 1}"])  # nnclr_head: the encoder is frozen
    assert resolve_metric(head).name == "epoch_loss" and "frozen" in resolve_metric(head).reason
    # Even with frozen_blocks 0: stage 2 freezes the whole encoder (tasks.NNCLRTask).
    head0 = load_spec("tiny-mae-ct", ["tune={stage: 1}", "stages.1.frozen_blocks=0"])
    assert resolve_metric(head0).name == "epoch_loss"


def test_a_metric_in_the_spec_wins() -> None:
    m = resolve_metric(load_spec(TINY, ["tune.metric=epoch_loss"]))
    assert (m.name, m.mode, m.reason) == ("epoch_loss", "min", "set in the spec")
    assert m.line() == "metric: epoch_loss (the stage's mean training loss per epoch, lower is better)"


def test_best_job_is_a_headed_training_job_that_round_trips(tmp_path: Path) -> None:
    spec = load_spec("tiny-mae-ct", ["tune={stage: -1, extra: {stages.2.topk: [3, 5]}}"])
    best = {"trial_id": "a1b2c3", "fast_lr": 2e-3, "slow_lr": 4e-4, "extra": {"stages.2.topk": 3},
            "metric": 0.8125, "epochs": 1, "status": "TERMINATED"}  # fmt: skip
    best_spec = trial_spec(spec, {"fast_lr": 2e-3, "slow_lr": 4e-4, "stages.2.topk": 3})
    path = tmp_path / "tiny-mae-ct-tune" / "best_job.yaml"
    text = best_job_text(best_spec, "tiny-mae-ct-tune", "knn20", best, path.parent, path)
    head = [x for x in text.splitlines() if x.startswith("#")]
    assert text.startswith("# ") and len(head) == 5, text
    joined = "\n".join(head)
    for want in ("'tiny-mae-ct-tune'", "knn20 0.8125", "trial a1b2c3", str(path.parent), f"vitforge train {path}"):
        assert want in joined, (want, joined)
    assert any(c.isdigit() for c in head[0])  # the date
    body = yaml.safe_load(text)
    assert "tune" not in body  # a training job, not a search
    # Each stage with its own kind's fields only: no MAE field on an NNCLR stage and back.
    assert "mask_ratio" not in body["stages"][1] and "topk" not in body["stages"][0]
    assert "ema_momentum" in body["stages"][2] and "ema_momentum" not in body["stages"][1]
    path.parent.mkdir()
    path.write_text(text)
    loaded = load_spec(path)
    assert loaded == best_spec and loaded.tune is None
    assert loaded.stages[2].optimizer.fast_lr == 2e-3 and loaded.stages[2].topk == 3
    assert dump_spec(loaded) == dump_spec(best_spec)


def test_shipped_searches_are_single_rate_and_a_one_point_range_is_a_constant() -> None:
    """bench.ttur found no gain from two rates (README, "Does TTUR pay?"): the shipped searches
    draw fast_lr with ratio [1, 1], which the search space holds as the constant 1, so every
    trial's pair has fast == slow."""
    from ray import tune

    from vitforge.tune.search import param_space

    for name in ("tiny-ttur", "ttur-mae-ct-vit-b16"):
        t = load_spec(ROOT / "jobs" / f"{name}.yaml").tune
        space = param_space(t)
        assert space["ratio"] == 1.0 and isinstance(space["fast_lr"], tune.search.sample.Float), name
        pair = trial_spec(load_spec(ROOT / "jobs" / f"{name}.yaml"), {"fast_lr": 2e-3, "ratio": 1.0})
        opt = pair.stages[-1].optimizer
        assert opt.fast_lr == opt.slow_lr == 2e-3, name
    wide = load_spec(TINY, ["tune.ratio=[0.3, 3.0]"]).tune
    assert isinstance(param_space(wide)["ratio"], tune.search.sample.Float)  # a real range stays a range
