"""Captions the way users bring them (an image folder with ``metadata.jsonl`` / ``metadata.csv``),
and zero-shot classes named by the source itself (a folder's sub-folders) or by the caller."""

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vitforge.config import ModelSpec
from vitforge.data import Columns, DataError, iter_rows, load_source
from vitforge.data.tokenizers import make_tokenizer
from vitforge.eval.evaluate import evaluate
from vitforge.inference import build_image_text


def _png(v: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((12, 12, 3), v, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def test_folder_metadata_captions_jsonl_and_csv(tmp_path: Path) -> None:
    (tmp_path / "j").mkdir()
    for i in range(3):
        (tmp_path / "j" / f"{i}.png").write_bytes(_png(10 * i))
    rows = [{"file_name": f"{i}.png", "text": f"a grey square number {i}", "label": i % 2} for i in range(3)]
    (tmp_path / "j" / "metadata.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    src = load_source(str(tmp_path / "j"), require_captions=True)
    got = next(iter_rows(src))
    assert got["caption"] == [r["text"] for r in rows] and got["label"] == [0, 1, 0] and src.has_captions

    (tmp_path / "c" / "sub").mkdir(parents=True)
    for i in range(2):
        (tmp_path / "c" / "sub" / f"{i}.png").write_bytes(_png(i))
    (tmp_path / "c" / "metadata.csv").write_text("file_name,caption\nsub/0.png,first\nsub/1.png,\n")
    assert next(iter_rows(load_source(str(tmp_path / "c"))))["caption"] == ["first", None]
    with pytest.raises(DataError, match=r"1 images have no caption .*sub/1\.png"):
        load_source(str(tmp_path / "c"), require_captions=True)
    (tmp_path / "c" / "sub" / "2.png").write_bytes(_png(2))
    with pytest.raises(DataError, match=r"no row in .*metadata\.csv, e\.g\. 'sub/2\.png'"):
        load_source(str(tmp_path / "c"))
    (tmp_path / "c" / "metadata.csv").write_text("name,caption\nsub/0.png,x\n")
    with pytest.raises(DataError, match="needs a file_name column"):
        load_source(str(tmp_path / "c"), columns=Columns(caption="caption"))


def test_zero_shot_classes_from_folder_names_in_label_order(tmp_path: Path) -> None:
    """Two classes: naming them in the other order swaps every prediction, so top-1 becomes
    1 - top-1 — the folder's names are used, in label order."""
    for split in ("train", "test"):
        for cls, v in (("cat", 30), ("dog", 220)):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(4):
                (tmp_path / split / cls / f"{i}.png").write_bytes(_png(v + i))
    spec = ModelSpec(size="test", patch_size=4, img_size=16, embed_dim=16, context_length=32)
    model = build_image_text(spec).eval()
    card = {
        "model": {"img_size": 16, "pool": spec.pool},
        "normalization": {"mean": [0.5] * 3, "std": [0.25] * 3},
        "tokenizer": make_tokenizer("clip-bpe", 32).config(),
    }
    kw = {"card": card, "encoder": model, "probe": False, "cluster": False, "ks": (1,)}
    own = evaluate(None, str(tmp_path), templates=["a photo of a {}."], **kw)
    swapped = evaluate(None, str(tmp_path), templates=["a photo of a {}."], class_names=["dog", "cat"], **kw)
    assert set(own) >= {"zeroshot_top1", "zeroshot_top5"} and own["zeroshot_top5"] == 1.0
    assert own["zeroshot_top1"] == pytest.approx(1 - swapped["zeroshot_top1"])
    with pytest.raises(DataError, match="1 class names for labels up to 1"):
        evaluate(None, str(tmp_path), class_names=["cat"], **kw)


def test_shapes_zero_shot_reads_kind_and_colour_from_the_nearest_caption() -> None:
    """The quickstart's shapes zero-shot: each image is read as the kind and colour of its nearest
    generator caption, so an image near "a large blue star" reads star and blue, whatever the scale."""
    import torch

    from vitforge.data.builtin import COLOURS, SHAPES
    from vitforge.eval.zeroshot import SHAPE_CAPTIONS, read_captions

    assert len(SHAPE_CAPTIONS) == 2 * len(COLOURS) * len(SHAPES) == 96
    gen = torch.Generator().manual_seed(0)
    caps = torch.linalg.qr(torch.randn(128, 96, generator=gen))[0].T  # (96, 128) orthonormal captions
    pick = torch.tensor([0, 17, 50, 95])
    images = 3.0 * caps[pick] + 0.05 * torch.randn(4, 128, generator=gen)  # near those captions
    kind, colour = read_captions(images, caps)
    want = [SHAPE_CAPTIONS[int(i)] for i in pick]
    assert [SHAPES[int(k)] for k in kind] == [k for _, _, k in want]
    assert [list(COLOURS)[int(c)] for c in colour] == [c for _, c, _ in want]
