"""The loader's uint8 transport: batches made with ``normalize=False`` and normalized on the
trainer's device equal the batches normalized in the loader, to the rounding of one uint8 step."""

import pytest
import torch

from vitforge.config import load_spec
from vitforge.data import iter_batches
from vitforge.train.inputs import load_train_data, make_batch_maker, normalization_for
from vitforge.train.loop import to_device


@pytest.mark.parametrize("job", ["tiny-mae-ct", "tiny-cloob"])
def test_uint8_batches_normalized_on_the_device_equal_loader_normalized(job: str) -> None:
    spec = load_spec(job)
    ds = load_train_data(spec)
    norm = normalization_for(spec, ds)
    for i, stage in enumerate(spec.stages):
        floats = next(iter_batches(ds, make_batch_maker(spec, i, norm), 8, epoch=0, window_rows=16))
        raw = next(iter_batches(ds, make_batch_maker(spec, i, norm, normalize=False), 8, epoch=0, window_rows=16))
        assert raw["image"].dtype == torch.uint8 and floats["image"].dtype == torch.float32
        out = to_device(raw, torch.device("cpu"), torch.float32, norm)
        tol = (1.0 / 255) / min(norm["std"]) + 1e-5  # uint8 rounding (strong views: a float step)
        for key in [k for k in floats if k.startswith("image")]:
            assert out[key].dtype == torch.float32 and out[key].shape == floats[key].shape
            off = ((out[key] - floats[key]).abs() > tol).float().mean()
            assert off <= (0.01 if getattr(stage, "strong_aug", False) else 0.0), (stage.name, key, off)
        assert torch.equal(out["label"], floats["label"])  # not images: as they were
        half = to_device(raw, torch.device("cpu"), torch.bfloat16, norm)
        assert half["image"].dtype == torch.bfloat16 and half["label"].dtype == floats["label"].dtype


def test_uint8_images_without_normalization_are_refused() -> None:
    batch = {"image": torch.zeros(2, 3, 4, 4, dtype=torch.uint8)}
    with pytest.raises(ValueError, match="normalization"):
        to_device(batch, torch.device("cpu"), torch.float32, None)
