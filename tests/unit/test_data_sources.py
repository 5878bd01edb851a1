"""Every source format read from files the test writes; bad inputs give errors naming row/file/column."""

import io
import warnings
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from vitforge.data import (
    BatchMaker,
    Columns,
    DataError,
    build_view,
    channel_stats,
    detect_format,
    export_builtin,
    iter_batches,
    iter_rows,
    load_source,
    rank_rows,
)
from vitforge.data.builtin import SHAPES
from vitforge.models import ByteTokenizer


def png(colour: tuple[int, int, int], size: int = 12) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buf, format="PNG")
    return buf.getvalue()


def jpeg(colour: tuple[int, int, int], size: int = 24) -> bytes:
    buf = io.BytesIO()
    arr = np.random.default_rng(0).integers(0, 255, (size, size, 3), dtype=np.uint8)
    arr[..., 0] = colour[0]
    Image.fromarray(arr).save(buf, format="JPEG")
    return buf.getvalue()


def maker(**kw) -> BatchMaker:
    return BatchMaker([build_view(8, train=False)], **kw)


def all_rows(ds, m: BatchMaker) -> dict[str, torch.Tensor]:
    batches = list(iter_batches(ds, m, batch_size=4, shuffle=False))
    return {k: torch.cat([b[k] for b in batches]) for k in batches[0]}


def test_imagefolder(tmp_path: Path) -> None:
    for cls, colour in (("cat", (255, 0, 0)), ("dog", (0, 0, 255))):
        (tmp_path / cls).mkdir()
        for i in range(3):
            (tmp_path / cls / f"{i}.png").write_bytes(png(colour))
    (tmp_path / "dog" / "notes.txt").write_text("not an image, not listed")
    assert detect_format(str(tmp_path)) == "imagefolder"
    ds = load_source(str(tmp_path))
    out = all_rows(ds, maker())
    assert len(ds) == 6 and ds.classes == ["cat", "dog"] and out["label"].tolist() == [0, 0, 0, 1, 1, 1]
    assert out["image"].shape == (6, 3, 8, 8)
    # Labels follow sorted class names: cat (red) = 0, dog (blue) = 1.
    red = out["image"][:, 0].mean((1, 2)) > out["image"][:, 2].mean((1, 2))
    assert torch.equal(red, out["label"] == 0)


def test_parquet_bytes_and_paths_with_captions(tmp_path: Path) -> None:
    files = []
    for i in range(3):
        p = tmp_path / f"img{i}.jpg"
        p.write_bytes(jpeg((40 * i, 0, 0)))
        files.append(str(p))
    pq.write_table(
        pa.table(
            {"img": [png((i, i, i)) for i in range(5)], "text": [f"cap {i}" for i in range(5)], "y": list(range(5))}
        ),
        tmp_path / "train.parquet",
    )
    ds = load_source(str(tmp_path / "train.parquet"), columns=Columns("img", "y", "text"))
    assert ds.num_classes == 5 and ds.has_captions
    out = all_rows(ds, maker(tokenizer=ByteTokenizer(16)))
    assert out["tokens"].shape == (5, 16) and out["label"].tolist() == [0, 1, 2, 3, 4]
    sub = tmp_path / "paths"
    sub.mkdir()
    pq.write_table(pa.table({"image": files}), sub / "data.parquet")
    ds2 = load_source(str(sub))
    assert len(ds2) == 3 and all_rows(ds2, maker())["label"].tolist() == [-1, -1, -1]


def test_arrow_and_save_to_disk(tmp_path: Path) -> None:
    feats = datasets.Features({"image": datasets.Image(), "label": datasets.Value("int64")})
    ds = datasets.Dataset.from_dict(
        {"image": [Image.new("RGB", (10, 10), (i * 50, 0, 0)) for i in range(4)], "label": [0, 1, 0, 1]}, features=feats
    )
    ds.save_to_disk(str(tmp_path / "saved"))
    assert detect_format(str(tmp_path / "saved")) == "saved"
    loaded = load_source(str(tmp_path / "saved"))
    assert all_rows(loaded, maker())["image"].shape == (4, 3, 8, 8)
    arrow = next((tmp_path / "saved").glob("*.arrow"))
    assert len(load_source(str(arrow))) == 4


def test_fsspec_memory_uri() -> None:
    import fsspec

    fs = fsspec.filesystem("memory")
    for i in range(2):
        fs.pipe(f"/bucket/folder/a/{i}.png", png((0, 255, 0)))
    ds = load_source("memory://bucket/folder", format="imagefolder")
    assert len(ds) == 2 and all_rows(ds, maker())["image"][:, 1].mean() > 0


def test_builtins_deterministic_with_splits() -> None:
    def rows(seed: int) -> dict:
        return next(iter_rows(load_source("shapes", "test", builtin_options={"n": 60, "seed": seed})))

    a, b, c = rows(3), rows(3), rows(4)
    assert len(a["id"]) == 12 and a["caption"] == b["caption"] and a["caption"] != c["caption"]
    assert a["image"] == b["image"]
    train = load_source("digits-cluttered", "train")
    test = load_source("digits-cluttered", "test")
    assert len(train) + len(test) == 1797 and train.num_classes == 10
    kind = SHAPES[a["label"][0]]
    assert a["caption"][0].endswith(f" {kind}") and len(a["caption"][0].split()) == 4  # "a small red star"


def test_loader_deterministic_by_seed_and_epoch() -> None:
    ds = load_source("shapes", "test", builtin_options={"n": 40})
    m = BatchMaker([build_view(16)], "shapes", seed=7)
    b1 = next(iter_batches(ds, m, 4, epoch=2))
    b2 = next(iter_batches(ds, m, 4, epoch=2))
    b3 = next(iter_batches(ds, m, 4, epoch=3))
    assert torch.equal(b1["image"], b2["image"]) and torch.equal(b1["index"], b2["index"])
    assert not torch.equal(b1["index"], b3["index"])
    # Ranks split an epoch without overlap.
    seen = [
        torch.cat([b["index"] for b in iter_batches(ds, m, 3, epoch=0, rank=r, world_size=2)]).tolist() for r in (0, 1)
    ]
    assert not set(seen[0]) & set(seen[1]) and sorted(seen[0] + seen[1]) == list(range(8))


def test_training_stream_resumes_exactly_and_shuffles_within_windows() -> None:
    """A rank's training stream is a pure function of (seed, epoch, rank): started at batch k it is
    the tail of the whole one (nothing repeated, nothing lost); every rank reads as many rows, none
    twice; windows mix rows from several row groups."""
    ds = load_source("shapes", "train", builtin_options={"n": 1000})  # 800 rows in 4 row groups of 256
    m = BatchMaker([build_view(8, normalize=False)], "shapes", seed=3)

    def stream(rank: int, start: int = 0, stop: int | None = None) -> list[dict]:
        kw = {"drop_last": True, "rank": rank, "world_size": 2, "window_rows": 150, "start_batch": start}
        return list(iter_batches(ds, m, 16, epoch=1, stop_batch=stop, **kw))

    whole = [stream(r) for r in (0, 1)]
    ids = [torch.cat([b["index"] for b in w]).tolist() for w in whole]
    assert len(ids[0]) == len(ids[1]) == rank_rows(800, 2, 150) // 16 * 16 and not set(ids[0]) & set(ids[1])
    assert len({i // 256 for i in ids[0][:150]}) > 1  # a window spans row groups, shuffled together
    for k in (1, 5, 9):
        tail = stream(1, k)
        assert len(tail) == len(whole[1]) - k
        assert all(torch.equal(a["index"], b["index"]) and torch.equal(a["image"], b["image"])
                   for a, b in zip(tail, whole[1][k:], strict=True))  # fmt: skip
    part = stream(0, 2, 5)  # a stage that ends mid-epoch: its batches only
    assert [b["index"].tolist() for b in part] == [b["index"].tolist() for b in whole[0][2:5]]
    assert (
        ids[0]
        != torch.cat([b["index"] for b in iter_batches(ds, m, 16, epoch=2, drop_last=True)]).tolist()[: len(ids[0])]
    )


def test_channel_stats_and_export(tmp_path: Path) -> None:
    ds = load_source("digits", "train")
    mean, std = channel_stats(ds, 200)
    assert len(mean) == 3 and 0.05 < mean[0] < 0.5 and std[0] > 0.1
    written = export_builtin("shapes", tmp_path / "exp", n=50)
    assert [p.name for p in written] == ["train.parquet", "test.parquet"]
    back = load_source(str(tmp_path / "exp"), split="test")
    assert len(back) == 10 and next(iter_rows(back))["caption"][0].startswith("a ")


# --- bad input -----------------------------------------------------------------------------


def test_corrupt_and_truncated_files_are_named(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "good.png").write_bytes(png((1, 2, 3)))
    (tmp_path / "a" / "bad.jpg").write_bytes(b"this is not a jpeg")
    ds = load_source(str(tmp_path))
    with pytest.raises(DataError, match=r"row 0 of .*\(file .*bad\.jpg\), column 'image'"):
        all_rows(ds, maker(source=str(tmp_path)))
    (tmp_path / "a" / "bad.jpg").write_bytes(jpeg((1, 1, 1))[:200])  # truncated
    with pytest.raises(DataError, match=r"bad\.jpg.*not a readable image"):
        all_rows(load_source(str(tmp_path)), maker())


def test_skip_option_counts_bad_rows_in_one_warning(tmp_path: Path) -> None:
    pq.write_table(
        pa.table({"image": [png((0, 0, 0)), b"junk", png((9, 9, 9)), b"\x89PNG broken"]}), tmp_path / "t.parquet"
    )
    ds = load_source(str(tmp_path / "t.parquet"))
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        out = all_rows(ds, maker(on_bad="skip"))
    assert out["index"].tolist() == [0, 2]
    msgs = [str(x.message) for x in w if "skipped" in str(x.message)]
    assert len(msgs) == 1 and "skipped 2 of 4 bad rows" in msgs[0] and "row 1" in msgs[0]


def test_mean_std_honours_skip_and_names_the_bad_file(tmp_path: Path) -> None:
    """The mean/std measured before training reads the data too: ``on_bad`` applies to it."""
    (tmp_path / "a").mkdir()
    for i in range(3):
        (tmp_path / "a" / f"ok{i}.png").write_bytes(png((100, 100, 100)))
    (tmp_path / "a" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    ds = load_source(str(tmp_path))
    with pytest.raises(DataError, match=r"corrupt\.png.*not a readable image") as e:
        channel_stats(ds, 10)
    assert "BytesIO" not in str(e.value)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        mean, std = channel_stats(ds, 10, on_bad="skip")
    assert mean == [round(100 / 255, 4)] * 3 and std[0] < 1e-3
    assert any("skipped 1 of 4 bad rows" in str(x.message) for x in w)


def test_column_errors(tmp_path: Path) -> None:
    pq.write_table(pa.table({"picture": [png((0, 0, 0))], "caption": [3]}), tmp_path / "x.parquet")
    with pytest.raises(DataError, match=r"no image column 'image'; columns are \['caption', 'picture'\]"):
        load_source(str(tmp_path / "x.parquet"))
    with pytest.raises(DataError, match="caption column 'caption' must hold strings"):
        load_source(str(tmp_path / "x.parquet"), columns=Columns("picture"))
    with pytest.raises(DataError, match="no caption column 'text'"):
        load_source(str(tmp_path / "x.parquet"), columns=Columns("picture", caption="text"), require_captions=True)
    pq.write_table(pa.table({"image": pa.array([], pa.binary())}), tmp_path / "empty.parquet")
    with pytest.raises(DataError, match="empty"):
        load_source(str(tmp_path / "empty.parquet"))
    with pytest.raises(DataError, match="does not exist"):
        load_source(str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="allowed: digits, digits-cluttered, shapes"):
        load_source("cifar", format="builtin")


def test_missing_caption_row_is_named(tmp_path: Path) -> None:
    pq.write_table(pa.table({"image": [png((0, 0, 0))] * 2, "caption": ["ok", None]}), tmp_path / "c.parquet")
    with pytest.raises(DataError, match=r"row 1 of .*column 'caption'"):
        all_rows(load_source(str(tmp_path / "c.parquet")), maker(tokenizer=ByteTokenizer(8), source="c.parquet"))


def test_digits_cluttered_clutter_knob_flattens_background_and_names_bad_value():
    from vitforge.data.builtin import digits_cluttered

    def dark_frames(clutter: float) -> int:  # images whose 2-pixel frame is plain black
        recs = digits_cluttered(size=32, clutter=clutter)["test"][:50]
        frames = [np.asarray(r["image"], np.float32) for r in recs]
        return sum(max(f[:2].max(), f[-2:].max(), f[:, :2].max(), f[:, -2:].max()) < 10 for f in frames)

    assert dark_frames(0.0) > 30 and dark_frames(1.0) < 5  # digits touch the frame now and then
    with pytest.raises(ValueError, match="clutter must be in"):
        digits_cluttered(clutter=1.5)


def test_webdataset_shards_and_files_beside_parquet_shards(tmp_path: Path) -> None:
    """WebDataset tar shards (img2dataset's layout: ``KEY.jpg``, ``KEY.txt``, ``KEY.cls``); a log
    file beside Parquet shards is never handed to the reader."""
    import tarfile

    shards = tmp_path / "wds"
    shards.mkdir()
    for s in range(2):
        with tarfile.open(shards / f"{s:05d}.tar", "w") as tar:
            for i in range(3):
                for ext, data in (
                    (".jpg", jpeg((80 * i, 0, 0))),
                    (".txt", f"cap {s} {i}".encode()),
                    (".cls", b"%d" % i),
                ):
                    info = tarfile.TarInfo(f"{s:03d}{i:03d}{ext}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    assert detect_format(str(shards)) == "webdataset"
    ds = load_source(str(shards), require_captions=True)
    assert len(ds) == 6 and len(ds.pieces) == 2
    out = all_rows(ds, maker(tokenizer=ByteTokenizer(12)))
    assert out["label"].tolist() == [0, 1, 2, 0, 1, 2] and out["tokens"].shape == (6, 12)
    assert [c for r in iter_rows(ds) for c in r["caption"]][4] == "cap 1 1"

    pq.write_table(pa.table({"image": [png((1, 1, 1))] * 3}), tmp_path / "train-0.parquet")
    (tmp_path / "train.log").write_text("a log file of the user's")
    assert len(load_source(str(tmp_path / "train-0.parquet"))) == 3
    (tmp_path / "pq").mkdir()
    (tmp_path / "train-0.parquet").rename(tmp_path / "pq" / "train-0.parquet")
    (tmp_path / "pq" / "run.log").write_text("not parquet")
    assert len(load_source(str(tmp_path / "pq"))) == 3
