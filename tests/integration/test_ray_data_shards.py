"""Ray Data feeds 2 real Ray Train workers: each rank streams its own windows, as many rows as the
other, none twice, a new order each epoch — and exactly the rows, order and augmentations that
the in-process reader gives for that rank. The same spec and seed train to the same losses."""

import json
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.ray


def _loop(config: dict) -> None:
    import ray.train

    from vitforge.data import rank_dataset

    ctx = ray.train.get_context()
    source, maker = config["data"]
    for epoch in range(config["epochs"]):
        ds = rank_dataset(source, maker, epoch, ctx.get_world_rank(), 2, window_rows=100)
        batches = list(ds.iter_torch_batches(batch_size=8, drop_last=True))
        out = Path(config["out"]) / f"epoch{epoch}-rank{ctx.get_world_rank()}.pt"
        torch.save({k: torch.cat([b[k] for b in batches]) for k in ("index", "image", "image2")}, out)


def test_two_workers_stream_their_own_windows_as_in_process(ray_cluster, tmp_path: Path) -> None:
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from vitforge.data import BatchMaker, build_view, iter_batches, load_source, rank_rows

    ds = load_source("shapes", "test", builtin_options={"n": 1500})  # 300 rows, 2 row groups
    maker = BatchMaker(
        [build_view(16, normalize=False), build_view(16, strong=True, normalize=False)], "shapes", seed=5
    )
    trainer = TorchTrainer(
        _loop,
        train_loop_config={"epochs": 2, "out": str(tmp_path), "data": (ds, maker)},
        scaling_config=ScalingConfig(num_workers=2, resources_per_worker={"CPU": 1}),
        run_config=RunConfig(name="shards", storage_path=str(tmp_path / "storage")),
    )
    trainer.fit()
    per_rank = rank_rows(len(ds), 2, 100) // 8 * 8
    for epoch in range(2):
        got = [torch.load(tmp_path / f"epoch{epoch}-rank{r}.pt", weights_only=True) for r in (0, 1)]
        ids = [g["index"].tolist() for g in got]
        assert len(ids[0]) == len(ids[1]) == per_rank and not set(ids[0]) & set(ids[1])
        assert len(set(range(len(ds))) - set(ids[0] + ids[1])) < 2 * 100 + 16  # a window's remainder at most
        for r in (0, 1):  # the in-process reader gives this rank the same stream, bit for bit
            local = list(iter_batches(ds, maker, 8, epoch, drop_last=True, rank=r, world_size=2, window_rows=100))
            for key in ("index", "image", "image2"):
                assert torch.equal(torch.cat([b[key] for b in local]), got[r][key]), (epoch, r, key)
    orders = [torch.load(tmp_path / f"epoch{e}-rank0.pt", weights_only=True)["index"].tolist() for e in range(2)]
    assert orders[0] != sorted(orders[0]) and orders[0] != orders[1]


@pytest.mark.slow
def test_same_spec_and_seed_train_to_the_same_losses(ray_cluster, tmp_path: Path) -> None:
    """Twice on 2 Ray workers: the same loss at every step; once on 1 Ray worker and once in
    process without Ray: the same losses again (the same stream, read by Ray Data or by the process)."""
    from vitforge.config import load_spec
    from vitforge.train.inputs import load_train_data, normalization_for
    from vitforge.train.run import job_dir, run_stage_on_ray
    from vitforge.train.runners import run_local

    def spec(name: str, workers: int):
        return load_spec(
            data={
                "name": name,
                "model": {"size": "test", "patch_size": 4, "img_size": 16},
                "data": {"source": "digits", "window_rows": 256},
                "scaling": {"num_workers": workers},
                "stages": [{"name": "mae", "global_batch_size": 32, "max_steps": 6}],
                "checkpoint": {"storage_path": str(tmp_path / "runs")},
                "tracking": {"enabled": False, "log_every_steps": 1},
            }
        )

    def losses(s) -> list[float]:
        ds = load_train_data(s)
        result = run_stage_on_ray(s, 0, None, ds, normalization_for(s, ds))
        assert result.error is None
        rows = [json.loads(x) for x in (job_dir(s) / "history-0-mae.jsonl").read_text().splitlines()]
        return [r["loss"] for r in sorted(rows, key=lambda r: r["step"])]

    a, b = losses(spec("twice-a", 2)), losses(spec("twice-b", 2))
    assert len(a) == 6 and a == b
    one = losses(spec("one-ray", 1))
    local = [h["loss"] for h in run_local(spec("one-local", 1), 0, str(tmp_path / "ck")).history]
    assert one == pytest.approx(local, rel=1e-5, abs=1e-6)
    assert one != a  # one worker's batches are not two workers' halves: a different (equally fixed) stream


def test_prepare_writes_shards_as_ray_tasks_equal_to_local(ray_cluster, tmp_path: Path) -> None:
    """``data prepare`` on the cluster (one Ray task a shard) writes the same shards as ``--local``;
    a folder's metadata captions come through Ray Data tasks too."""
    import io
    import json as js

    import numpy as np
    import pyarrow.parquet as pq
    from PIL import Image
    from typer.testing import CliRunner

    from vitforge.cli import app
    from vitforge.data import BatchMaker, build_view, load_source, rank_dataset, rank_rows
    from vitforge.data.tokenizers import make_tokenizer

    src = tmp_path / "src"
    src.mkdir()
    for i in range(9):
        buf = io.BytesIO()
        Image.fromarray(np.full((40, 50, 3), 20 * i, np.uint8)).save(buf, format="PNG")
        (src / f"{i}.png").write_bytes(buf.getvalue())
    (src / "metadata.jsonl").write_text(
        "\n".join(js.dumps({"file_name": f"{i}.png", "text": f"shade {i}"}) for i in range(9))
    )
    for out, extra in (("ray", []), ("local", ["--local"])):
        r = CliRunner().invoke(app, ["data", "prepare", str(src), str(tmp_path / out), "--shard-size", "4", *extra])
        assert r.exit_code == 0, r.output
    for name in ("train-00000.parquet", "train-00001.parquet", "train-00002.parquet"):
        assert pq.read_table(tmp_path / "ray" / name).equals(pq.read_table(tmp_path / "local" / name))
    folder = load_source(str(src), require_captions=True)
    maker = BatchMaker([build_view(8, normalize=False)], "src", make_tokenizer("clip-bpe", 8), seed=0)
    batches = list(rank_dataset(folder, maker, 0, 0, 1, window_rows=4).iter_torch_batches(batch_size=3))
    assert sum(len(b["index"]) for b in batches) == rank_rows(9, 1, 4) == 9 and batches[0]["tokens"].shape == (3, 8)
