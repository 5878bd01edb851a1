"""Ray Data feeds 2 real Ray Train workers: every sample once per epoch, no duplicates, a new order each epoch."""

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.ray


def _loop(config: dict) -> None:
    import ray.train

    ctx = ray.train.get_context()
    shard = ray.train.get_dataset_shard("train")
    for epoch in range(config["epochs"]):
        seen = []
        for batch in shard.iter_torch_batches(batch_size=8):
            assert batch["image"].shape[1:] == (3, 16, 16) and batch["image2"].shape == batch["image"].shape
            seen += batch["index"].tolist()
        out = Path(config["out"]) / f"epoch{epoch}-rank{ctx.get_world_rank()}.json"
        out.write_text(json.dumps(seen))


def test_two_workers_cover_each_epoch_exactly_once(ray_cluster, tmp_path: Path) -> None:
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from vitforge.data import BatchMaker, build_view, load_source, to_ray

    ds = load_source("shapes", "test", builtin_options={"n": 300})
    maker = BatchMaker([build_view(16), build_view(16, strong=True)], "shapes", seed=0)
    trainer = TorchTrainer(
        _loop,
        train_loop_config={"epochs": 2, "out": str(tmp_path)},
        scaling_config=ScalingConfig(num_workers=2, resources_per_worker={"CPU": 1}),
        datasets={"train": to_ray(ds, maker, batch_size=16, num_cpus=0.5)},
        run_config=RunConfig(name="shards", storage_path=str(tmp_path / "storage")),
    )
    trainer.fit()
    for epoch in range(2):
        per_rank = [json.loads((tmp_path / f"epoch{epoch}-rank{r}.json").read_text()) for r in (0, 1)]
        assert per_rank[0] and per_rank[1], "each worker gets a non-empty shard"
        everything = per_rank[0] + per_rank[1]
        assert len(everything) == len(set(everything)) == len(ds)
        assert set(everything) == set(range(len(ds)))
    # Shuffled, and afresh each epoch (folders list rows class by class: batches must mix them).
    orders = [json.loads((tmp_path / f"epoch{e}-rank0.json").read_text()) for e in range(2)]
    assert orders[0] != sorted(orders[0]) and orders[0] != orders[1]
