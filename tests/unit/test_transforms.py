import pytest
import torch

from vitforge.data.pipeline import sample_seed
from vitforge.data.transforms import (
    ColorJitter,
    GaussianBlur,
    Grayscale,
    HorizontalFlip,
    Normalize,
    RandomResizedCrop,
    Solarize,
    build_view,
    resize,
    resize_uint8,
)


def g(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_random_resized_crop_area_and_ratio_statistics() -> None:
    crop = RandomResizedCrop(16, scale=(0.2, 0.6), ratio=(0.5, 2.0))
    areas, ratios = [], []
    for s in range(400):
        top, left, h, w = crop.params(100, 100, g(s))
        assert 0 <= top <= 100 - h and 0 <= left <= 100 - w
        areas.append(h * w / 1e4)
        ratios.append(w / h)
    areas_t, ratios_t = torch.tensor(areas), torch.tensor(ratios)
    assert 0.18 <= areas_t.min() and areas_t.max() <= 0.62
    assert abs(areas_t.mean().item() - 0.4) < 0.03  # uniform in scale
    assert abs(ratios_t.log().mean().item()) < 0.08  # log-uniform ratio, symmetric about 1
    assert crop(torch.rand(3, 100, 80), g()).shape == (3, 16, 16)


def test_crop_falls_back_to_centre() -> None:
    crop = RandomResizedCrop(8, scale=(1.0, 1.0), ratio=(4.0, 5.0))
    # No 10x10 crop has aspect 4-5 at full area: centre crop, full width, height 10 / 4.
    assert crop.params(10, 10, g()) == (4, 0, 2, 10)


def test_flip_probability_and_content() -> None:
    img = torch.arange(12.0).reshape(1, 3, 4)
    flips = [not torch.equal(HorizontalFlip(0.5)(img, g(s)), img) for s in range(400)]
    assert 0.42 < sum(flips) / 400 < 0.58
    assert torch.equal(HorizontalFlip(1.0)(img, g()), img.flip(-1))


def test_normalize_gives_zero_mean_unit_std() -> None:
    x = torch.rand(3, 64, 64) * torch.tensor([0.5, 1.0, 0.2]).view(3, 1, 1)
    mean, std = x.mean((1, 2)).tolist(), x.std((1, 2)).tolist()
    y = Normalize(mean, std)(x)
    assert torch.allclose(y.mean((1, 2)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(y.std((1, 2)), torch.ones(3), atol=1e-4)


def test_strong_augmentations_behave() -> None:
    x = torch.rand(3, 16, 16)
    gray = Grayscale(1.0)(x, g())
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])
    assert torch.allclose(Solarize(1.0, 0.5)(torch.tensor([[[0.2, 0.8]]]), g()), torch.tensor([[[0.2, 0.2]]]))
    blurred = GaussianBlur(1.0, (1.5, 1.5))(x, g())
    assert blurred.shape == x.shape and blurred.var() < x.var()
    assert torch.allclose(blurred.mean(), x.mean(), atol=0.02)
    jit = ColorJitter(p=1.0)(x, g())
    assert jit.shape == x.shape and 0 <= jit.min() and jit.max() <= 1 and not torch.equal(jit, x)


def test_resize_clamps_and_rejects_unknown_mode() -> None:
    y = resize(torch.rand(3, 10, 10), (20, 20))
    assert y.shape == (3, 20, 20) and y.min() >= 0 and y.max() <= 1
    with pytest.raises(ValueError, match="bilinear"):
        resize(torch.rand(3, 4, 4), (2, 2), "nearest")


@pytest.mark.parametrize("shape", [(3, 1000, 700), (3, 96, 100), (3, 101, 292)])
def test_uint8_resize_is_the_float_resize_rounded(shape) -> None:
    # Serve and the loader shrink photos as uint8 (no full-size float copy) where that is the float
    # resize to one rounding step: both sides shrinking 3x or more (random noise: the worst case).
    img = torch.randint(0, 256, shape, dtype=torch.uint8, generator=g())
    out = resize_uint8(img, (32, 32))
    assert out.dtype == torch.uint8 and out.shape == (3, 32, 32)
    assert (out.float() / 255 - resize(img.float() / 255, (32, 32))).abs().max() <= 1 / 255
    with pytest.raises(ValueError, match="3x shrink"):
        resize_uint8(img, (shape[1] // 3 + 1, 8))


def test_view_deterministic_by_seed() -> None:
    view = build_view(16, strong=True)
    x = torch.rand(3, 32, 32)
    assert torch.equal(view(x, g(sample_seed(1, 0, 5, 0))), view(x, g(sample_seed(1, 0, 5, 0))))
    assert not torch.equal(view(x, g(sample_seed(1, 0, 5, 0))), view(x, g(sample_seed(1, 1, 5, 0))))
    assert sample_seed(0, 0, 5, 0) != sample_seed(0, 0, 5, 1)
    assert build_view(16, train=False)(x, g()).shape == (3, 16, 16)


@pytest.mark.parametrize("strong", [False, True])
@pytest.mark.parametrize("shape", [(3, 300, 250), (3, 90, 70), (3, 20, 24)])
def test_views_of_uint8_images_match_views_of_float_images(strong, shape) -> None:
    # The loader hands the decoded uint8 image to the views (no full-size float copy): the same
    # crops; exactly today's float path below a 3x shrink, within 1/255 (before normalizing) above.
    std = (0.229, 0.224, 0.225)
    view = build_view(32, std=std, strong=strong, scale=(0.08, 1.0))
    for seed in range(20):
        img = torch.randint(0, 256, shape, dtype=torch.uint8, generator=g(seed))
        new, old = view(img, g(seed)), view(img.float() / 255, g(seed))
        assert new.dtype == torch.float32 and new.shape == old.shape == (3, 32, 32)
        off = ((new - old).abs() > (1 / 255) / min(std) + 1e-5).float().mean()
        # a strong view's solarize threshold can flip a pixel that the rounding moved across it
        assert off <= (0.01 if strong else 0.0)
